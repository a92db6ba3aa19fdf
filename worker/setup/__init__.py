"""Application services of the integration setup: verify on save, options, save/delete."""

from worker.setup.service import ConfigService, NotConfigured
from worker.setup.verify import BcUnreachable, Options, VerifiedFacts, options, verify

__all__ = [
    "BcUnreachable",
    "ConfigService",
    "NotConfigured",
    "Options",
    "VerifiedFacts",
    "options",
    "verify",
]
