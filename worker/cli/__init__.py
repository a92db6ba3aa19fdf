"""The ``bc-sync`` command line (DESIGN §11): run, topology, config, verify, poll, dlq."""

from worker.app import ROLES
from worker.cli.main import build_parser, main

__all__ = ["ROLES", "build_parser", "main"]
