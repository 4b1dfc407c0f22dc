"""The explicit list of modules that attach to the app (no autodiscovery)."""

from __future__ import annotations

import importlib

# Tables before the agents that use them; web views last.
MODULES = (
    "tables.attribution",
    "tables.billing",
    "tables.balances",
    "tables.order_center",
    "agents.attribution",
    "agents.billing",
    "agents.balances",
    "agents.order_center",
    "agents.configuration",
    "app.web.health",
    "app.web.accounts",
    "app.web.clicks",
    "app.web.admin",
    "app.web.orders",
    "app.web.demo",
    "app.web.metrics",
    "app.web.sinks",
    "app.web.subscribe",
    "app.web.monitoring",
)


def load() -> None:
    """Import every table, agent and web view module so they register with the app."""
    for name in MODULES:
        importlib.import_module(name)
