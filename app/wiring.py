"""The explicit list of modules that attach to the app (no autodiscovery)."""

from __future__ import annotations


def load() -> None:
    """Import every table, agent and web view module so they register with the app."""
    import tables.attribution  # noqa: F401
