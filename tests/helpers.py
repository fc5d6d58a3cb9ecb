"""Shared test helpers (no broker needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from streams.adapters import NormalizeContext, Rejection, normalize_document
from streams.models import ConnectorStatus

FIXTURES = Path(__file__).parent / "fixtures"
RECORD_TIME = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def load_documents(name: str) -> list[Any]:
    raw = (FIXTURES / name).read_bytes()
    if name.endswith(".jsonl"):
        return [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    return [orjson.loads(raw)]


@dataclass
class Outcome:
    records: dict[str, ConnectorStatus] = field(default_factory=dict)
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)

    def kinds(self) -> list[str]:
        return sorted(r.kind for _, r in self.rejections)


def record_headers(headers: dict[str, str] | None) -> list[tuple[str, bytes]] | None:
    """Kafka-style headers (name, bytes) from a ``{"name": "text"}`` dict."""
    return None if headers is None else [(name, value.encode()) for name, value in headers.items()]


def run(
    source: str,
    documents: list[Any],
    record_time: datetime = RECORD_TIME,
    keys: list[str | None] | None = None,
    headers: list[dict[str, str] | None] | None = None,
    max_connectors: int = 1_000,
) -> Outcome:
    """Normalize each document as if it were one Kafka record (with that record's key/headers)."""
    outcome = Outcome()
    for index, document in enumerate(documents):
        key = keys[index] if keys else None
        ctx = NormalizeContext(
            record_time=record_time,
            key=None if key is None else key.encode(),
            headers=record_headers(headers[index] if headers else None),
            max_connectors=max_connectors,
        )
        try:
            result = normalize_document(source, document, ctx)
        except Rejection as rejection:
            outcome.rejections.append((index, rejection))
            continue
        for record in result.records:
            outcome.records[record.connectorUid] = record
        outcome.rejections.extend((index, r) for r in result.rejections)
        for reason, n in result.skipped.items():
            outcome.skipped[reason] = outcome.skipped.get(reason, 0) + n
        for name, n in ctx.warnings.counts.items():
            outcome.warnings[name] = outcome.warnings.get(name, 0) + n
    return outcome


def run_fixture(source: str, name: str) -> Outcome:
    return run(source, load_documents(name))


def run_records(source: str, name: str) -> Outcome:
    """A JSON Lines fixture of Kafka records ``{"payload", "key"?, "headers"?}``."""
    entries = load_documents(name)
    return run(
        source,
        [e["payload"] for e in entries],
        keys=[e.get("key") for e in entries],
        headers=[e.get("headers") for e in entries],
    )
