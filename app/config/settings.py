"""Engine settings, read once from `CPS_*` environment variables.

Each setting is declared once, as a field of `Settings`: its variable, default,
meaning and the rules a value must meet. Reading the environment, `cps settings`
and the settings table of README.md all follow from that declaration.

Every setting has a default except the tokens and the link secret, which a worker
refuses to run without (`make run` sets demo values and prints them). The names in the
first block are fixed by the product specification; the rest are ours.
"""

from __future__ import annotations

import difflib
import hmac
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cache
from pathlib import Path
from string import Template
from typing import Any, get_type_hints

from app.kafka.connection import SASL_MECHANISMS, SECURITY_PROTOCOLS, KafkaConnection

DAY_MS = 86_400_000


# Until 2026-12: a block cache of this size for each table partition, so a worker's
# RocksDB memory could grow with its tables times partitions (up to 4.3 GiB).
RETIRED_ROCKSDB_CACHE = "CPS_ROCKSDB_CACHE_MB"

# The settings only a TLS protocol (SSL, SASL_SSL) uses, those only a SASL one uses, and the
# protocol that uses each combination (TLS, SASL).
TLS_SETTINGS = ("CPS_KAFKA_SSL_CAFILE", "CPS_KAFKA_SSL_CERTFILE", "CPS_KAFKA_SSL_KEYFILE")
SASL_SETTINGS = ("CPS_KAFKA_SASL_MECHANISM", "CPS_KAFKA_SASL_USERNAME", "CPS_KAFKA_SASL_PASSWORD")
PROTOCOLS = {(False, False): "PLAINTEXT", (True, False): "SSL", (False, True): "SASL_PLAINTEXT",
             (True, True): "SASL_SSL"}


class SettingsError(ValueError):
    """A `CPS_*` variable is missing or malformed; the message says which and how to fix it."""


class Source(StrEnum):
    """Where a setting's value came from."""

    ENVIRONMENT = "environment"
    DEFAULT = "default"
    DERIVED = "derived default"


@dataclass(frozen=True, slots=True)
class Setting:
    """One `CPS_*` variable: its default, what it means, and what a value must satisfy.

    `default` is written as the variable would be; a `Template` default is made of
    other settings (`$CPS_KAFKA_PORT`). The type of the `Settings` field says how the
    text is read: int, str, Path (`~` expanded) or tuple[str, ...] (comma-separated).
    """

    name: str
    default: str | int | Template
    meaning: str
    note: str = ""  # said after the default in README, e.g. "30 days"
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()  # matched ignoring case, kept as written here
    allow_empty: bool = False  # besides every setting whose default is empty
    secret: bool = False  # never printed, logged or shown in a repr
    required: bool = False  # a worker refuses to serve without it (`require_secrets`)
    check: Callable[[str, str], str] | None = None  # (name, text) -> text, or SettingsError

    @property
    def derived(self) -> bool:
        return isinstance(self.default, Template)

    @property
    def accepts_empty(self) -> bool:
        return self.allow_empty or self.default == ""

    @property
    def description(self) -> str:
        return f"{self.meaning} ({', '.join(self.choices)})" if self.choices else self.meaning

    @property
    def documented_default(self) -> str:
        if self.required:
            return "required"
        text = self.default.template if isinstance(self.default, Template) else str(self.default)
        shown = f"`{text}`" if text else "none"
        return f"{shown} ({self.note})" if self.note else shown

    def shown(self, value: Any) -> str:
        """The value as `cps settings` prints it: secrets hidden, lists comma-separated."""
        text = ",".join(value) if isinstance(value, tuple) else str(value)
        if self.secret and text:
            return "(hidden)"
        return text or "(empty)"


_SETTING = "cps_setting"


def setting(name: str, default: str | int | Template, meaning: str, **rules: Any) -> Any:
    """A `Settings` field read from the variable `name`; `rules` are `Setting`'s checks."""
    declared = Setting(name, default, meaning, **rules)
    return field(default_factory=lambda: _default_value(declared), repr=not declared.secret,
                 metadata={_SETTING: declared})


def _cron(name: str, text: str) -> str:
    from croniter import croniter

    if not croniter.is_valid(text):
        raise SettingsError(f"{name}={text!r} is not a cron expression "
                            "(five fields, e.g. '* * * * *' for every minute)")
    return text


def _time_zone(name: str, text: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{name}={text!r} is not an IANA time zone "
                            "(e.g. Asia/Shanghai, UTC)") from None
    return text


def _power_of_two(name: str, text: str) -> str:
    if int(text) & (int(text) - 1):
        raise SettingsError(f"{name}={text} is not a power of two (1, 2, 4, 8, 16, ...)")
    return text


def _topic_name_characters(name: str, text: str) -> str:
    if any(not c.isalnum() and c not in "._-" for c in text):
        raise SettingsError(f"{name}={text!r}: use letters, digits, '.', '_' or '-'")
    return text


def _without_trailing_slash(_name: str, text: str) -> str:
    return text.rstrip("/")


def _existing_file(name: str, text: str) -> str:
    if not text:
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        raise SettingsError(f"{name}={text!r}: no such file; give the path of a PEM file "
                            "or unset the variable")
    return str(path)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every engine setting; `Settings()` holds the defaults, `from_env` reads the environment."""

    broker: str = setting("CPS_BROKER", Template("127.0.0.1:$CPS_KAFKA_PORT"),
                          "Kafka bootstrap servers (comma-separated)")
    kafka_port: int = setting(
        "CPS_KAFKA_PORT", 9092,
        "port of the local broker started by `cps kafka start` (0 picks a free one)",
        minimum=0, maximum=65535)
    topic_prefix: str = setting("CPS_TOPIC_PREFIX", "cps.", "prefix of every topic name",
                                allow_empty=True, check=_topic_name_characters)
    partitions: int = setting("CPS_PARTITIONS", 8, "partitions of the topics the engine creates",
                              minimum=1, maximum=1024)
    web_port: int = setting("CPS_WEB_PORT", 6066, "web server port of a worker",
                            minimum=0, maximum=65535)
    data_dir: Path = setting("CPS_DATA_DIR", "./var",
                             "local state of a worker (RocksDB tables, click spool)")
    admin_token: str = setting("CPS_ADMIN_TOKEN", "", "bearer token of the admin API",
                               secret=True, required=True)
    link_secret: str = setting("CPS_LINK_SECRET", "",
                               "HMAC key of promotion links, tracking tokens, promoter tokens "
                               "and sign-in sessions",
                               secret=True, required=True)
    view_token: str = setting("CPS_VIEW_TOKEN", "",
                              "bearer token of the read-only views and `/subscribe`",
                              secret=True, required=True)
    metrics_token: str = setting("CPS_METRICS_TOKEN", "", "bearer token of `/metrics`",
                                 note="unset: `/metrics` open", secret=True)
    app_id: str = setting("CPS_APP_ID", "cps-engine", "Faust app id and Kafka consumer group")

    kafka_security_protocol: str = setting(
        "CPS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "how the engine connects to Kafka",
        choices=SECURITY_PROTOCOLS)
    kafka_sasl_mechanism: str = setting(
        "CPS_KAFKA_SASL_MECHANISM", "PLAIN", "SASL mechanism of a `SASL_*` protocol",
        choices=SASL_MECHANISMS)
    kafka_sasl_username: str = setting(
        "CPS_KAFKA_SASL_USERNAME", "", "SASL user name (needed by a `SASL_*` protocol)")
    kafka_sasl_password: str = setting(
        "CPS_KAFKA_SASL_PASSWORD", "", "SASL password (needed by a `SASL_*` protocol)",
        secret=True)
    kafka_ssl_cafile: str = setting(
        "CPS_KAFKA_SSL_CAFILE", "",
        "PEM file of the CA that signed the brokers' certificates (`SSL`, `SASL_SSL`)",
        note="the system's trusted roots", check=_existing_file)
    kafka_ssl_certfile: str = setting(
        "CPS_KAFKA_SSL_CERTFILE", "",
        "PEM client certificate for mutual TLS (with `CPS_KAFKA_SSL_KEYFILE`)",
        check=_existing_file)
    kafka_ssl_keyfile: str = setting(
        "CPS_KAFKA_SSL_KEYFILE", "", "PEM private key of that client certificate",
        check=_existing_file)

    link_secrets_previous: tuple[str, ...] = setting(
        "CPS_LINK_SECRETS_PREVIOUS", "",
        "earlier link secrets, comma-separated, still accepted (secret rotation)", secret=True)
    public_url: str = setting("CPS_PUBLIC_URL", Template("http://127.0.0.1:$CPS_WEB_PORT"),
                              "base URL of the promotion links the engine makes",
                              check=_without_trailing_slash)
    link_ttl_s: int = setting("CPS_LINK_TTL_S", 30 * 86_400,
                              "lifetime of a promotion link made without `ttl_s`",
                              note="30 days", minimum=1)
    click_dedupe_ms: int = setting(
        "CPS_CLICK_DEDUPE_MS", 10_000,
        "repeated clicks of one buyer on one link within this time count once", minimum=0)
    max_subscribers: int = setting(
        "CPS_MAX_SUBSCRIBERS", 100,
        "live subscribers (`/subscribe`) a worker serves at once (503 above)", minimum=1)
    session_ttl_s: int = setting(
        "CPS_SESSION_TTL_S", 12 * 3600,
        "how long a browser stays signed in to the views (a promoter's session ends with its "
        "token at the latest)", note="12 hours", minimum=60, maximum=30 * 86_400)
    admin_max_body_bytes: int = setting("CPS_ADMIN_MAX_BODY_BYTES", 65_536,
                                        "largest admin request body accepted (413 above)",
                                        minimum=1024)
    web_host: str = setting("CPS_WEB_HOST", "127.0.0.1",
                            "address the worker's web server binds to")
    replication: int = setting("CPS_REPLICATION", 1,
                               "replication factor of the topics the engine creates",
                               minimum=1, maximum=16)
    attribution_grace_ms: int = setting(
        "CPS_ATTRIBUTION_GRACE_MS", 30_000,
        "how long an order without a click (or without `created`) waits for a late one, "
        "processing time (clicks already in Kafka are always waited for)", minimum=0)
    click_retention_ms: int = setting(
        "CPS_CLICK_RETENTION_MS", 30 * DAY_MS,
        "click history kept per buyer, by event time against the wall clock",
        note="30 days", minimum=0)
    click_history_cap: int = setting("CPS_CLICK_HISTORY_CAP", 100, "most clicks kept per buyer",
                                     minimum=1)
    settlement_schedule: str = setting(
        "CPS_SETTLEMENT_SCHEDULE", "* * * * *",
        "cron expression of the settlement check (wall clock, UTC; an optional sixth field, "
        "last, is seconds: `* * * * * */5` = every 5 s)", note="every minute", check=_cron)
    commit_linger_ms: int = setting(
        "CPS_COMMIT_LINGER_MS", 50,
        "how long the oldest uncommitted event of a slot (the partitions a worker commits "
        "together, docs/exactly-once.md) waits for others before the engine commits that slot "
        "(counted from when that event came in, so work that waited through a longer commit "
        "goes right after it): shorter lowers latency but makes more transactions",
        minimum=0, maximum=10_000)
    commit_max_events: int = setting("CPS_COMMIT_MAX_EVENTS", 5000,
                                     "events after which the engine commits at once", minimum=1)
    commit_max_records: int = setting(
        "CPS_COMMIT_MAX_RECORDS", 20_000,
        "output records (results, fan-out, dead letters; not changelog) held uncommitted "
        "after which the engine commits at once; at 3 times this it stops reading until they "
        "are committed, and timers and catch-ups that produce much at once (the orders a "
        "backlog frees, plan pages) go on only below it",
        minimum=100)
    fetch_max_wait_ms: int = setting(
        "CPS_FETCH_MAX_WAIT_MS", 20,
        "how long the broker may hold a worker's fetch to gather up to 1 MiB before it "
        "answers: fewer, larger fetches cost less CPU per event while live, and each hop "
        "waits up to this long (0: answer as soon as any record is there)",
        minimum=0, maximum=1_000)
    standby_replicas: int = setting("CPS_STANDBY_REPLICAS", 0,
                                    "Faust standby replicas of each table partition",
                                    minimum=0, maximum=8)
    monitor_interval_s: int = setting(
        "CPS_MONITOR_INTERVAL_S", 5,
        "how often each worker samples lag, throughput and alerts, seconds",
        minimum=1, maximum=300)
    alert_lag: int = setting(
        "CPS_ALERT_LAG", 10_000,
        "alert when the engine's consumer lag (all partitions) stays above this", minimum=0)
    alert_lag_for_s: int = setting("CPS_ALERT_LAG_FOR_S", 60, "... for this long, seconds",
                                   minimum=0)
    alert_delay_p99_ms: int = setting(
        "CPS_ALERT_DELAY_P99_MS", 2000,
        "alert when the attribution delay p99 of the last minute stays above this", minimum=1)
    alert_delay_for_s: int = setting("CPS_ALERT_DELAY_FOR_S", 60, "... for this long, seconds",
                                     minimum=0)
    alert_dead_letters_per_min: int = setting(
        "CPS_ALERT_DEAD_LETTERS_PER_MIN", 60,
        "alert when more input than this per minute goes to the dead-letter topic", minimum=0)
    backfill_ms: int = setting(
        "CPS_BACKFILL_MS", 3_600_000,
        "orders older than this when attributed count as backfill, left out of the delay figures",
        note="1 hour", minimum=1)
    rocksdb_memory_mb: int = setting(
        "CPS_ROCKSDB_MEMORY_MB", 256,
        "RocksDB memory of a worker, MiB: one block cache for all its table partitions, "
        "their write buffers counted in it (up to half)", minimum=16)
    kafka_home: Path = setting("CPS_KAFKA_HOME", "~/.cache/cps",
                               "where `cps kafka` caches broker jars and keeps broker data")
    log_level: str = setting("CPS_LOG_LEVEL", "info", "worker log level",
                             choices=("debug", "info", "warn", "error"))
    plan_tz: str = setting("CPS_PLAN_TZ", "UTC",
                           "time zone of operation plans that name none (period expressions, "
                           "schedules)", check=_time_zone)
    plan_max_lateness_ms: int = setting(
        "CPS_PLAN_MAX_LATENESS_MS", 3_600_000,
        "an occurrence not started within this of its fire time (worker down, plan paused) "
        "is recorded `missed`, never sent late; once started, every buyer is decided",
        note="1 hour", minimum=0)
    plan_shards: int = setting(
        "CPS_PLAN_SHARDS", 16, "shards per partition of an occurrence's buyers (power of two; "
        "progress is shown per shard)", minimum=1, maximum=1024, check=_power_of_two)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings `env` (by default the process environment) gives, all checked."""
        return cls.from_env_with_sources(env)[0]

    @classmethod
    def from_env_with_sources(
            cls, env: Mapping[str, str] | None = None) -> tuple[Settings, dict[str, Source]]:
        """`from_env`, and where each variable's value came from."""
        env = os.environ if env is None else env
        kinds = _field_kinds()
        values: dict[str, Any] = {}
        sources: dict[str, Source] = {}
        texts: dict[str, str] = {}
        # A derived default is made of other settings' values: read those first.
        for each in sorted(fields(cls), key=lambda f: f.metadata[_SETTING].derived):
            declared: Setting = each.metadata[_SETTING]
            values[each.name], sources[declared.name] = _read(
                declared, kinds[declared.name], env.get(declared.name),
                _default_text(declared, texts))
            texts[declared.name] = str(values[each.name])
        if RETIRED_ROCKSDB_CACHE in env:
            raise SettingsError(
                f"{RETIRED_ROCKSDB_CACHE} (a cache per table partition) is replaced by "
                "CPS_ROCKSDB_MEMORY_MB (one budget for the worker's RocksDB): unset it")
        settings = cls(**values)
        settings._check_kafka_settings_used(sources)
        settings._check_kafka_credentials()
        return settings, sources

    def require_secrets(self) -> None:
        """Refuse to serve without the admin and view tokens and the link secret."""
        missing = [declared.name for declared, value in self._declared_values()
                   if declared.required and not value]
        if missing:
            raise SettingsError(
                f"{' and '.join(missing)} must be set (a long random string each); "
                "`make run` sets demo values for local use"
            )
        if hmac.compare_digest(self.view_token.encode(), self.admin_token.encode()):
            raise SettingsError("CPS_VIEW_TOKEN must differ from CPS_ADMIN_TOKEN: whoever may "
                                "read the views would otherwise change the configuration")

    def describe(self, sources: Mapping[str, Source]) -> list[tuple[str, str, Source]]:
        """Each variable, its value as shown to people (secrets hidden), and its source."""
        return [(declared.name, declared.shown(value), sources[declared.name])
                for declared, value in self._declared_values()]

    def _declared_values(self) -> list[tuple[Setting, Any]]:
        return [(each.metadata[_SETTING], getattr(self, each.name)) for each in fields(self)]

    def _check_kafka_settings_used(self, sources: Mapping[str, Source]) -> None:
        """Refuse TLS or SASL settings the security protocol would ignore: whoever set them
        expects them used (a certificate, a login), not a connection without them."""
        connection = KafkaConnection.from_settings(self)
        given = {declared.name for declared, value in self._declared_values()
                 if sources[declared.name] is Source.ENVIRONMENT and value != ""}
        tls = [name for name in TLS_SETTINGS if name in given]
        sasl = [name for name in SASL_SETTINGS if name in given]
        ignored = [*([] if connection.uses_tls else tls), *([] if connection.uses_sasl else sasl)]
        if not ignored:
            return
        wanted = PROTOCOLS[(connection.uses_tls or bool(tls), connection.uses_sasl or bool(sasl))]
        them = "it" if len(ignored) == 1 else "them"
        raise SettingsError(
            f"CPS_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} would ignore "
            f"{' and '.join(ignored)}: set CPS_KAFKA_SECURITY_PROTOCOL={wanted} to use {them}, "
            f"or unset {them}")

    def _check_kafka_credentials(self) -> None:
        if KafkaConnection.from_settings(self).uses_sasl:
            credentials = {"CPS_KAFKA_SASL_USERNAME": self.kafka_sasl_username,
                           "CPS_KAFKA_SASL_PASSWORD": self.kafka_sasl_password}
            missing = [name for name, value in credentials.items() if not value]
            if missing:
                raise SettingsError(
                    f"CPS_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} logs in with "
                    f"SASL: set {' and '.join(missing)}")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            given, lacking = ("CPS_KAFKA_SSL_CERTFILE", "CPS_KAFKA_SSL_KEYFILE")
            if not self.kafka_ssl_certfile:
                given, lacking = lacking, given
            raise SettingsError(f"{given} is set but {lacking} is not: a client certificate "
                                "for mutual TLS needs both")


SETTINGS: tuple[Setting, ...] = tuple(each.metadata[_SETTING] for each in fields(Settings))


def markdown_table() -> str:
    """The settings table of README.md, as `cps settings --markdown` prints it."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {s.description} | {s.documented_default} |" for s in SETTINGS]
    return "\n".join(rows) + "\n"


_PREFIX = "CPS_"

# `CPS_*` variables the project's own tools read that are no settings of the engine, so
# that a worker started beside them does not call them misspelt.
TOOL_VARIABLES = (
    "CPS_CHAOS",  # tests/integration: `make chaos` sets it to `full` for the long fault runs
)


@dataclass(frozen=True, slots=True)
class UnknownVariable:
    """A `CPS_*` variable that is no setting, and the setting it most likely meant."""

    name: str
    closest: str | None

    def warning(self) -> str:
        """How `cps` reports it; never with the value, which may be a secret."""
        meant = f" (did you mean {self.closest}?)" if self.closest else ""
        return f"{self.name} is not a setting{meant}; it is ignored"


def unknown_variables(env: Mapping[str, str]) -> list[UnknownVariable]:
    """The `CPS_*` variables of `env` that nothing reads, by name, each with the closest
    setting (difflib's default likeness) or None."""
    # The retired variable is no typo: reading the settings refuses it with its own message.
    read = {s.name for s in SETTINGS} | set(TOOL_VARIABLES) | {RETIRED_ROCKSDB_CACHE}
    return [UnknownVariable(name, _closest_setting(name))
            for name in sorted(env) if name.startswith(_PREFIX) and name not in read]


def _closest_setting(name: str) -> str | None:
    # Compared without the prefix all share, which makes any two short names look alike.
    tails = [s.name.removeprefix(_PREFIX) for s in SETTINGS]
    closest = difflib.get_close_matches(name.removeprefix(_PREFIX), tails, n=1)
    return _PREFIX + closest[0] if closest else None


@cache
def _field_kinds() -> dict[str, Any]:
    """The type of each variable's field, by variable name: it says how the text is read."""
    hints = get_type_hints(Settings)
    return {each.metadata[_SETTING].name: hints[each.name] for each in fields(Settings)}


def _default_text(declared: Setting, texts: Mapping[str, str]) -> str:
    if isinstance(declared.default, Template):
        return declared.default.substitute(texts)
    return str(declared.default)


def _default_value(declared: Setting) -> Any:
    """What `from_env({})` gives for `declared`, so `Settings()` and an empty environment agree."""
    texts = {s.name: str(s.default) for s in SETTINGS if not s.derived}
    return _read(declared, _field_kinds()[declared.name], None, _default_text(declared, texts))[0]


def _read(declared: Setting, kind: Any, raw: str | None, default: str) -> tuple[Any, Source]:
    # A blank integer variable means its default; blank text is a value (an empty topic prefix).
    if raw is None or (kind is int and not raw.strip()):
        text, source = default, Source.DERIVED if declared.derived else Source.DEFAULT
    else:
        text, source = raw.strip(), Source.ENVIRONMENT
        if not text and not declared.accepts_empty:
            raise SettingsError(f"{declared.name} is set but empty; unset it to use {default!r}")
    return _PARSERS[kind](declared, text), source


def _integer(declared: Setting, text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise SettingsError(f"{declared.name}={text!r} is not an integer") from None
    if declared.minimum is not None and value < declared.minimum:
        raise SettingsError(f"{declared.name}={value} is below the minimum {declared.minimum}")
    if declared.maximum is not None and value > declared.maximum:
        raise SettingsError(f"{declared.name}={value} is above the maximum {declared.maximum}")
    if declared.check:
        declared.check(declared.name, str(value))
    return value


def _text(declared: Setting, text: str) -> str:
    if declared.choices:
        text = _choice(declared, text)
    return declared.check(declared.name, text) if declared.check else text


def _choice(declared: Setting, text: str) -> str:
    for choice in declared.choices:
        if choice.lower() == text.lower():
            return choice
    raise SettingsError(f"{declared.name}={text!r}: choose one of {', '.join(declared.choices)}")


def _path(_declared: Setting, text: str) -> Path:
    return Path(text).expanduser()


def _comma_list(_declared: Setting, text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


_PARSERS: dict[Any, Callable[[Setting, str], Any]] = {
    int: _integer, str: _text, Path: _path, tuple[str, ...]: _comma_list,
}
