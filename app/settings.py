"""Engine settings, read once from `CPS_*` environment variables.

Every setting has a default except the two secrets, which a worker refuses to
run without (`make run` sets demo values and prints them). The names in the
first block are fixed by the product specification; the rest are ours.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DAY_MS = 86_400_000


class SettingsError(ValueError):
    """A `CPS_*` variable is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str
    meaning: str


# The table README.md renders; keep it in the order users look for things.
SETTINGS: tuple[Setting, ...] = (
    Setting("CPS_BROKER", "127.0.0.1:$CPS_KAFKA_PORT", "Kafka bootstrap servers (comma-separated)"),
    Setting("CPS_KAFKA_PORT", "9092", "port of the local broker started by `cps kafka start`"),
    Setting("CPS_TOPIC_PREFIX", "cps.", "prefix of every topic name"),
    Setting("CPS_PARTITIONS", "8", "partitions of the topics the engine creates"),
    Setting("CPS_WEB_PORT", "6066", "web server port of a worker"),
    Setting("CPS_DATA_DIR", "./var", "local state of a worker (RocksDB tables, click spool)"),
    Setting("CPS_ADMIN_TOKEN", "(required)", "bearer token of the admin API"),
    Setting("CPS_LINK_SECRET", "(required)", "HMAC key of promotion links and tracking tokens"),
    Setting("CPS_APP_ID", "cps-engine", "Faust app id and Kafka consumer group"),
    Setting("CPS_LINK_SECRETS_PREVIOUS", "(none)",
            "earlier link secrets, comma-separated, still accepted while links made with them "
            "live (secret rotation)"),
    Setting("CPS_PUBLIC_URL", "http://127.0.0.1:$CPS_WEB_PORT",
            "base URL of the promotion links the engine makes"),
    Setting("CPS_LINK_TTL_S", "2592000", "lifetime of a promotion link made without ttl_s"),
    Setting("CPS_CLICK_DEDUPE_MS", "10000",
            "repeated clicks of one buyer on one link within this time count once"),
    Setting("CPS_ADMIN_MAX_BODY_BYTES", "65536", "largest admin request body accepted"),
    Setting("CPS_MAX_SUBSCRIBERS", "100", "live subscribers (/subscribe) a worker serves at once"),
    Setting("CPS_WEB_HOST", "127.0.0.1", "address the worker's web server binds to"),
    Setting("CPS_REPLICATION", "1", "replication factor of the topics the engine creates"),
    Setting("CPS_ATTRIBUTION_GRACE_MS", "30000",
            "how long an order without a click (or without `created`) waits for a late one, "
            "processing time (clicks already in Kafka are always waited for)"),
    Setting("CPS_CLICK_RETENTION_MS", str(30 * DAY_MS),
            "click history kept per buyer, by event time against the wall clock"),
    Setting("CPS_CLICK_HISTORY_CAP", "100", "most clicks kept per buyer"),
    Setting("CPS_SETTLEMENT_SCHEDULE", "* * * * *",
            "cron expression of the settlement check (wall clock, UTC)"),
    Setting("CPS_COMMIT_LINGER_MS", "50",
            "how long a partition's oldest uncommitted event waits before the engine commits it"),
    Setting("CPS_COMMIT_MAX_EVENTS", "5000", "events after which the engine commits at once"),
    Setting("CPS_STANDBY_REPLICAS", "0", "Faust standby replicas of each table partition"),
    Setting("CPS_MONITOR_INTERVAL_S", "5", "how often lag, throughput and alerts are sampled"),
    Setting("CPS_ALERT_LAG", "10000",
            "alert when the engine's consumer lag (all partitions) stays above this"),
    Setting("CPS_ALERT_LAG_FOR_S", "60", "... for this long"),
    Setting("CPS_ALERT_DELAY_P99_MS", "2000",
            "alert when the attribution delay p99 of the last minute stays above this"),
    Setting("CPS_ALERT_DELAY_FOR_S", "60", "... for this long"),
    Setting("CPS_ALERT_DEAD_LETTERS_PER_MIN", "60",
            "alert when more input than this per minute goes to the dead-letter topic"),
    Setting("CPS_BACKFILL_MS", "3600000",
            "orders older than this when attributed count as backfill, not in delay figures"),
    Setting("CPS_ROCKSDB_CACHE_MB", "16", "RocksDB block cache per table partition, MiB"),
    Setting("CPS_KAFKA_HOME", "~/.cache/cps", "where `cps kafka` caches broker jars and data"),
    Setting("CPS_LOG_LEVEL", "info", "worker log level (debug, info, warn, error)"),
)


@dataclass(frozen=True, slots=True)
class Settings:
    broker: str = "127.0.0.1:9092"
    kafka_port: int = 9092
    topic_prefix: str = "cps."
    partitions: int = 8
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    data_dir: Path = Path("./var")
    admin_token: str = ""
    link_secret: str = ""
    link_secrets_previous: tuple[str, ...] = ()
    public_url: str = "http://127.0.0.1:6066"
    link_ttl_s: int = 30 * 86_400
    click_dedupe_ms: int = 10_000
    admin_max_body_bytes: int = 65_536
    max_subscribers: int = 100
    app_id: str = "cps-engine"
    replication: int = 1
    attribution_grace_ms: int = 30_000
    click_retention_ms: int = 30 * DAY_MS
    click_history_cap: int = 100
    settlement_schedule: str = "* * * * *"
    commit_linger_ms: int = 50
    commit_max_events: int = 5000
    standby_replicas: int = 0
    monitor_interval_s: int = 5
    alert_lag: int = 10_000
    alert_lag_for_s: int = 60
    alert_delay_p99_ms: int = 2000
    alert_delay_for_s: int = 60
    alert_dead_letters_per_min: int = 60
    backfill_ms: int = 3_600_000
    rocksdb_cache_mb: int = 16
    kafka_home: Path = field(default_factory=lambda: Path("~/.cache/cps").expanduser())
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        reader = _Reader(env)
        port = reader.integer("CPS_KAFKA_PORT", 9092, minimum=0, maximum=65535)
        web_port = reader.integer("CPS_WEB_PORT", 6066, minimum=0, maximum=65535)
        settings = cls(
            broker=reader.text("CPS_BROKER", f"127.0.0.1:{port}"),
            kafka_port=port,
            topic_prefix=reader.text("CPS_TOPIC_PREFIX", "cps.", allow_empty=True),
            partitions=reader.integer("CPS_PARTITIONS", 8, minimum=1, maximum=1024),
            web_port=web_port,
            web_host=reader.text("CPS_WEB_HOST", "127.0.0.1"),
            data_dir=Path(reader.text("CPS_DATA_DIR", "./var")).expanduser(),
            admin_token=reader.text("CPS_ADMIN_TOKEN", "", allow_empty=True),
            link_secret=reader.text("CPS_LINK_SECRET", "", allow_empty=True),
            link_secrets_previous=tuple(
                s.strip() for s in reader.text("CPS_LINK_SECRETS_PREVIOUS", "",
                                               allow_empty=True).split(",") if s.strip()),
            public_url=reader.text("CPS_PUBLIC_URL", f"http://127.0.0.1:{web_port}").rstrip("/"),
            link_ttl_s=reader.integer("CPS_LINK_TTL_S", 30 * 86_400, minimum=1),
            click_dedupe_ms=reader.integer("CPS_CLICK_DEDUPE_MS", 10_000, minimum=0),
            admin_max_body_bytes=reader.integer("CPS_ADMIN_MAX_BODY_BYTES", 65_536,
                                                minimum=1024),
            max_subscribers=reader.integer("CPS_MAX_SUBSCRIBERS", 100, minimum=1),
            app_id=reader.text("CPS_APP_ID", "cps-engine"),
            replication=reader.integer("CPS_REPLICATION", 1, minimum=1, maximum=16),
            attribution_grace_ms=reader.integer("CPS_ATTRIBUTION_GRACE_MS", 30_000, minimum=0),
            click_retention_ms=reader.integer("CPS_CLICK_RETENTION_MS", 30 * DAY_MS, minimum=0),
            click_history_cap=reader.integer("CPS_CLICK_HISTORY_CAP", 100, minimum=1),
            settlement_schedule=reader.cron("CPS_SETTLEMENT_SCHEDULE", "* * * * *"),
            commit_linger_ms=reader.integer("CPS_COMMIT_LINGER_MS", 50, minimum=0, maximum=10_000),
            commit_max_events=reader.integer("CPS_COMMIT_MAX_EVENTS", 5000, minimum=1),
            standby_replicas=reader.integer("CPS_STANDBY_REPLICAS", 0, minimum=0, maximum=8),
            monitor_interval_s=reader.integer("CPS_MONITOR_INTERVAL_S", 5, minimum=1,
                                              maximum=300),
            alert_lag=reader.integer("CPS_ALERT_LAG", 10_000, minimum=0),
            alert_lag_for_s=reader.integer("CPS_ALERT_LAG_FOR_S", 60, minimum=0),
            alert_delay_p99_ms=reader.integer("CPS_ALERT_DELAY_P99_MS", 2000, minimum=1),
            alert_delay_for_s=reader.integer("CPS_ALERT_DELAY_FOR_S", 60, minimum=0),
            alert_dead_letters_per_min=reader.integer("CPS_ALERT_DEAD_LETTERS_PER_MIN", 60,
                                                      minimum=0),
            backfill_ms=reader.integer("CPS_BACKFILL_MS", 3_600_000, minimum=1),
            rocksdb_cache_mb=reader.integer("CPS_ROCKSDB_CACHE_MB", 16, minimum=1),
            kafka_home=Path(reader.text("CPS_KAFKA_HOME", "~/.cache/cps")).expanduser(),
            log_level=reader.choice("CPS_LOG_LEVEL", "info", ("debug", "info", "warn", "error")),
        )
        if any(not c.isalnum() and c not in "._-" for c in settings.topic_prefix):
            raise SettingsError(
                f"CPS_TOPIC_PREFIX={settings.topic_prefix!r}: use letters, digits, '.', '_' or '-'"
            )
        return settings

    def require_secrets(self) -> None:
        """Refuse to serve without the admin token and the link secret."""
        missing = [
            name
            for name, value in (("CPS_ADMIN_TOKEN", self.admin_token),
                                ("CPS_LINK_SECRET", self.link_secret))
            if not value
        ]
        if missing:
            raise SettingsError(
                f"{' and '.join(missing)} must be set (a long random string each); "
                "`make run` sets demo values for local use"
            )


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str, *, allow_empty: bool = False) -> str:
        value = self.env.get(name)
        if value is None:
            return default
        value = value.strip()
        if not value and not allow_empty:
            raise SettingsError(f"{name} is set but empty; unset it to use {default!r}")
        return value

    def integer(self, name: str, default: int, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        raw = self.env.get(name)
        if raw is None or not raw.strip():
            return default
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name}={value} is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{name}={value} is above the maximum {maximum}")
        return value

    def cron(self, name: str, default: str) -> str:
        from croniter import croniter

        value = self.text(name, default)
        if not croniter.is_valid(value):
            raise SettingsError(f"{name}={value!r} is not a cron expression "
                                "(five fields, e.g. '* * * * *' for every minute)")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise SettingsError(f"{name}={value!r}: choose one of {', '.join(choices)}")
        return value
