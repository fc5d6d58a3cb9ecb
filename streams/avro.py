"""Avro encoding for output topics, driven by the ``.avsc`` files in ``schemas/avro/``.

The schemas are the single source of truth: each top-level schema references shared named
types (``plugstream.Status`` …) that fastavro loads from sibling files named
``<namespace>.<Name>.avsc``. Records are written schemaless (the topic defines the schema),
or in Confluent wire format (magic byte 0 + 4-byte schema id) when a schema registry id is
given.
"""

from __future__ import annotations

import io
import os
import struct
from datetime import datetime
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import load_schema

from .timeparse import rfc3339

NAMESPACE = "plugstream"
_CONFLUENT = struct.Struct(">bI")


def schema_dir() -> Path:
    """``$PLUGSTREAM_SCHEMA_DIR`` or the repository's ``schemas/avro``."""
    override = os.environ.get("PLUGSTREAM_SCHEMA_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent.parent / "schemas" / "avro"


@cache
def schema(name: str) -> dict[str, Any]:
    """Parsed schema for ``name`` (``ConnectorStatus`` or ``plugstream.ConnectorStatus``)."""
    full = name if "." in name else f"{NAMESPACE}.{name}"
    path = schema_dir() / f"{full}.avsc"
    if not path.exists():
        raise FileNotFoundError(f"no Avro schema {full!r} in {schema_dir()}")
    return load_schema(str(path))


def encode(name: str, record: dict[str, Any], schema_id: int | None = None) -> bytes:
    buffer = io.BytesIO()
    if schema_id is not None:
        buffer.write(_CONFLUENT.pack(0, schema_id))
    fastavro.schemaless_writer(buffer, schema(name), record)
    return buffer.getvalue()


def decode(name: str, payload: bytes, framed: bool = False) -> dict[str, Any]:
    """Decode schemaless bytes, or Confluent-framed bytes when ``framed`` (magic byte 0 +
    4-byte schema id). Framing is a property of the topic's configuration, never guessed:
    schemaless records often start with byte 0 too."""
    buffer = io.BytesIO(payload)
    if framed:
        magic, _schema_id = _CONFLUENT.unpack(buffer.read(5))
        if magic != 0:
            raise ValueError(f"not Confluent wire format (magic byte {magic})")
    return fastavro.schemaless_reader(buffer, schema(name), None)


def to_jsonable(value: Any) -> Any:
    """Avro-shaped Python values → JSON values with RFC 3339 timestamps (for dumps/HTTP)."""
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
