"""The product stands alone: importing every module of ``worker`` loads nothing from ``tests``
(an installed wheel or the Docker image has no ``tests/``)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

IMPORT_ALL = (
    "import worker, pkgutil, importlib, sys; "
    "[importlib.import_module(m.name) for m in pkgutil.walk_packages(worker.__path__, 'worker.')]; "
    "loaded = [m for m in sys.modules if m == 'tests' or m.startswith('tests.')]; "
    "assert not loaded, loaded"
)


def test_importing_every_worker_module_loads_nothing_from_tests() -> None:
    # A fresh interpreter: this one has imported tests already.
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
DOTTED = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def _event_names(node: ast.expr) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _event_names(node.body) + _event_names(node.orelse)
    return []


def test_log_events_are_named_component_dot_event() -> None:
    """One style of log event names (``consumer.dead_lettered``), and one audit event."""
    bad: list[str] = []
    for path in sorted((ROOT / "worker").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
                and node.args
            ):
                continue
            for name in _event_names(node.args[0]):
                if name != "audit" and not DOTTED.match(name):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name!r}")
    assert not bad, "\n".join(bad)
