"""Chaos soak (issue 9): worker processes under kills, broker cuts and BC faults, then counted.

``python -m tests.chaos`` runs the full size (``make chaos``); ``tests/integration/
test_chaos.py`` runs reduced sizes in CI. The engine is :mod:`tests.chaos.soak`.
"""
