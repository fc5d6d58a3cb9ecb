"""Settings, read once at the edge from ``PLUGSTREAM_*`` environment variables.

Nothing here runs at import time: call :func:`load_settings` from a command's entry point
and pass the object down.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PLUGSTREAM_", extra="ignore")

    broker: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL(s), kafka://host:port[;host:port]")
    engine: str = Field("native", description="Pipeline engine: native (default, fastest) or faust (Faust agents)")
    app_id: str = Field("plugstream", description="Consumer group id and prefix of internal topics")
    partitions: int = Field(4, ge=1, description="Partitions for every topic the app creates")
    replication_factor: int = Field(1, ge=1)
    max_payload_bytes: int = Field(1_048_576, ge=1024, description="Raw payloads above this go to the DLQ unparsed")
    max_connectors_per_document: int = Field(
        1_000, ge=1, description="A raw document expanding to more connectors goes to the DLQ (absurd_value)"
    )
    clock_skew_seconds: float = Field(300.0, ge=0, description="How far past the record timestamp a source time may be")
    staleness_seconds: float = Field(
        1800.0, gt=0, description="An EVSE with nothing seen for this long (stream time) is stale"
    )
    window_seconds: float = Field(300.0, gt=0, description="Tumbling window size for evse-availability-windowed")
    window_grace_seconds: float = Field(
        0.0, ge=0, description="How long after a window's end late records are still folded in"
    )
    window_retention_seconds: float = Field(86_400.0, gt=0)
    store: str = Field(
        "memory://", description="Stage-2 state store: memory:// or rocksdb://[/dir] (see streams/store.py)"
    )
    state_dir: Path = Field(Path("plugstream-data"), description="Where rocksdb:// keeps its databases")
    store_cache_evses: int = Field(
        1_000, ge=1, description="Hot EVSE states a rocksdb:// store keeps in memory, per partition"
    )
    store_memory_mb: int = Field(
        16, ge=4, description="RocksDB memory budget per worker (block cache + memtables), shared by all partitions"
    )
    standby_replicas: int = Field(
        0, ge=0, description="Changelog partitions each worker keeps warm (rocksdb://) besides the ones it owns"
    )
    fetch_max_bytes: int = Field(
        262_144,
        ge=65_536,
        description="Upper bound of one fetch response per consumer (bounds buffered input memory; streams/topics.py)",
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    worker_id: str | None = Field(
        None,
        description="Names this worker's state directory (default: its web port); two workers never share one",
    )
    broker_unreachable_seconds: float = Field(
        15.0, gt=0, description="Health turns 503 once the broker has been unreachable this long"
    )
    status_stale_seconds: float = Field(
        10.0, gt=0, description="Health turns 503 when the worker's status is older than this (stalled or gone)"
    )
    api_nice: int = Field(10, ge=0, le=19, description="CPU niceness of the HTTP API process (the pipeline wins)")
    api_token: SecretStr | None = Field(None, description="Bearer token required by the HTTP API when set")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: SecretStr | None = None

    @field_validator("broker")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        from .kafka import parse_broker_url

        parse_broker_url(value)  # raises ValueError with the accepted forms
        return value

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        from .interfaces import ENGINE_NAMES

        if value not in ENGINE_NAMES:
            raise ValueError(f"unknown engine {value!r}; valid engines: {', '.join(ENGINE_NAMES)}")
        return value

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        from .store import StoreError, parse_store_url

        try:
            parse_store_url(value)
        except StoreError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _standby_needs_rocksdb(self) -> Settings:
        if self.standby_replicas and not self.store.startswith("rocksdb://"):
            raise ValueError("standby_replicas needs store=rocksdb:// (a standby is a local database kept warm)")
        return self

    @property
    def clock_skew(self) -> timedelta:
        return timedelta(seconds=self.clock_skew_seconds)


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
