import pytest

from streams.adapters import NormalizeContext, Rejection, decode_payload

from .helpers import RECORD_TIME, run


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"{not json", "malformed_json"),
        (b'\xff\xfe{"a": 1}', "not_utf8"),
        (b'{"status": "caf\xe9"}', "not_utf8"),
        (b"", "malformed_json"),
        (b"NaN", "malformed_json"),
        (b"[" * 2000 + b"]" * 2000, "malformed_json"),  # nesting bomb
    ],
)
def test_decode_rejections(raw: bytes, kind: str) -> None:
    with pytest.raises(Rejection) as info:
        decode_payload(raw)
    assert info.value.kind == kind


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(Rejection) as info:
        decode_payload(b" " * 2048 + b"{}", max_bytes=1024)
    assert info.value.kind == "oversized"
    assert decode_payload(b"\xef\xbb\xbf{}") == {}  # BOM tolerated


@pytest.mark.parametrize(
    ("source", "doc", "kind"),
    [
        ("ocpi", "a string", "not_an_object"),
        ("ocpi", {"uid": {"nested": 1}, "status": "AVAILABLE", "connectors": []}, "invalid_id"),
        ("ocpi", {"uid": "1", "connectors": [{"id": "1"}]}, "missing_status"),
        ("ocpi", {"uid": "1", "status": 7, "connectors": []}, "wrong_type"),
        ("ocpi", {"uid": "1", "status": "AVAILABLE", "connectors": "many"}, "wrong_type"),
        ("ocm", {"ID": "abc", "Connections": []}, "invalid_id"),
        ("ocm", {"Connections": []}, "missing_id"),
        ("ocm", {"ID": 5, "Connections": [{"ID": 1, "StatusTypeID": "x"}]}, "wrong_type"),
        ("here", {"connectors": []}, "missing_id"),
        ("here", {"id": "s", "connectors": [{"chargingPoint": {"numberOfConnectors": 10**9}}]}, "absurd_value"),
        ("here", {"id": "s", "connectors": [{"connectorStatuses": [{"state": "DANCING"}]}]}, "unknown_status"),
        ("edrv", {"_id": "c", "chargestation": "s"}, "missing_status"),
        ("edrv", {"_id": "c", "chargestation": "s", "status": ["Available"]}, "wrong_type"),
        ("edrv", 42, "not_an_object"),
    ],
)
def test_each_bad_shape_has_a_clear_kind(source: str, doc: object, kind: str) -> None:
    assert run(source, [doc]).kinds() == [kind]


def test_absurd_secondary_numbers_become_null_and_count() -> None:
    doc = {
        "uid": "1",
        "status": "AVAILABLE",
        "coordinates": {"latitude": 400, "longitude": 3},
        "connectors": [
            {
                "id": "1",
                "max_voltage": 10**9,
                "max_amperage": -5,
                "max_electric_power": 1e20,
                "power_type": "plasma",
                "standard": "warp",
            }
        ],
    }
    out = run("ocpi", [doc])
    rec = out.records["ocpi:1#1"]
    assert (rec.voltage, rec.amperage, rec.maxPowerKw, rec.powerType, rec.standard, rec.latitude) == (None,) * 6
    assert out.warnings == {
        "coordinates": 1,
        "voltage": 1,
        "amperage": 1,
        "maxPowerKw": 1,
        "powerType": 1,
        "standard": 1,
    }


def test_attribute_cache_keeps_booleans_apart_from_numbers_and_replays_warnings() -> None:
    """True == 1 in Python: a cached spec with voltage 1 must not answer for voltage True."""
    docs = [
        {"uid": "a", "status": "AVAILABLE", "connectors": [{"id": "1", "max_voltage": 1, "max_amperage": 1}]},
        {"uid": "b", "status": "AVAILABLE", "connectors": [{"id": "1", "max_voltage": True, "max_amperage": 1}]},
        {"uid": "c", "status": "AVAILABLE", "connectors": [{"id": "1", "max_voltage": True, "max_amperage": 1}]},
    ]
    out = run("ocpi", docs)
    assert out.records["ocpi:a#1"].voltage == 1
    assert out.records["ocpi:b#1"].voltage is None and out.records["ocpi:c#1"].voltage is None
    assert out.warnings == {"voltage": 2}  # the cache hit for "c" replays the warning


@pytest.mark.parametrize(("source", "width"), [("ocpi", 6), ("ocm", 5), ("here", 9), ("edrv", 4)])
def test_attribute_parse_reads_equal_ints_and_floats_alike(source: str, width: int) -> None:
    """The attribute cache lets ``32`` and ``32.0`` share an entry; every parse must agree.

    ``width`` is the length of the adapter's attribute key (what its ``parse_attributes`` unpacks)."""
    import importlib
    import itertools

    from streams.values import Warnings

    parse = importlib.import_module(f"streams.adapters.{source}").parse_attributes
    numbers = [0, 1, 3, 16, 32, 230, 400, 22000, -5]
    for position, number in itertools.product(range(width), numbers):
        as_int = [None] * width
        as_float = [None] * width
        as_int[position], as_float[position] = number, float(number)
        w_int, w_float = Warnings(), Warnings()
        assert parse(tuple(as_int), w_int) == parse(tuple(as_float), w_float), (position, number)
        assert w_int.counts == w_float.counts


# --- bounded work per document and strict ids (DESIGN §2, §6) -----------------------------------


def _ocpi_evse(connectors: int) -> dict:
    return {"uid": "BIG", "status": "AVAILABLE", "connectors": [{"id": str(i)} for i in range(connectors)]}


@pytest.mark.parametrize(
    ("source", "doc"),
    [
        ("ocpi", _ocpi_evse(50_000)),  # one EVSE listing 50,000 connectors
        ("ocpi", {"data": [{"id": f"L{i}", "evses": [_ocpi_evse(10)]} for i in range(120)]}),  # 1,200 in all
        ("here", {"id": "h", "connectors": [{"chargingPoint": {"numberOfConnectors": 100}}] * 11}),
        ("ocm", {"ID": 1, "Connections": [{"ID": i, "Quantity": 50} for i in range(21)]}),
        ("edrv", {"_id": "s", "connectors": [{"_id": f"c{i}", "status": "Available"} for i in range(1_001)]}),
        ("ocpp", [[2, str(i), "StatusNotification", {"connectorId": 1, "status": "Available"}] for i in range(1_001)]),
    ],
    ids=["ocpi-list", "ocpi-locations", "here-counts", "ocm-quantity", "edrv", "ocpp-batch"],
)
def test_a_document_past_the_connector_budget_is_rejected_whole(source: str, doc: object) -> None:
    out = run(source, [doc], keys=["CP"])
    assert out.kinds() == ["absurd_value"] and out.records == {}
    assert "PLUGSTREAM_MAX_CONNECTORS_PER_DOCUMENT" in out.rejections[0][1].message


def test_the_budget_is_a_setting() -> None:
    assert run("ocpi", [_ocpi_evse(5)], max_connectors=5).kinds() == []
    assert run("ocpi", [_ocpi_evse(6)], max_connectors=5).kinds() == ["absurd_value"]


@pytest.mark.parametrize(
    ("source", "doc"),
    [
        ("ocpi", _ocpi_evse(200_000)),
        ("ocpi", [_ocpi_evse(3)] * 100_000),
        ("here", {"id": "h", "connectors": [{"chargingPoint": {"numberOfConnectors": 100}}] * 10_000}),
    ],
    ids=["one-list", "many-evses", "here-counts"],
)
def test_the_budget_bounds_the_work_not_just_the_output(source: str, doc: object) -> None:
    """Work stops when the budget runs out: at most one record past it is ever built."""
    from streams.adapters import normalize_document

    ctx = NormalizeContext(record_time=RECORD_TIME, max_connectors=1_000)
    with pytest.raises(Rejection, match="absurd_value"):
        normalize_document(source, doc, ctx)
    assert ctx.produced <= 1_001


@pytest.mark.parametrize(
    ("source", "doc"),
    [
        ("here", {"id": "zz\u0000-10", "connectors": [{"chargingPoint": {"numberOfConnectors": 1}}]}),
        ("here", {"id": "zz\u001b[31m", "connectors": [{"chargingPoint": {"numberOfConnectors": 1}}]}),
        ("ocpi", {"uid": "E\u0007", "status": "AVAILABLE"}),
        ("ocpi", {"uid": "E" * 200_000, "status": "AVAILABLE"}),
        ("ocpi", {"uid": "E1", "party_id": "P\nQ", "country_code": "NL", "status": "AVAILABLE"}),
        ("ocpi", {"uid": "E1", "status": "AVAILABLE", "connectors": [{"id": "1\u0000"}]}),
        ("ocm", {"ID": "9" * 5000, "Connections": []}),
        ("edrv", {"_id": "c\u0000", "chargestation": "s", "status": "Available"}),
        ("edrv", {"_id": "c", "chargestation": "s" * 300, "status": "Available"}),
    ],
)
def test_ids_with_control_characters_or_absurd_length_are_invalid(source: str, doc: object) -> None:
    assert run(source, [doc]).kinds() == ["invalid_id"]


def test_deeply_nested_lists_are_malformed_not_a_recursion_error() -> None:
    doc: object = {"uid": "E1", "status": "AVAILABLE"}
    for _ in range(400):
        doc = [doc]
    out = run("ocpi", [doc])
    assert out.kinds() == ["malformed_json"] and "nested" in out.rejections[0][1].message
