"""Avro encoding for output topics, driven by the ``.avsc`` files in ``schemas/avro/``.

The schemas are the single source of truth: each top-level schema references shared named
types (``plugstream.Status`` …) that fastavro loads from sibling files named
``<namespace>.<Name>.avsc``. Records are written schemaless (the topic defines the schema),
or in Confluent wire format (magic byte 0 + 4-byte schema id) when a schema registry id is
given. Encoding/decoding uses codecs compiled from these schemas (``streams/codec.py``),
checked byte-for-byte against fastavro in the tests.

Schema evolution: every record plugstream writes carries a Kafka header
``plugstream.schema`` holding the CRC-64-AVRO fingerprint of its writer schema
(:func:`schema_headers`). :func:`decode_resolved` reads a record written with an older
version of a schema — a compacted ``evse-availability`` keeps those for ever — by resolving
it with fastavro from that writer schema to today's (new fields get their defaults). Older
versions of the schemas live in ``schemas/avro/history/`` (``<namespace>.<Name>.<n>.avsc``);
a record without the header is read as today's schema, then as each historical version.
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
from fastavro.schema import fingerprint as _fingerprint
from fastavro.schema import load_schema, parse_schema, to_parsing_canonical_form

from .codec import compile_codec, compile_json_decoder
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


@cache
def json_decoder(name: str) -> Any:
    return compile_json_decoder(schema(name))


def decode_json(name: str, payload: bytes, headers: Any = None) -> dict[str, Any]:
    """:func:`decode_resolved`, JSON-ready (RFC 3339 times): what dumps and the HTTP API show."""
    writer = _writer_fingerprint(headers)
    if writer is None or writer == current_fingerprint(name):
        try:
            return json_decoder(name)(payload)
        except Exception:
            if writer is not None or not history(name):
                raise
    return to_jsonable(decode_resolved(name, payload, headers))


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


SCHEMA_HEADER = "plugstream.schema"


class UnknownWriterSchema(ValueError):
    """A record names a writer schema plugstream does not know (newer than this version?)."""


def fingerprint(parsed: dict[str, Any]) -> str:
    """CRC-64-AVRO fingerprint of a parsed schema's canonical form, as 16 hex digits."""
    return _fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")


@cache
def current_fingerprint(name: str) -> str:
    """The fingerprint of today's version of ``name`` (computed once)."""
    return fingerprint(schema(name))


@cache
def schema_headers(name: str) -> list[tuple[str, bytes]]:
    """The headers every record written with ``name`` carries (one shared, read-only list)."""
    return [(SCHEMA_HEADER, current_fingerprint(name).encode())]


@cache
def history(name: str) -> dict[str, dict[str, Any]]:
    """Older versions of ``name`` by fingerprint, newest first (``schemas/avro/history/``)."""
    full = name if "." in name else f"{NAMESPACE}.{name}"
    folder = schema_dir() / "history"
    versions: dict[str, dict[str, Any]] = {}
    if folder.is_dir():
        paths = sorted(folder.glob(f"{full}.*.avsc"), key=lambda p: int(p.name.rsplit(".", 2)[-2]), reverse=True)
        for path in paths:
            parsed = load_writer_schema(path)
            versions[fingerprint(parsed)] = parsed
    return versions


def load_writer_schema(path: Path) -> dict[str, Any]:
    """A historical schema file, named types resolved against the current shared ones unless
    the file defines them itself."""
    import json

    named: dict[str, Any] = {}
    for shared in schema_dir().glob(f"{NAMESPACE}.*.avsc"):
        raw = json.loads(shared.read_text())
        if raw.get("type") != "record":
            parse_schema(raw, named_schemas=named)
    return parse_schema(json.loads(path.read_text()), named_schemas=named)


def _writer_fingerprint(headers: Any) -> str | None:
    if headers:
        for key, value in headers:
            if key == SCHEMA_HEADER and value is not None:
                return value.decode("ascii", "replace")
    return None


def decode_resolved(name: str, payload: bytes, headers: Any = None) -> dict[str, Any]:
    """Decode a record whatever version of ``name`` wrote it (see the module docstring).

    The writer named by the header — today's schema (the compiled fast path) or a historical
    one (resolved by fastavro, new fields defaulted); no header: today's schema, then the
    historical ones, newest first. Raises :class:`UnknownWriterSchema` for a fingerprint no
    known version has, and the decoder's error for bytes no version reads.
    """
    writer = _writer_fingerprint(headers)
    if writer is None or writer == current_fingerprint(name):
        try:
            return decode(name, payload)
        except Exception:
            if writer is not None or not history(name):
                raise
        for parsed in history(name).values():
            try:
                return _resolve(parsed, name, payload)
            except Exception:
                continue
        raise ValueError(f"not a {name} record of any known schema version")
    parsed = history(name).get(writer)
    if parsed is None:
        raise UnknownWriterSchema(f"{name} record written with unknown schema {writer} (a newer plugstream?)")
    return _resolve(parsed, name, payload)


def _resolve(writer: dict[str, Any], name: str, payload: bytes) -> dict[str, Any]:
    buffer = io.BytesIO(payload)
    record = fastavro.schemaless_reader(buffer, writer, schema(name))
    if buffer.tell() != len(payload):
        raise ValueError(f"{len(payload) - buffer.tell()} trailing bytes")
    return record


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


def as_published(name: str, value: dict[str, Any]) -> dict[str, Any]:
    """What a consumer of the topic sees: Avro round trip, then JSON-friendly values."""
    return to_jsonable(decode(name, encode(name, value)))
