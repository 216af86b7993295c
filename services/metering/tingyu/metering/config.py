"""Metering settings (`TINGYU_METERING_*`, plus the platform-wide `TINGYU_CLICKHOUSE_URL`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tingyu.common.bus.consumers import PULL_MAX_BYTES
from tingyu.common.settings import PlatformSettings, get_platform_settings

# deploy/clickhouse/schema.sql of the source tree this package runs from.
DEFAULT_SCHEMA = Path(__file__).resolve().parents[4] / "deploy" / "clickhouse" / "schema.sql"


class MeteringSettings(BaseSettings):
    """Where samples are stored and how large and how late an insert may be."""

    model_config = SettingsConfigDict(env_prefix="TINGYU_METERING_", extra="ignore")

    # A ClickHouse server (http://user:pass@host:8123); empty: embedded chDB under the state dir.
    clickhouse_url: str = Field(
        "", validation_alias=AliasChoices("TINGYU_CLICKHOUSE_URL", "TINGYU_METERING_CLICKHOUSE_URL")
    )
    chdb_dir: Path | None = None  # default: <state_dir>/chdb; only one process may own it
    schema_file: Path = DEFAULT_SCHEMA
    batch_samples: int = 60_000  # insert once this many samples are waiting ...
    batch_wait_s: float = 1.0  # ... or once the oldest waiting one is this old
    # JetStream messages per pull; up to 4x this many wait unacked, which must hold two full inserts
    # (the one being stored and the one filling) of small agent batches, or inserts are cut short.
    fetch_messages: int = 4096
    pull_max_bytes: int = PULL_MAX_BYTES  # and this many bytes per pull at most
    # Sample ids remembered after they are stored (~100 bytes each): a batch published again under
    # another message id within that many samples is dropped without reading the store.
    recent_ids: int = 500_000
    # Samples older than this (the raw table's TTL) or further ahead than `sample_max_ahead_s` are dropped.
    sample_max_age_s: float = 35 * 86400.0
    sample_max_ahead_s: float = 86400.0
    metrics_port: int = 0  # Prometheus metrics on this port (0: off)
    platform: PlatformSettings = Field(default_factory=get_platform_settings)

    @property
    def chdb_path(self) -> Path:
        return self.chdb_dir or self.platform.state_dir / "chdb"


@lru_cache
def get_settings() -> MeteringSettings:
    return MeteringSettings()
