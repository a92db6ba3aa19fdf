"""bc-sync: the Moment <-> Business Central integration worker (layout: README, DESIGN §2)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
