"""bc-sync: the Moment <-> Business Central integration worker."""

__version__ = "0.1.0"
