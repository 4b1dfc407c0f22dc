"""Settings: defaults, the fixed names, and clear errors."""

from __future__ import annotations

import os
from itertools import takewhile
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from app.config.settings import (
    SETTINGS,
    Settings,
    SettingsError,
    Source,
    UnknownVariable,
    markdown_table,
    unknown_variables,
)
from app.kafka.connection import KafkaConnection

# Only a file's existence is checked when settings are read: any file stands for a PEM file.
PEM = __file__
LOGIN = {"CPS_KAFKA_SASL_USERNAME": "engine", "CPS_KAFKA_SASL_PASSWORD": "pw"}
CLIENT_CERTIFICATE = {"CPS_KAFKA_SSL_CERTFILE": PEM, "CPS_KAFKA_SSL_KEYFILE": PEM}


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
    ({"CPS_ROCKSDB_CACHE_MB": "16"}, "replaced by CPS_ROCKSDB_MEMORY_MB"),
    ({"CPS_ROCKSDB_MEMORY_MB": "8"}, "below the minimum"),
])
def test_bad_values_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_secrets_are_required_to_serve():
    with pytest.raises(SettingsError,
                       match="CPS_ADMIN_TOKEN and CPS_LINK_SECRET and CPS_VIEW_TOKEN"):
        Settings.from_env({}).require_secrets()
    Settings.from_env({"CPS_ADMIN_TOKEN": "a", "CPS_LINK_SECRET": "b",
                       "CPS_VIEW_TOKEN": "c"}).require_secrets()


def test_the_view_token_may_not_be_the_admin_token():
    with pytest.raises(SettingsError, match="CPS_VIEW_TOKEN must differ from CPS_ADMIN_TOKEN"):
        Settings.from_env({"CPS_ADMIN_TOKEN": "a", "CPS_LINK_SECRET": "b",
                           "CPS_VIEW_TOKEN": "a"}).require_secrets()


def test_readme_documents_every_setting():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme]
    assert not missing, f"README.md lacks {missing}"


def test_settings_without_environment_are_the_defaults():
    assert Settings() == Settings.from_env({})


def test_derived_defaults_paths_and_lists():
    settings = Settings.from_env({"CPS_WEB_PORT": "7000", "CPS_DATA_DIR": "~/cps",
                                  "CPS_LINK_SECRETS_PREVIOUS": " old1, ,old2 "})
    assert settings.public_url == "http://127.0.0.1:7000"
    assert settings.data_dir == Path("~/cps").expanduser()
    assert settings.link_secrets_previous == ("old1", "old2")
    assert Settings.from_env({"CPS_PUBLIC_URL": "https://go.example.com/"}).public_url == (
        "https://go.example.com")


def test_sources_say_where_each_value_came_from():
    _, sources = Settings.from_env_with_sources({"CPS_KAFKA_PORT": "19092"})
    assert (sources["CPS_KAFKA_PORT"], sources["CPS_BROKER"], sources["CPS_PARTITIONS"]) == (
        Source.ENVIRONMENT, Source.DERIVED, Source.DEFAULT)


def test_secrets_stay_out_of_the_repr():
    settings = Settings.from_env({"CPS_ADMIN_TOKEN": "tok-123", "CPS_LINK_SECRET": "sec-456",
                                  "CPS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                  "CPS_KAFKA_SASL_USERNAME": "engine",
                                  "CPS_LINK_SECRETS_PREVIOUS": "old-789",
                                  "CPS_KAFKA_SASL_PASSWORD": "pw-000"})
    assert not any(secret in repr(settings) for secret in ("tok-123", "sec-456", "old-789",
                                                           "pw-000"))


def test_kafka_connection_settings():
    settings = Settings.from_env({"CPS_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
                                  "CPS_KAFKA_SASL_MECHANISM": "scram-sha-512",
                                  "CPS_KAFKA_SASL_USERNAME": "engine",
                                  "CPS_KAFKA_SASL_PASSWORD": "pw"})
    connection = KafkaConnection.from_settings(settings)
    assert (connection.security_protocol, connection.sasl_mechanism, connection.ssl_cafile) == (
        "SASL_SSL", "SCRAM-SHA-512", "")
    defaults = Settings()
    assert (defaults.kafka_security_protocol, defaults.kafka_sasl_mechanism) == (
        "PLAINTEXT", "PLAIN")


def test_kafka_tls_files_must_exist(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("PEM")
    settings = Settings.from_env({"CPS_KAFKA_SECURITY_PROTOCOL": "SSL",
                                  "CPS_KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem"),
                                  "CPS_KAFKA_SSL_CERTFILE": str(tmp_path / "cert.pem"),
                                  "CPS_KAFKA_SSL_KEYFILE": str(tmp_path / "key.pem")})
    assert settings.kafka_ssl_keyfile == str(tmp_path / "key.pem")
    with pytest.raises(SettingsError, match=r"CPS_KAFKA_SSL_CAFILE=.*no such file"):
        Settings.from_env({"CPS_KAFKA_SSL_CAFILE": str(tmp_path / "missing.pem")})


@pytest.mark.parametrize(("env", "message"), [
    ({"CPS_KAFKA_SECURITY_PROTOCOL": "TLS"}, "CPS_KAFKA_SECURITY_PROTOCOL='TLS': choose one of "
                                             "PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ({"CPS_KAFKA_SASL_MECHANISM": "GSSAPI"}, "CPS_KAFKA_SASL_MECHANISM='GSSAPI'"),
    ({"CPS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
     "set CPS_KAFKA_SASL_USERNAME and CPS_KAFKA_SASL_PASSWORD$"),
    ({"CPS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CPS_KAFKA_SASL_USERNAME": "engine"},
     "set CPS_KAFKA_SASL_PASSWORD$"),
    ({"CPS_KAFKA_SECURITY_PROTOCOL": "SSL", "CPS_KAFKA_SSL_CERTFILE": __file__},
     "CPS_KAFKA_SSL_CERTFILE is set but CPS_KAFKA_SSL_KEYFILE is not"),
    ({"CPS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **LOGIN, "CPS_KAFKA_SSL_KEYFILE": __file__},
     "CPS_KAFKA_SSL_KEYFILE is set but CPS_KAFKA_SSL_CERTFILE is not"),
])
def test_bad_kafka_connection_settings_say_what_to_fix(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(("env", "message"), [
    ({"CPS_KAFKA_SSL_CAFILE": PEM},
     "CPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT would ignore CPS_KAFKA_SSL_CAFILE: set "
     "CPS_KAFKA_SECURITY_PROTOCOL=SSL to use it, or unset it"),
    (CLIENT_CERTIFICATE,
     "CPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT would ignore CPS_KAFKA_SSL_CERTFILE and "
     "CPS_KAFKA_SSL_KEYFILE: set CPS_KAFKA_SECURITY_PROTOCOL=SSL to use them, or unset them"),
    ({"CPS_KAFKA_SECURITY_PROTOCOL": "plaintext", **LOGIN},
     "CPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT would ignore CPS_KAFKA_SASL_USERNAME and "
     "CPS_KAFKA_SASL_PASSWORD: set CPS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT to use them, "
     "or unset them"),
    ({"CPS_KAFKA_SASL_MECHANISM": "PLAIN"},
     "CPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT would ignore CPS_KAFKA_SASL_MECHANISM: set "
     "CPS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT to use it, or unset it"),
    ({"CPS_KAFKA_SSL_CAFILE": PEM, "CPS_KAFKA_SASL_PASSWORD": "pw"},
     "CPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT would ignore CPS_KAFKA_SSL_CAFILE and "
     "CPS_KAFKA_SASL_PASSWORD: set CPS_KAFKA_SECURITY_PROTOCOL=SASL_SSL to use them, "
     "or unset them"),
    ({"CPS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **LOGIN, "CPS_KAFKA_SSL_CAFILE": PEM},
     "CPS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT would ignore CPS_KAFKA_SSL_CAFILE: set "
     "CPS_KAFKA_SECURITY_PROTOCOL=SASL_SSL to use it, or unset it"),
    ({"CPS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **LOGIN, **CLIENT_CERTIFICATE},
     "CPS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT would ignore CPS_KAFKA_SSL_CERTFILE and "
     "CPS_KAFKA_SSL_KEYFILE: set CPS_KAFKA_SECURITY_PROTOCOL=SASL_SSL to use them, or unset "
     "them"),
    ({"CPS_KAFKA_SECURITY_PROTOCOL": "SSL", **LOGIN},
     "CPS_KAFKA_SECURITY_PROTOCOL=SSL would ignore CPS_KAFKA_SASL_USERNAME and "
     "CPS_KAFKA_SASL_PASSWORD: set CPS_KAFKA_SECURITY_PROTOCOL=SASL_SSL to use them, or unset "
     "them"),
    ({"CPS_KAFKA_SECURITY_PROTOCOL": "SSL", "CPS_KAFKA_SSL_CAFILE": PEM,
      "CPS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
     "CPS_KAFKA_SECURITY_PROTOCOL=SSL would ignore CPS_KAFKA_SASL_MECHANISM: set "
     "CPS_KAFKA_SECURITY_PROTOCOL=SASL_SSL to use it, or unset it"),
])
def test_tls_or_sasl_settings_the_protocol_would_ignore_are_refused(env, message):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == message


@pytest.mark.parametrize("env", [
    {"CPS_KAFKA_SECURITY_PROTOCOL": "SSL", "CPS_KAFKA_SSL_CAFILE": PEM, **CLIENT_CERTIFICATE},
    {"CPS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CPS_KAFKA_SASL_MECHANISM": "PLAIN",
     **LOGIN},
    {"CPS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CPS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
     **LOGIN, "CPS_KAFKA_SSL_CAFILE": PEM, **CLIENT_CERTIFICATE},
    {"CPS_KAFKA_SSL_CAFILE": "", "CPS_KAFKA_SASL_USERNAME": "", "CPS_KAFKA_SASL_PASSWORD": ""},
])
def test_settings_the_protocol_uses_are_taken(env):
    connection = KafkaConnection.from_settings(Settings.from_env(env))
    assert connection.security_protocol == env.get("CPS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")


@pytest.mark.parametrize("command", [["settings"], ["settings", "--markdown"],
                                     ["worker", "--help"]])
def test_every_command_refuses_settings_the_protocol_would_ignore(cps, command):
    result = cps(*command, CPS_KAFKA_SSL_CAFILE=PEM)
    assert result.exit_code == 2, result.output
    assert "CPS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT would ignore CPS_KAFKA_SSL_CAFILE" in (
        result.output)


def test_readme_settings_table_is_the_declared_one():
    lines = (Path(__file__).resolve().parents[1] / "README.md").read_text().splitlines()
    table = takewhile(lambda line: line.startswith("|"),
                      lines[lines.index("| variable | meaning | default |"):])
    # On a difference: paste the output of `cps settings --markdown` into README.md.
    assert "\n".join(table) + "\n" == markdown_table()


@pytest.fixture
def cps(monkeypatch):
    """Runs `cps ARGS` with only the given CPS_* variables set."""
    for name in [name for name in os.environ if name.startswith("CPS_")]:
        monkeypatch.delenv(name)
    return lambda *args, **env: CliRunner().invoke(main, list(args), env=env)


def test_cps_settings_shows_values_and_where_they_came_from(cps):
    result = cps("settings", CPS_KAFKA_PORT="19092", CPS_ADMIN_TOKEN="tok-123",
                 CPS_VIEW_TOKEN="view-789", CPS_METRICS_TOKEN="metrics-012",
                 CPS_LINK_SECRETS_PREVIOUS="old-1,old-2", CPS_KAFKA_SASL_PASSWORD="pw-000",
                 CPS_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", CPS_KAFKA_SASL_USERNAME="engine")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()}
    assert list(rows) == [declared.name for declared in SETTINGS]
    assert rows["CPS_BROKER"] == ["127.0.0.1:19092", "derived", "default"]
    assert rows["CPS_KAFKA_PORT"] == ["19092", "environment"]
    assert rows["CPS_PARTITIONS"] == ["8", "default"]
    assert rows["CPS_ADMIN_TOKEN"] == ["(hidden)", "environment"]
    assert rows["CPS_LINK_SECRET"] == ["(empty)", "default"]
    assert rows["CPS_VIEW_TOKEN"] == ["(hidden)", "environment"]
    assert rows["CPS_METRICS_TOKEN"] == ["(hidden)", "environment"]
    assert not any(secret in result.output
                   for secret in ("tok-123", "old-1", "pw-000", "view-789", "metrics-012"))


def test_cps_settings_markdown_is_the_readme_table(cps):
    result = cps("settings", "--markdown")
    assert result.exit_code == 0, result.output
    assert result.output == markdown_table()


def test_cps_settings_names_a_bad_variable(cps):
    result = cps("settings", CPS_KAFKA_SECURITY_PROTOCOL="SASL_SSL")
    assert result.exit_code == 2
    assert "CPS_KAFKA_SASL_USERNAME and CPS_KAFKA_SASL_PASSWORD" in result.output


def test_variables_that_are_no_settings_are_named_with_the_setting_meant():
    env = {
        "CPS_VIEW_TOKNE": "v", "CPS_PARTITION": "8", "CPS_LOGLEVEL": "debug",
        "CPS_KAFKA_SASL_USER": "engine", "CPS_METRIC_TOKEN": "m",
        "CPS_NOTHING_LIKE_IT": "x", "CPS_": "x",
        "CPS_CHAOS": "full",  # read by the integration tests
        "CPS_ROCKSDB_CACHE_MB": "16",  # retired: refused with its own message
        "CPS_BROKER": "k:9092", "CPS_VIEW_TOKEN": "v",  # settings
        "PATH": "/bin", "KAFKA_VIEW_TOKEN": "v", "cps_view_token": "v",  # not CPS_*
    }
    assert unknown_variables(env) == [
        UnknownVariable("CPS_", None),
        UnknownVariable("CPS_KAFKA_SASL_USER", "CPS_KAFKA_SASL_USERNAME"),
        UnknownVariable("CPS_LOGLEVEL", "CPS_LOG_LEVEL"),
        UnknownVariable("CPS_METRIC_TOKEN", "CPS_METRICS_TOKEN"),
        UnknownVariable("CPS_NOTHING_LIKE_IT", None),
        UnknownVariable("CPS_PARTITION", "CPS_PARTITIONS"),
        UnknownVariable("CPS_VIEW_TOKNE", "CPS_VIEW_TOKEN"),
    ]


def test_no_setting_is_unknown():
    assert unknown_variables({declared.name: "x" for declared in SETTINGS}) == []


def test_a_guess_is_only_offered_when_one_is_close():
    assert UnknownVariable("CPS_VIEW_TOKNE", "CPS_VIEW_TOKEN").warning() == (
        "CPS_VIEW_TOKNE is not a setting (did you mean CPS_VIEW_TOKEN?); it is ignored")
    assert UnknownVariable("CPS_NOTHING_LIKE_IT", None).warning() == (
        "CPS_NOTHING_LIKE_IT is not a setting; it is ignored")


@pytest.mark.parametrize("command", [["settings"], ["settings", "--markdown"],
                                     ["worker", "--help"]])
def test_every_command_warns_of_variables_that_are_no_settings_without_their_values(cps,
                                                                                    command):
    result = cps(*command, CPS_VIEW_TOKNE="typo-value-1", CPS_NOTHING_LIKE_IT="other-value-2",
                 CPS_CHAOS="full")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "cps: CPS_NOTHING_LIKE_IT is not a setting; it is ignored",
        "cps: CPS_VIEW_TOKNE is not a setting (did you mean CPS_VIEW_TOKEN?); it is ignored",
    ]
    assert "typo-value-1" not in result.output and "other-value-2" not in result.output


def test_the_warning_comes_before_the_refusal_it_may_explain(cps):
    result = cps("settings", CPS_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                 CPS_KAFKA_SASL_USERNAM="engine", CPS_KAFKA_SASL_PASSWORD="pw")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "cps: CPS_KAFKA_SASL_USERNAM is not a setting "
        "(did you mean CPS_KAFKA_SASL_USERNAME?); it is ignored",
        "cps: CPS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT logs in with SASL: "
        "set CPS_KAFKA_SASL_USERNAME",
    ]
