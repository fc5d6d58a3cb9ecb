"""Property tests: random and mutated payloads never break the adapter contract.

Contract: ``adapter.normalize`` returns records or raises ``Rejection`` — nothing else —
and every accepted record validates against the Avro schema and the pydantic model.
The adapters are called directly (not through the ``internal_error`` guard) so a bug
cannot hide behind it.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from fastavro.validation import validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import avro
from streams.adapters import REGISTRY, NormalizeContext, Rejection, decode_payload
from streams.models import ConnectorStatus

from .helpers import load_documents

SEEDS = {
    "ocpi": load_documents("ocpi_location_messy.json") + load_documents("ocpi_patches.jsonl"),
    "ocm": load_documents("ocm_pois.json"),
    "here": load_documents("here_stations.json"),
    "edrv": load_documents("edrv_objects.jsonl"),
    "ocpp": [entry["payload"] for entry in load_documents("ocpp_status_notifications.jsonl")],
}
#: Kafka record keys/headers some sources read ids from (OCPI push paths, OCPP charge points).
KEYS = st.sampled_from([None, b"CP-1", b"NL/PLG/LOC-A/E1", b"/locations/NL/PLG/LOC-A/E1/2", b"a/b/c", b"\xff\xfe"])
HEADERS = st.one_of(
    st.none(),
    st.lists(
        st.tuples(
            st.sampled_from(["ocpi-evse-uid", "ocpi-party-id", "ocpi-connector-id", "ocpp-charge-point-id", "x"]),
            st.binary(max_size=12),
        ),
        max_size=3,
    ),
)
SCHEMA = None

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(
        [
            "AVAILABLE",
            "Charging ",
            "OCCUPIED",
            "10",
            "2026-03-01T10:00:00Z",
            "0001-01-01",
            "IEC_62196_T2",
            "",
            "  ",
            "-1",
            "1e308",
            "NaN",
            "99999999999",
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replace(doc: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    doc = copy.deepcopy(doc)
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return doc


def _check_contract(source: str, document: Any, key: bytes | None = b"CP-1", headers: Any = None) -> None:
    ctx = NormalizeContext(record_time=datetime(2026, 3, 1, 12, tzinfo=UTC), key=key, headers=headers)
    try:
        result = REGISTRY[source].normalize(document, ctx)
    except Rejection as rejection:
        assert rejection.kind in Rejection.KINDS
        return
    for partial in result.rejections:
        assert partial.kind in Rejection.KINDS
    schema = avro.schema("ConnectorStatus")
    for record in result.records:
        as_dict = dict(record.__dict__)
        assert validate(as_dict, schema, raise_errors=True)
        ConnectorStatus.model_validate(as_dict)
        assert record.connectorUid.startswith(f"{source}:") and record.evseUid.startswith(f"{source}:")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(sorted(SEEDS)), data=st.data())
def test_mutated_real_shapes_keep_the_contract(source: str, data: st.DataObject) -> None:
    document = data.draw(st.sampled_from(SEEDS[source]))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        path = data.draw(st.sampled_from(_paths(document)))
        document = _replace(document, path, data.draw(json_values))
    _check_contract(source, document, data.draw(KEYS), data.draw(HEADERS))


@settings(max_examples=200, deadline=None)
@given(source=st.sampled_from(sorted(SEEDS)), document=json_values, key=KEYS, headers=HEADERS)
def test_random_json_keeps_the_contract(source: str, document: Any, key: bytes | None, headers: Any) -> None:
    _check_contract(source, document, key, headers)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_random_bytes_decode_or_reject(raw: bytes) -> None:
    try:
        decode_payload(raw)
    except Rejection as rejection:
        assert rejection.kind in {"malformed_json", "not_utf8"}
