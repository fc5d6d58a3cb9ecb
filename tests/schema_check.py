"""Compare a pydantic model with an Avro record schema, field by field and symbol by symbol."""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import Enum
from typing import Any, Union

from pydantic import BaseModel


def _strip_null(avro_type: Any) -> tuple[Any, bool]:
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        assert len(rest) == 1, f"only ['null', T] unions are used: {avro_type}"
        return rest[0], "null" in avro_type
    return avro_type, False


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(args) == 1
        return args[0], type(None) in typing.get_args(annotation)
    return annotation, False


NAMED: dict[str, Any] = {}


def assert_type_agrees(where: str, annotation: Any, avro_type: Any) -> None:
    if isinstance(avro_type, str) and avro_type in NAMED:  # a second use of a named type
        avro_type = NAMED[avro_type]
    if isinstance(avro_type, dict) and avro_type.get("logicalType") == "timestamp-millis":
        assert annotation is datetime, f"{where}: timestamp-millis needs datetime, not {annotation}"
        return
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        assert isinstance(avro_type, dict) and avro_type["type"] == "enum", f"{where}: enum expected"
        assert avro_type["name"].split(".")[-1] == annotation.__name__, where
        assert avro_type["symbols"] == [m.value for m in annotation], f"{where}: symbols differ"
        return
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        assert isinstance(avro_type, dict) and avro_type["type"] == "record", where
        assert_model_agrees(annotation, avro_type)
        return
    origin = typing.get_origin(annotation)
    if origin is list:
        assert isinstance(avro_type, dict) and avro_type["type"] == "array", where
        assert_type_agrees(where + "[]", typing.get_args(annotation)[0], avro_type["items"])
        return
    if origin is dict:
        assert isinstance(avro_type, dict) and avro_type["type"] == "map", where
        assert_type_agrees(where + "{}", typing.get_args(annotation)[1], avro_type["values"])
        return
    primitive = {
        str: ("string",),
        bool: ("boolean",),
        int: ("int", "long"),
        float: ("double", "float"),
        bytes: ("bytes",),
    }
    expected = primitive.get(annotation)
    assert expected is not None, f"{where}: unsupported annotation {annotation}"
    assert avro_type in expected, f"{where}: {annotation} vs {avro_type}"


def assert_model_agrees(model: type[BaseModel], record_schema: dict[str, Any]) -> None:
    NAMED.update(record_schema.get("__named_schemas", {}))
    avro_fields = [f["name"] for f in record_schema["fields"]]
    model_fields = list(model.model_fields)
    assert avro_fields == model_fields, f"{model.__name__}: field names/order differ"
    for field in record_schema["fields"]:
        info = model.model_fields[field["name"]]
        annotation, optional = _strip_optional(info.annotation)
        avro_type, nullable = _strip_null(field["type"])
        where = f"{model.__name__}.{field['name']}"
        assert optional == nullable, f"{where}: nullability differs"
        if nullable:
            assert field.get("default", "absent") is None, f"{where}: nullable field needs default null"
        assert_type_agrees(where, annotation, avro_type)
