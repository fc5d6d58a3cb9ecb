"""OCPI 2.2 / 2.2.1 (and OMNI vendor extensions) → canonical connector records.

Accepted shapes on ``raw.ocpi``: a Locations response envelope ``{"data": [...]}``, a
Spring-style page ``{"content": [...]}``, a bare array, a Location with ``evses[]``, an EVSE
object, or a PATCH/PUT body. camelCase keys (``lastUpdated``, ``powerType``) seen in
non-conforming feeds are read too.

Push bodies often carry no ids: in OCPI they are in the URL path
``/locations/{country_code}/{party_id}/{location_id}/{evse_uid}[/{connector_id}]``. A bridge
puts that path in the Kafka record key (a leading ``…/locations/`` is allowed) or the ids in
headers ``ocpi-country-code``, ``ocpi-party-id``, ``ocpi-location-id``, ``ocpi-evse-uid``,
``ocpi-connector-id`` (DESIGN §2). They fill in what the top-level body lacks; where both
name an id they must agree, a conflict is ``invalid_id``.

Decisions DESIGN.md left open (also listed in the README):
- Status is EVSE-level in OCPI 2.2.x; a connector-level ``status`` (2.1-style feeds such as
  zepto/otopriz) overrides it for that connector.
- OMNI flags, connector-level over EVSE-level: ``is_published=false`` → REMOVED,
  ``is_enabled=false`` → INOPERATIVE, ``online=false`` → UNKNOWN unless the status is
  already REMOVED/PLANNED/INOPERATIVE/OUTOFORDER (offline says nothing about those).
- ``max_electric_power`` is W per spec; a value below 1000 is taken as kW (real feeds send
  ``22`` or ``80``). Without it, power is derived from voltage × amperage (× phases; √3 for
  a three-phase line-to-line voltage above 300 V).
- EVSE identity is ``ocpi:<country_code>:<party_id>:<uid>`` when the party is known, else
  ``ocpi:<location id>:<uid>``, else ``ocpi:<uid>``: PATCH bodies must carry the same
  ``country_code``/``party_id`` fields to land on the same EVSE.
- An EVSE object with a ``connectors`` list is a full snapshot (connectors it no longer
  lists are removed downstream); if any of its connectors is rejected the snapshot is
  treated as partial, so a bad connector never causes a removal.
- A body without ``connectors`` but with ``status`` is an EVSE-scope update; without
  ``status`` it carries no status change and is skipped (``no_status``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import unquote

from ..values import (
    MAX_AMPERAGE,
    MAX_POWER_KW,
    MAX_VOLTAGE,
    Warnings,
    clean_str,
    coordinate_pair,
    format_from_text,
    norm_key,
    positive,
    power_type_from_text,
    standard_from_text,
    to_float,
    to_int_in,
)
from ..vocabulary import PowerType, Scope, Source, Status
from .base import (
    EMPTY_OBJECT,
    AttributeCache,
    Attributes,
    EvseRecords,
    NormalizeContext,
    NormalizeResult,
    Rejection,
    clean_id,
    list_field,
    whole_document,
)

#: DESIGN §3, column "ocpi / OMNI". Keys are ``norm_key`` forms.
STATUS_TABLE: dict[str, Status] = {
    "AVAILABLE": Status.AVAILABLE,
    "BLOCKED": Status.BLOCKED,
    "CHARGING": Status.CHARGING,
    "PREPARING": Status.CHARGING,
    "FINISHING": Status.CHARGING,
    "INOPERATIVE": Status.INOPERATIVE,
    "OUTOFORDER": Status.OUTOFORDER,
    "PLANNED": Status.PLANNED,
    "REMOVED": Status.REMOVED,
    "RESERVED": Status.RESERVED,
    "UNKNOWN": Status.UNKNOWN,
}

_OFFLINE_KEEPS = frozenset({Status.REMOVED, Status.PLANNED, Status.INOPERATIVE, Status.OUTOFORDER})
_FLAG_KEYS = frozenset({"is_published", "is_enabled", "online"})
#: Keys whose presence marks a camelCase (non-conforming) object, e.g. the voltrelli feed.
_CAMEL_MARKERS = frozenset(
    {
        "lastUpdated",
        "evseUid",
        "evseId",
        "powerType",
        "maxVoltage",
        "connectorId",
        "countryCode",
        "partyId",
        "isEnabled",
        "isPublished",
        "maxElectricPower",
    }
)


def _snake_key(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key).lstrip("_")


def snake_case(obj: dict[str, Any]) -> dict[str, Any]:
    """The object with camelCase keys renamed to OCPI's snake_case (only when it uses them).

    Checking a few marker keys keeps the common, conforming case at one set operation.
    Keys that are already snake_case win over their camelCase twins.
    """
    if _CAMEL_MARKERS.isdisjoint(obj):
        return obj
    renamed = {_snake_key(key): value for key, value in obj.items() if value is not None}
    renamed.update((key, value) for key, value in obj.items() if value is not None and "_" in key)
    return renamed


def map_status(raw: Any, what: str) -> Status:
    if raw.__class__ is str:  # the exact spelling first: nearly every feed sends it
        status = STATUS_TABLE.get(raw)
        if status is not None:
            return status
    elif not isinstance(raw, str):
        raise Rejection("wrong_type", f"{what} status must be a string, got {type(raw).__name__}")
    status = STATUS_TABLE.get(norm_key(raw))
    if status is None:
        raise Rejection("unknown_status", f"{what} status {raw[:40]!r} is not an OCPI status")
    return status


def apply_flags(status: Status, raw: str | None, flags: dict[str, Any]) -> tuple[Status, str | None]:
    """OMNI vendor flags (``is_published``, ``is_enabled``, ``online``) refine the status."""
    if flags.get("is_published") is False:
        return Status.REMOVED, f"{raw} (is_published=false)"
    if flags.get("is_enabled") is False and status is not Status.REMOVED:
        return Status.INOPERATIVE, f"{raw} (is_enabled=false)"
    if flags.get("online") is False and status not in _OFFLINE_KEEPS:
        return Status.UNKNOWN, f"{raw} (online=false)"
    return status, raw


_NO_FLAGS: dict[str, bool] = {}


def read_flags(obj: dict[str, Any], inherited: dict[str, bool] = _NO_FLAGS) -> dict[str, bool]:
    """Boolean OMNI flags of ``obj`` layered over ``inherited`` (connector over EVSE)."""
    if _FLAG_KEYS.isdisjoint(obj):
        return inherited
    flags = dict(inherited)
    for name in _FLAG_KEYS:
        value = obj.get(name)
        if value.__class__ is bool:
            flags[name] = value
    return flags


_PHASES = {PowerType.AC_1_PHASE: 1, PowerType.AC_2_PHASE: 2, PowerType.AC_2_PHASE_SPLIT: 2, PowerType.AC_3_PHASE: 3}


def derive_power_kw(power_type: PowerType | None, volts: int | None, amps: int | None) -> float | None:
    if volts is None or amps is None or power_type is None:
        return None
    if power_type is PowerType.DC:
        watts = volts * amps
    elif power_type is PowerType.AC_3_PHASE and volts > 300:
        watts = volts * amps * 3**0.5
    else:
        watts = volts * amps * _PHASES[power_type]
    return positive(round(watts / 1000, 3), MAX_POWER_KW)


def parse_attributes(key: tuple[Any, ...], warnings: Warnings) -> Attributes:
    raw_standard, raw_format, raw_power_type, raw_volts, raw_amps, raw_power = key
    warn = warnings.check
    power_type = warn("powerType", raw_power_type, power_type_from_text(raw_power_type))
    volts = warn("voltage", raw_volts, to_int_in(raw_volts, MAX_VOLTAGE))
    amps = warn("amperage", raw_amps, to_int_in(raw_amps, MAX_AMPERAGE))
    power = to_float(raw_power)
    if power is not None and power >= 1000:
        power = power / 1000
    power_kw = warn("maxPowerKw", raw_power, positive(power, MAX_POWER_KW))
    if power_kw is None:
        power_kw = derive_power_kw(power_type, volts, amps)
    return Attributes(
        standard=warn("standard", raw_standard, standard_from_text(raw_standard)),
        format=warn("format", raw_format, format_from_text(raw_format)),
        powerType=power_type,
        maxPowerKw=power_kw,
        voltage=volts,
        amperage=amps,
    )


_ATTRIBUTES = AttributeCache(parse_attributes)


def _coords(obj: dict[str, Any], ctx: NormalizeContext) -> tuple[float | None, float | None]:
    coords = obj.get("coordinates")
    if not isinstance(coords, dict):
        return None, None
    return coordinate_pair(coords.get("latitude"), coords.get("longitude"), ctx.warnings)


def _score(value: Any) -> float | None:
    if value is None:
        return None
    number = to_float(value)
    return number if number is not None and 0 <= number <= 100 else None


_NO_ATTRIBUTES = Attributes()
#: Envelopes around a list of Locations/EVSEs: OCPI's response ``data``, a Spring page's ``content``.
ENVELOPE_KEYS = ("data", "content")
#: How deep envelopes and lists may nest (an envelope in a list in a page is 4); deeper
#: documents are rejected before the adapter recurses any further.
MAX_NESTING = 6
#: The ids of an OCPI Locations path, in path order, and the headers that may carry them.
PATH_IDS = ("country_code", "party_id", "location_id", "evse_uid", "connector_id")
ID_HEADERS = {name: "ocpi-" + name.replace("_", "-") for name in PATH_IDS}


def pushed_ids(ctx: NormalizeContext) -> dict[str, str]:
    """The ids an OCPI push names outside its body: the Kafka record key when it is a
    Locations path (3 to 5 segments after an optional ``…/locations/``), then the headers."""
    ids: dict[str, str] = {}
    key = ctx.key_text()
    if key and "/" in key:
        parts = key.strip().strip("/").split("/")
        if "locations" in parts:
            parts = parts[len(parts) - parts[::-1].index("locations") :]
        if 3 <= len(parts) <= len(PATH_IDS) and all(parts):
            for name, part in zip(PATH_IDS, parts, strict=False):
                value = clean_id(unquote(part), f"record key {name}")
                if value is not None:
                    ids[name] = value
    if ctx.headers:
        for name, header in ID_HEADERS.items():
            value = clean_id(ctx.header(header), f"header {header}")
            if value is not None:
                _agree(ids.get(name), value, name)
                ids[name] = value
    return ids


def _agree(body: str | None, pushed: str | None, what: str) -> str | None:
    """The body's id, else the pushed one; both given and different is ``invalid_id``."""
    if body is None:
        return pushed
    if pushed is not None and pushed != body:
        raise Rejection(
            "invalid_id", f"{what} {body!r} in the body conflicts with {pushed!r} from the record key/headers"
        )
    return body


class OcpiAdapter:
    source: ClassVar[Source] = Source.ocpi

    @whole_document
    def normalize(self, document: Any, ctx: NormalizeContext) -> NormalizeResult:
        result = NormalizeResult()
        pushed = pushed_ids(ctx) if ctx.key or ctx.headers else {}
        self._dispatch(document, ctx, result, "", 0, pushed)
        return result

    def _dispatch(
        self,
        doc: Any,
        ctx: NormalizeContext,
        result: NormalizeResult,
        path: str,
        depth: int,
        pushed: Mapping[str, str] = EMPTY_OBJECT,
    ) -> None:
        if depth > MAX_NESTING:
            raise Rejection("malformed_json", f"envelopes/lists nested more than {MAX_NESTING} levels deep")
        if isinstance(doc, list):
            for index, item in enumerate(doc):
                self._guarded(item, None, ctx, result, f"{path}[{index}]", depth + 1)
            return
        if not isinstance(doc, dict):
            raise Rejection("not_an_object", f"expected an OCPI object, got {type(doc).__name__}")
        if not ("uid" in doc or "evses" in doc):
            for envelope in ENVELOPE_KEYS:
                if envelope in doc:
                    data = doc[envelope]
                    if data is None:
                        result.skip("empty_envelope")
                        return
                    if not isinstance(data, list | dict):
                        raise Rejection("wrong_type", f"envelope {envelope} must be a list or an object")
                    self._dispatch(data, ctx, result, f"{path}.{envelope}" if path else envelope, depth + 1)
                    return
        if "evses" in doc:
            location = snake_case(doc)
            if pushed:
                location = {
                    **location,
                    "country_code": _agree(
                        clean_id(location.get("country_code"), "country_code"),
                        pushed.get("country_code"),
                        "country_code",
                    ),
                    "party_id": _agree(
                        clean_id(location.get("party_id"), "party_id"), pushed.get("party_id"), "party_id"
                    ),
                    "id": _agree(clean_id(location.get("id"), "Location id"), pushed.get("location_id"), "location_id"),
                }
            evses = list_field(location, "evses", "Location evses")
            if not evses:
                result.skip("location_without_evses")
                return
            for index, evse in enumerate(evses):
                self._guarded(evse, location, ctx, result, f"{path}.evses[{index}]".lstrip("."), depth + 1)
            return
        self._evse(doc, EMPTY_OBJECT, ctx, result, pushed)

    def _guarded(
        self,
        item: Any,
        location: dict[str, Any] | None,
        ctx: NormalizeContext,
        result: NormalizeResult,
        path: str,
        depth: int,
    ) -> None:
        """Process one part of a multi-part document; its rejection is partial."""
        try:
            if location is None:
                self._dispatch(item, ctx, result, path, depth)
            elif isinstance(item, dict):
                self._evse(item, location, ctx, result)
            else:
                raise Rejection("not_an_object", f"EVSE must be an object, got {type(item).__name__}")
        except Rejection as rejection:
            result.rejections.append(rejection.at(path))

    def _evse(
        self,
        evse: dict[str, Any],
        loc: Mapping[str, Any],
        ctx: NormalizeContext,
        result: NormalizeResult,
        pushed: Mapping[str, str] = EMPTY_OBJECT,
    ) -> None:
        if not _CAMEL_MARKERS.isdisjoint(evse):  # snake_case's own test, inlined: runs per object
            evse = snake_case(evse)
        get = evse.get
        raw_uid = get("uid")
        if raw_uid is None:
            raw_uid = get("evse_uid")
        uid = clean_id(raw_uid, "EVSE uid")
        country = clean_id(get("country_code") or loc.get("country_code"), "country_code")
        party = clean_id(get("party_id") or loc.get("party_id"), "party_id")
        location_id = clean_id(get("location_id") or loc.get("id"), "location_id")
        connector_hint = None
        if pushed:
            uid = _agree(uid, pushed.get("evse_uid"), "EVSE uid")
            country = _agree(country, pushed.get("country_code"), "country_code")
            party = _agree(party, pushed.get("party_id"), "party_id")
            location_id = _agree(location_id, pushed.get("location_id"), "location_id")
            connector_hint = pushed.get("connector_id")
        if uid is None:
            if raw_uid is not None:
                raise Rejection("invalid_id", "EVSE uid must be a non-empty string or number")
            if "location_id" in pushed:  # a Location-level push (name, hours…) names no EVSE
                result.skip("no_status")
                return
            raise Rejection(
                "missing_id",
                "no EVSE uid (uid / evse_uid) in the OCPI object, nor a Locations path in the record key or headers",
            )
        party_prefix = f"{country}:{party}" if country and party else (party or "")
        if party_prefix:
            evse_uid = f"ocpi:{party_prefix}:{uid}"
        elif location_id:
            evse_uid = f"ocpi:{location_id}:{uid}"
        else:
            evse_uid = f"ocpi:{uid}"
        lat, lon = _coords(evse, ctx)
        if lat is None and loc:
            lat, lon = _coords(loc, ctx)
        if location_id:
            location_uid = f"ocpi:{party_prefix}:{location_id}" if party_prefix else f"ocpi:{location_id}"
        else:
            location_uid = None
        if loc:
            operator = loc.get("operator")
            location_name = clean_str(loc.get("name"))
            operator_name = clean_str(operator.get("name")) if isinstance(operator, dict) else None
            city = clean_str(loc.get("city"))
            country_code = clean_str(country or loc.get("country"))
        else:
            location_name = operator_name = city = None
            country_code = country
        reliability = get("reliability")
        uptime = get("uptime")
        privilege = get("privilege_status")
        out = EvseRecords(
            Source.ocpi,
            evse_uid,
            ctx,
            locationId=location_uid,
            evseDisplayId=clean_str(get("evse_id")),
            latitude=lat,
            longitude=lon,
            locationName=location_name,
            operatorName=operator_name,
            city=city,
            countryCode=country_code,
            reliability=None if reliability is None else _score(reliability),
            uptime=None if uptime is None else _score(uptime),
            privilegeStatus=None if privilege is None else clean_str(privilege),
        )
        raw_status = get("status")
        evse_status = None if raw_status is None else map_status(raw_status, "EVSE")
        evse_flags = read_flags(evse)
        evse_time = get("last_updated")
        connectors = list_field(evse, "connectors", "EVSE connectors")
        if connectors is not None and len(connectors) > ctx.max_connectors:
            ctx.expect(len(connectors))

        if connectors is None and (get("connector_id") is not None or connector_hint is not None):
            # a connector-level PATCH: {"evse_uid", "connector_id", "status", ...}, or a Connector
            # object pushed to .../{evse_uid}/{connector_id}
            body_connector = clean_id(get("connector_id") or (get("id") if connector_hint else None), "connector_id")
            connector_id = _agree(body_connector, connector_hint, "connector_id")
            if raw_status is None:
                result.skip("no_status")
                return
            body = {**evse, "id": connector_id, "uid": None}
            self._connector(body, out, party_prefix, None, None, _NO_FLAGS, None, ctx)
            result.records.extend(out.records)
            return
        if not connectors:
            if connectors is None and raw_status is None:
                result.skip("no_status")
                return
            if evse_status is None:
                raise Rejection("missing_status", f"EVSE {uid!r} has no status")
            status, shown = apply_flags(evse_status, raw_status.strip(), evse_flags)
            out.add(f"{evse_uid}#*", None, status, shown, True, _NO_ATTRIBUTES, (evse_time,), Scope.EVSE)
            if connectors is not None:  # a full snapshot that lists no connector
                out.mark_snapshot()
            result.records.extend(out.records)
            return

        complete = True
        for index, conn in enumerate(connectors):
            try:
                self._connector(conn, out, party_prefix, evse_status, raw_status, evse_flags, evse_time, ctx)
            except Rejection as rejection:
                complete = False
                result.rejections.append(rejection.at(f"connectors[{index}]"))
        if complete:
            out.mark_snapshot()
        result.records.extend(out.records)

    def _connector(
        self,
        conn: Any,
        out: EvseRecords,
        party_prefix: str,
        evse_status: Status | None,
        evse_raw_status: Any,
        evse_flags: dict[str, bool],
        evse_time: Any,
        ctx: NormalizeContext,
    ) -> None:
        if not isinstance(conn, dict):
            raise Rejection("not_an_object", f"connector must be an object, got {type(conn).__name__}")
        if not _CAMEL_MARKERS.isdisjoint(conn):
            conn = snake_case(conn)
        get = conn.get
        connector_id = clean_id(get("id") or get("connector_id"), "connector id")
        own_uid = get("uid")
        if own_uid is not None:
            own_uid = clean_id(own_uid, "connector uid")
        if own_uid:
            connector_uid = f"ocpi:{party_prefix}:{own_uid}" if party_prefix else f"ocpi:{own_uid}"
        elif connector_id:
            connector_uid = f"{out.evse_uid}#{connector_id}"
        else:
            raise Rejection("missing_id", "connector has neither uid nor id")
        raw_status = get("status")
        if raw_status is not None:
            status = map_status(raw_status, "connector")
        elif evse_status is not None:
            status, raw_status = evse_status, evse_raw_status
        else:
            raise Rejection("missing_status", f"no status for connector {connector_uid!r}")
        flags = evse_flags if _FLAG_KEYS.isdisjoint(conn) else read_flags(conn, evse_flags)
        if flags:
            status, shown = apply_flags(status, raw_status.strip(), flags)
        else:
            shown = raw_status.strip()
        attributes = _ATTRIBUTES.get(  # the spec key parse_attributes reads; 2.1-style names too
            (
                get("standard") or get("type"),
                get("format"),
                get("power_type"),
                get("max_voltage") or get("voltage"),
                get("max_amperage") or get("amperage"),
                get("max_electric_power"),
            ),
            ctx,
        )
        out.add(
            connector_uid, connector_id or own_uid, status, shown, True, attributes, (get("last_updated"), evse_time)
        )
