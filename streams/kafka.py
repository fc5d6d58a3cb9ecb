"""Where Kafka clients are made: bootstrap servers plus security settings, in one place.

A :class:`Kafka` target is built once at the edge from settings (``PLUGSTREAM_BROKER``,
``PLUGSTREAM_SECURITY_PROTOCOL``, ``PLUGSTREAM_SASL_*``, ``PLUGSTREAM_SSL_*``) and handed
down; every consumer, producer and admin client is created through :func:`consumer`,
:func:`producer` or :func:`admin`, which pass the security options to aiokafka. A plain
``"host:port"`` string is accepted wherever a target is (no security). Secrets stay
``SecretStr`` until the moment a client is created and never appear in a repr or a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

BROKER_FORMS = "kafka://host:port[;host:port…] (or host:port[,host:port…])"


def parse_broker_url(url: str) -> list[tuple[str, int]]:
    """The (host, port) pairs of a broker URL; ``ValueError`` naming the accepted forms."""
    pairs = []
    for part in url.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        scheme, sep, rest = part.partition("://")
        if sep:
            if scheme != "kafka":
                raise ValueError(f"broker URL {url!r}: the scheme must be kafka://, not {scheme}://; {BROKER_FORMS}")
            part = rest
        host, colon, port = part.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in part:
            raise ValueError(f"broker URL {url!r}: expected {BROKER_FORMS}")
        pairs.append((host.strip("[]"), int(port)))
    if not pairs:
        raise ValueError(f"broker URL {url!r} names no broker; use {BROKER_FORMS}")
    return pairs


def bootstrap_of(url: str) -> str:
    """``kafka://h1:9092;h2:9092`` (or ``h1:9092,h2:9092``) → ``h1:9092,h2:9092``."""
    return ",".join(part.strip().removeprefix("kafka://") for part in url.replace(";", ",").split(",") if part.strip())


@dataclass(frozen=True)
class Kafka:
    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: SecretStr | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Any) -> Kafka:
        return cls(
            bootstrap=bootstrap_of(settings.broker),
            security_protocol=settings.security_protocol,
            sasl_mechanism=settings.sasl_mechanism,
            sasl_username=settings.sasl_username,
            sasl_password=settings.sasl_password,
            ssl_cafile=settings.ssl_cafile,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
            ssl_key_password=settings.ssl_key_password,
        )

    def client_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments; the only place secrets are unwrapped."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
            options["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile,
                certfile=self.ssl_certfile,
                keyfile=self.ssl_keyfile,
                password=self.ssl_key_password.get_secret_value() if self.ssl_key_password else None,
            )
        return options


def as_kafka(target: str | Kafka) -> Kafka:
    return target if isinstance(target, Kafka) else Kafka(bootstrap=bootstrap_of(target))


def bootstrap(target: str | Kafka) -> str:
    return as_kafka(target).bootstrap


def consumer(target: str | Kafka, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **as_kafka(target).client_options(), **options)


def producer(target: str | Kafka, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**as_kafka(target).client_options(), **options)


def admin(target: str | Kafka, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**as_kafka(target).client_options(), **options)


log = logging.getLogger("plugstream.kafka")


class BrokerProbe:
    """Whether the broker answers: a metadata round trip every ``interval`` seconds.

    Health uses it (a worker whose broker is gone is not processing, whatever its loop
    says); the state changes are logged once each (``broker unreachable`` / ``reachable
    again``), not once per failed request.
    """

    def __init__(self, target: str | Kafka, interval: float = 2.0, timeout: float = 5.0) -> None:
        self.target = as_kafka(target)
        self.interval = interval
        self.timeout = timeout
        self.failing_since: float | None = None
        self.last_error = ""
        self.on_recovered: Any = None  # called (a coroutine function) when the broker is back
        self._client: Any = None

    def unreachable_for(self) -> float:
        """Seconds the broker has been unreachable (0 while it answers)."""
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since

    async def check(self) -> bool:
        from aiokafka.client import AIOKafkaClient

        try:
            if self._client is None:
                self._client = AIOKafkaClient(
                    **self.target.client_options(), request_timeout_ms=int(self.timeout * 1000)
                )
                await asyncio.wait_for(self._client.bootstrap(), self.timeout)
            await asyncio.wait_for(self._client.fetch_all_metadata(), self.timeout)
        except Exception as exc:
            await self._reset()
            self.last_error = _short_error(exc, self.timeout)
            if self.failing_since is None:
                self.failing_since = time.monotonic()
                log.error("broker unreachable (%s); retrying every %.0fs", self.last_error, self.interval)
            return False
        if self.failing_since is not None:
            log.warning("broker reachable again after %.0fs", self.unreachable_for())
            self.failing_since = None
            if self.on_recovered is not None:
                try:
                    await self.on_recovered()
                except Exception as exc:
                    log.warning("after the broker came back: %s: %s", type(exc).__name__, exc)
        return True

    async def run(self) -> None:
        try:
            while True:
                await self.check()
                await asyncio.sleep(self.interval)
        finally:
            await self._reset()

    async def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


def _short_error(exc: BaseException, timeout: float) -> str:
    """A connection failure in a few words (aiokafka's own text lists every address tried)."""
    from aiokafka.errors import KafkaConnectionError

    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:.0f}s"
    if isinstance(exc, KafkaConnectionError | ConnectionError | OSError):
        return "connection refused or no broker there"
    text = str(exc)
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


class QuietKafkaLogs(logging.Filter):
    """Rate-limits the Kafka client's repeated error lines: the first of each kind passes,
    repeats within ``interval`` seconds are counted and summarized in the next one that
    passes. A dead broker otherwise makes aiokafka log ~170 errors a second."""

    def __init__(self, interval: float = 30.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith("aiokafka"):
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            record.msg = f"{record.msg} (and {suppressed} more like it in the last {self.interval:.0f}s)"
        return True


def quiet_kafka_logs() -> None:
    """Install :class:`QuietKafkaLogs` on the root logger's handlers (call after
    ``logging.basicConfig``): filters on a logger do not see its children's records."""
    quiet = QuietKafkaLogs()
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
