"""Application services of the integration setup: verify on save, options, save/delete."""
