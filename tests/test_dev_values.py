"""`make run` needs no setup: `cps dev` makes the secrets a worker needs, keeps given ones."""

from __future__ import annotations

from app.cli.dev import demo_values
from app.config.settings import Settings


def test_the_demo_values_are_all_a_worker_needs_to_serve():
    made = demo_values({})
    Settings.from_env(made).require_secrets()  # raises SettingsError for a missing secret
    assert made["CPS_VIEW_TOKEN"] != made["CPS_ADMIN_TOKEN"]
    assert demo_values({}) != made  # random each run, never a fixed value anyone could know


def test_given_values_are_kept():
    given = {"CPS_ADMIN_TOKEN": "a", "CPS_VIEW_TOKEN": "v", "CPS_LINK_SECRET": "s",
             "CPS_SETTLEMENT_SCHEDULE": "0 * * * *"}
    assert demo_values(given) == {}
    assert set(demo_values({"CPS_ADMIN_TOKEN": "a"})) == {
        "CPS_VIEW_TOKEN", "CPS_LINK_SECRET", "CPS_SETTLEMENT_SCHEDULE"}
