"""Kafka security settings reach the clients; secrets never reach a repr, a log or the terminal."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys

import pytest

from streams.broker import EmbeddedBroker
from streams.config import Settings
from streams.kafka import Kafka, bootstrap_of

SECRET = "hunter2-very-secret"


def test_sasl_ssl_scram_settings_reach_the_client_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLUGSTREAM_BROKER", "kafka://b1:9093;b2:9093")
    monkeypatch.setenv("PLUGSTREAM_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PLUGSTREAM_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("PLUGSTREAM_SASL_USERNAME", "plugstream")
    monkeypatch.setenv("PLUGSTREAM_SASL_PASSWORD", SECRET)
    settings = Settings()
    target = Kafka.from_settings(settings)
    options = target.client_options()
    assert options["bootstrap_servers"] == "b1:9093,b2:9093"
    assert (options["security_protocol"], options["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("plugstream", SECRET)
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    for text in (repr(settings), str(settings), repr(target), str(settings.model_dump())):
        assert SECRET not in text


def test_plaintext_is_the_default() -> None:
    assert Kafka.from_settings(Settings(broker="kafka://h:9092")).client_options() == {
        "bootstrap_servers": "h:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert bootstrap_of("kafka://a:1, kafka://b:2") == "a:1,b:2"


def test_invalid_security_settings_are_rejected_with_a_clear_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="security_protocol"):
        Settings(security_protocol="SASL_MAGIC")


@pytest.mark.integration
def test_a_failing_authenticated_command_never_prints_the_secret() -> None:
    """The embedded broker has no SASL: the handshake fails; nothing printed may hold the secret."""
    with EmbeddedBroker() as broker:
        env = {
            **os.environ,
            "PLUGSTREAM_BROKER": broker.url,
            "PLUGSTREAM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PLUGSTREAM_SASL_MECHANISM": "SCRAM-SHA-256",
            "PLUGSTREAM_SASL_USERNAME": "plugstream",
            "PLUGSTREAM_SASL_PASSWORD": SECRET,
            "PYTHONUNBUFFERED": "1",
        }
        code = (
            "import logging, sys; logging.basicConfig(level=logging.DEBUG); "
            "from streams.cli import main; sys.argv=['plugstream', 'topics', 'create']; main()"
        )
        try:
            result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
            output = result.stdout + result.stderr
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"") + (exc.stderr or b"")
    assert output, "expected the failed attempt to log something"
    assert SECRET.encode() not in output


def test_unreachable_kafka_is_a_clear_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from streams.broker import free_port
    from streams.cli import main

    monkeypatch.setenv("PLUGSTREAM_BROKER", f"kafka://127.0.0.1:{free_port()}")
    result = CliRunner().invoke(main, ["topics", "create"])
    assert result.exit_code == 1
    assert "cannot reach the Kafka broker" in result.output and "PLUGSTREAM_BROKER" in result.output
    assert "Traceback" not in result.output
