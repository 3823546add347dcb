"""Importing ahead: heavy modules loaded on a side thread while the main thread waits on something else
(Ray starting, trials running), so that the code that needs them later finds them loaded. Python's import
locks keep a module that two threads want imported once."""

from __future__ import annotations

import importlib


def import_ahead(modules: tuple[str, ...]) -> None:
    """Import `modules` in order; stops at one that fails to import, and leaves it to the code that needs it to
    say what is wrong."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the needing code's own import reports it
            return
