"""Where Kafka clients are made: bootstrap servers plus security settings, in one place.

A :class:`Kafka` target is built once at the edge from settings (``PLUGSTREAM_BROKER``,
``PLUGSTREAM_SECURITY_PROTOCOL``, ``PLUGSTREAM_SASL_*``, ``PLUGSTREAM_SSL_*``) and handed
down; every consumer, producer and admin client is created through :func:`consumer`,
:func:`producer` or :func:`admin`, which pass the security options to aiokafka. A plain
``"host:port"`` string is accepted wherever a target is (no security). Secrets stay
``SecretStr`` until the moment a client is created and never appear in a repr or a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr


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
