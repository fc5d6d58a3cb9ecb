"""A simulated feed: realistic status changes for N EVSEs in all five source formats.

EVSEs are spread over the sources round-robin; each tick one connector changes status
following plausible transitions (available ↔ charging, rare faults and reservations), and
the EVSE is re-published in its source's native shape (a full snapshot, so snapshots,
duplicates of unchanged connectors and status changes all occur). OCPP charge points send
what a charge point sends: one StatusNotification for the connector that changed (OCPP
1.6 for even-numbered charge points, each connector its own EVSE; 2.0.1 for odd ones, one
EVSE with its connectors), keyed by the charge point id. Seeded: the same seed
gives the same sequence. Timestamps are the wall clock of the generator (this is an input
producer at the edge, not processing).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

TRANSITIONS = {
    "AVAILABLE": [("CHARGING", 0.8), ("RESERVED", 0.08), ("OUTOFORDER", 0.04), ("AVAILABLE", 0.08)],
    "CHARGING": [("AVAILABLE", 0.9), ("OUTOFORDER", 0.02), ("CHARGING", 0.08)],
    "RESERVED": [("CHARGING", 0.7), ("AVAILABLE", 0.3)],
    "OUTOFORDER": [("AVAILABLE", 0.6), ("OUTOFORDER", 0.4)],
}
SOURCES = ("ocpi", "ocm", "here", "edrv", "ocpp")
OCM_STATUS = {"AVAILABLE": 10, "CHARGING": 20, "RESERVED": 20, "OUTOFORDER": 100}
EDRV_STATUS = {"AVAILABLE": "Available", "CHARGING": "Charging", "RESERVED": "Reserved", "OUTOFORDER": "Faulted"}
OCPP201_STATUS = {"AVAILABLE": "Available", "CHARGING": "Occupied", "RESERVED": "Reserved", "OUTOFORDER": "Faulted"}
CITIES = [("Utrecht", 52.09, 5.12), ("Berlin", 52.52, 13.40), ("Leeds", 53.80, -1.55), ("Lyon", 45.76, 4.84)]


@dataclass
class SimEvse:
    index: int
    source: str
    statuses: list[str]
    lat: float
    lon: float
    city: str
    power_kw: float


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _status_notification(evse: SimEvse, connector: int, ts: str) -> list[Any]:
    """One OCPP-J StatusNotification CALL for connector ``connector`` (0-based) of the charge point."""
    status = evse.statuses[connector]
    if evse.index % 2 == 0:  # OCPP 1.6
        payload: dict[str, Any] = {
            "connectorId": connector + 1,
            "errorCode": "OtherError" if status == "OUTOFORDER" else "NoError",
            "status": EDRV_STATUS[status],
            "timestamp": ts,
        }
    else:  # OCPP 2.0.1
        payload = {
            "timestamp": ts,
            "connectorStatus": OCPP201_STATUS[status],
            "evseId": 1,
            "connectorId": connector + 1,
        }
    return [2, f"sim-{evse.index}-{connector}-{ts}", "StatusNotification", payload]


def record_key(evse: SimEvse) -> bytes:
    """The raw record key: the charge point id for OCPP (the adapter reads it), else the EVSE."""
    return f"CP-{evse.index}".encode() if evse.source == "ocpp" else f"sim-{evse.index}".encode()


def render(evse: SimEvse, now_ms: int, changed: int | None = None) -> Any:
    """The EVSE in its source's native JSON shape (for OCPP: the StatusNotification of the
    ``changed`` connector, or a batch of one per connector)."""
    ts = _iso(now_ms)
    i = evse.index
    if evse.source == "ocpp":
        if changed is not None:
            return _status_notification(evse, changed, ts)
        return [_status_notification(evse, k, ts) for k in range(len(evse.statuses))]
    if evse.source == "ocpi":
        return {
            "country_code": "NL",
            "party_id": "SIM",
            "uid": f"E{i}",
            "evse_id": f"NL*SIM*E{i}",
            "status": evse.statuses[0],
            "last_updated": ts,
            "coordinates": {"latitude": f"{evse.lat:.5f}", "longitude": f"{evse.lon:.5f}"},
            "connectors": [
                {
                    "id": str(k + 1),
                    "standard": "IEC_62196_T2",
                    "format": "SOCKET",
                    "power_type": "AC_3_PHASE",
                    "max_electric_power": int(evse.power_kw * 1000),
                    "last_updated": ts,
                }
                for k in range(len(evse.statuses))
            ],
        }
    if evse.source == "ocm":
        return {
            "ID": 800000 + i,
            "DateLastStatusUpdate": ts,
            "AddressInfo": {
                "Title": f"Sim car park {i}",
                "Town": evse.city,
                "Latitude": evse.lat,
                "Longitude": evse.lon,
            },
            "Connections": [
                {
                    "ID": 8_000_000 + i * 10 + k,
                    "ConnectionTypeID": 33,
                    "StatusTypeID": OCM_STATUS[s],
                    "PowerKW": evse.power_kw,
                    "CurrentTypeID": 30,
                }
                for k, s in enumerate(evse.statuses)
            ],
        }
    if evse.source == "here":
        counts = {s: evse.statuses.count(s) for s in set(evse.statuses)}
        return {
            "id": f"sim-{i}",
            "lastUpdateTimestamp": ts,
            "name": f"Sim station {i}",
            "position": {"latitude": evse.lat, "longitude": evse.lon},
            "address": {"city": evse.city},
            "connectors": {
                "connector": [
                    {
                        "connectorType": {"id": "34"},
                        "maxPowerLevel": evse.power_kw,
                        "fixedCable": True,
                        "chargingPoint": {
                            "numberOfConnectors": len(evse.statuses),
                            "voltsRange": "200-920V DC",
                            "numberOfAvailable": counts.get("AVAILABLE", 0),
                            "numberOfInUse": counts.get("CHARGING", 0),
                            "numberOfReserved": counts.get("RESERVED", 0),
                            "numberOfOutOfService": counts.get("OUTOFORDER", 0),
                            "lastUpdateTimestamp": ts,
                        },
                    }
                ]
            },
        }
    return {
        "_id": f"sim-cs-{i}",
        "protocol": "ocpp1.6",
        "online": True,
        "updatedAt": ts,
        "coordinates": [evse.lon, evse.lat],
        "connectors": [
            {
                "_id": f"sim-c-{i}-{k + 1}",
                "ocppId": k + 1,
                "active": True,
                "status": EDRV_STATUS[s],
                "type": "Type2",
                "format": "Socket",
                "power_type": "AC_3_PHASE",
                "power": evse.power_kw,
                "updatedAt": ts,
            }
            for k, s in enumerate(evse.statuses)
        ],
    }


def make_evses(count: int, rng: random.Random) -> list[SimEvse]:
    evses = []
    for i in range(count):
        city, lat, lon = CITIES[i % len(CITIES)]
        evses.append(
            SimEvse(
                i,
                SOURCES[i % len(SOURCES)],
                ["AVAILABLE"] * rng.choice([1, 2, 2, 4]),
                lat + rng.uniform(-0.05, 0.05),
                lon + rng.uniform(-0.05, 0.05),
                city,
                rng.choice([11.0, 22.0, 50.0, 150.0, 350.0]),
            )
        )
    return evses


def step(evse: SimEvse, rng: random.Random) -> int:
    """Move one connector to its next status; returns which one."""
    k = rng.randrange(len(evse.statuses))
    options = TRANSITIONS[evse.statuses[k]]
    evse.statuses[k] = rng.choices([o for o, _ in options], [w for _, w in options])[0]
    if evse.source == "ocpi":  # OCPI status is per EVSE: all its connectors share it
        evse.statuses = [evse.statuses[k]] * len(evse.statuses)
    return k


def _wall_ms() -> int:
    return int(time.time() * 1000)


def feed(evse_count: int, seed: int = 7, clock: Callable[[], int] = _wall_ms) -> Iterator[tuple[str, bytes, bytes]]:
    """Endless (source, key, payload): first every EVSE once, then one change per item.
    The key is the EVSE, so each EVSE's reports keep their order in one raw partition.
    ``clock`` stamps the payloads (epoch ms); a virtual clock makes the feed reproducible."""
    rng = random.Random(seed)
    evses = make_evses(evse_count, rng)
    for evse in evses:
        yield evse.source, record_key(evse), orjson.dumps(render(evse, clock()))
    while True:
        evse = rng.choice(evses)
        changed = step(evse, rng)
        yield evse.source, record_key(evse), orjson.dumps(render(evse, clock(), changed))


async def run_simulation(
    bootstrap: Any,
    evse_count: int,
    rate: float,
    duration: float | None = None,
    seed: int = 7,
    on_progress: Callable[[int, float], None] | None = None,
    progress_every: float = 5.0,
) -> int:
    """Publish the feed at ``rate`` records/s (for ``duration`` s, or until cancelled);
    ``on_progress(sent, seconds)`` every ``progress_every`` seconds."""
    from .engine import producer_for
    from .topics import RAW_TOPICS

    sent = 0
    started = time.monotonic()
    reported = started
    async with producer_for(bootstrap) as producer:
        for source, key, payload in feed(evse_count, seed):
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            await producer.send(RAW_TOPICS[source], payload, key=key)
            sent += 1
            if on_progress is not None and now - reported >= progress_every:
                on_progress(sent, now - started)
                reported = now
            delay = sent / rate - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)
    return sent


def make_log(
    evse_count: int, records: int, seed: int = 7, start_ms: int = 1_772_359_200_000, step_ms: int = 1000
) -> list[dict[str, Any]]:
    """A deterministic replay log (``{"source", "timestamp", "payload"}`` entries) with
    synthetic times: the same arguments always give the same log."""
    rng = random.Random(seed)
    evses = make_evses(evse_count, rng)
    entries = []
    for n in range(records):
        evse = evses[n] if n < len(evses) else rng.choice(evses)
        changed = step(evse, rng) if n >= len(evses) else None
        now = start_ms + n * step_ms
        entry = {"source": evse.source, "timestamp": now, "payload": render(evse, now, changed)}
        if evse.source == "ocpp":
            entry["key"] = record_key(evse).decode()
        entries.append(entry)
    return entries
