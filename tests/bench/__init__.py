"""``make bench``: performance scenarios against the physical limit and a naive peer (issue #10)."""
