"""Avro encoding for output topics, driven by the ``.avsc`` files in ``schemas/avro/``.

The schemas are the single source of truth: each top-level schema references shared named
types (``plugstream.Status`` …) that fastavro loads from sibling files named
``<namespace>.<Name>.avsc``. Records are written schemaless (the topic defines the schema),
or in Confluent wire format (magic byte 0 + 4-byte schema id) when a schema registry id is
given. Encoding/decoding uses codecs compiled from these schemas (``streams/codec.py``),
checked byte-for-byte against fastavro in the tests.
"""

from __future__ import annotations

import os
import struct
from datetime import datetime
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any

from fastavro.schema import load_schema

from .codec import compile_codec
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


@cache
def codec(name: str) -> tuple[Any, Any]:
    """The compiled (encode, decode) pair for a schema (see ``streams/codec.py``)."""
    return compile_codec(schema(name))


def encode(name: str, record: dict[str, Any], schema_id: int | None = None) -> bytes:
    payload = codec(name)[0](record)
    if schema_id is not None:
        return _CONFLUENT.pack(0, schema_id) + payload
    return payload


def decode(name: str, payload: bytes, framed: bool = False) -> dict[str, Any]:
    """Decode schemaless bytes, or Confluent-framed bytes when ``framed`` (magic byte 0 +
    4-byte schema id). Framing is a property of the topic's configuration, never guessed:
    schemaless records often start with byte 0 too."""
    if framed:
        magic, _schema_id = _CONFLUENT.unpack(payload[:5])
        if magic != 0:
            raise ValueError(f"not Confluent wire format (magic byte {magic})")
        payload = payload[5:]
    return codec(name)[1](payload)


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
