"""Settings: defaults, the fixed names, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import SETTINGS, Settings, SettingsError


def test_defaults():
    settings = Settings.from_env({})
    assert (settings.broker, settings.topic_prefix, settings.partitions, settings.web_port,
            settings.app_id, settings.kafka_port) == (
        "127.0.0.1:9092", "cps.", 8, 6066, "cps-engine", 9092)
    assert settings.data_dir == Path("./var")
    assert settings.attribution_grace_ms == 30_000


def test_broker_defaults_to_the_local_port():
    assert Settings.from_env({"CPS_KAFKA_PORT": "19092"}).broker == "127.0.0.1:19092"
    assert Settings.from_env({"CPS_BROKER": "k1:9092,k2:9092"}).broker == "k1:9092,k2:9092"


def test_spec_names_are_all_documented():
    names = {s.name for s in SETTINGS}
    assert {"CPS_BROKER", "CPS_KAFKA_PORT", "CPS_TOPIC_PREFIX", "CPS_PARTITIONS", "CPS_WEB_PORT",
            "CPS_DATA_DIR", "CPS_ADMIN_TOKEN", "CPS_LINK_SECRET", "CPS_APP_ID"} <= names


@pytest.mark.parametrize(("env", "message"), [
    ({"CPS_PARTITIONS": "eight"}, "CPS_PARTITIONS='eight' is not an integer"),
    ({"CPS_PARTITIONS": "0"}, "below the minimum"),
    ({"CPS_WEB_PORT": "70000"}, "above the maximum"),
    ({"CPS_TOPIC_PREFIX": "a b"}, "CPS_TOPIC_PREFIX"),
    ({"CPS_LOG_LEVEL": "loud"}, "CPS_LOG_LEVEL"),
    ({"CPS_APP_ID": "  "}, "CPS_APP_ID is set but empty"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_secrets_are_required_to_serve():
    with pytest.raises(SettingsError, match="CPS_ADMIN_TOKEN and CPS_LINK_SECRET"):
        Settings.from_env({}).require_secrets()
    Settings.from_env({"CPS_ADMIN_TOKEN": "a", "CPS_LINK_SECRET": "b"}).require_secrets()


def test_readme_documents_every_setting():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme]
    assert not missing, f"README.md lacks {missing}"
