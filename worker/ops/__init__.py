"""Operations: dead-letter inspection and replay, readiness checks, dead-letter sampling."""

from worker.ops.dlq import DeadLetters
from worker.ops.health import ReadinessCheck, readiness_checks
from worker.ops.sampler import DeadLetterCounts, DeadLetterSampler

__all__ = [
    "DeadLetterCounts",
    "DeadLetterSampler",
    "DeadLetters",
    "ReadinessCheck",
    "readiness_checks",
]
