"""HTTP API, live stream, metrics and dashboard served by a worker (aiohttp, read-only).

Queries are answered from :class:`streams.view.GlobalView` — the output topics materialized
over all partitions — so every worker answers for every EVSE. Field names are the Avro
field names. Every endpoint is GET; CORS headers are never sent; with an API token set,
``/api/*`` (except ``/api/health``) requires ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .core import COUNTERS
from .models import ConnectorStandard, Source, Status
from .runner import LocalPipeline
from .timeparse import UnparseableTime, parse_timestamp
from .view import GlobalView

STATIC = Path(__file__).parent / "static"
HEARTBEAT_SECONDS = 15.0
SOURCES = {s.value for s in Source}
STATUSES = {s.value for s in Status}
STANDARDS = {s.value for s in ConnectorStandard}


class BadQuery(ValueError):
    """A query parameter that cannot be used; answered with 400 and this message."""


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _int(query: Any, name: str, default: int | None, low: int | None = None, high: int | None = None) -> int | None:
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        raise BadQuery(f"{name} must be an integer") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadQuery(f"{name} must be between {low} and {high}")
    return value


def _float(query: Any, name: str) -> float | None:
    if name not in query:
        return None
    try:
        return float(query[name])
    except ValueError:
        raise BadQuery(f"{name} must be a number") from None


def _choice(query: Any, name: str, allowed: set[str]) -> str | None:
    if name not in query:
        return None
    value = query[name]
    if value not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(sorted(allowed))}")
    return value


def evse_filter(query: Any) -> Callable[[dict[str, Any]], bool]:
    """The list/stream filters: source, status, minAvailable, standard, powerClass, minPower,
    bbox=minLon,minLat,maxLon,maxLat, stale. Raises :class:`BadQuery`."""
    source = _choice(query, "source", SOURCES)
    status = _choice(query, "status", STATUSES)
    standard = _choice(query, "standard", STANDARDS)
    power_class = _int(query, "powerClass", None, 1, 6)
    min_available = _int(query, "minAvailable", None, 0, None)
    min_power = _float(query, "minPower")
    stale = _choice(query, "stale", {"true", "false"})
    bbox = None
    if "bbox" in query:
        try:
            bbox = [float(v) for v in query["bbox"].split(",")]
        except ValueError:
            raise BadQuery("bbox must be minLon,minLat,maxLon,maxLat") from None
        if len(bbox) != 4 or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
            raise BadQuery("bbox must be minLon,minLat,maxLon,maxLat with min <= max")

    def keep(evse: dict[str, Any]) -> bool:
        if source and evse["source"] != source:
            return False
        if status and not evse["statusCounts"].get(status):
            return False
        if standard and standard not in evse["byStandard"]:
            return False
        if power_class and str(power_class) not in evse["byPowerClass"]:
            return False
        if min_available is not None and evse["available"] < min_available:
            return False
        if min_power is not None and not any(
            (c["maxPowerKw"] or 0) >= min_power and c["status"] != "REMOVED" for c in evse["connectors"]
        ):
            return False
        if stale is not None and evse["stale"] != (stale == "true"):
            return False
        if bbox is not None:
            lat, lon = evse["latitude"], evse["longitude"]
            if lat is None or lon is None or not (bbox[0] <= lon <= bbox[2] and bbox[1] <= lat <= bbox[3]):
                return False
        return True

    return keep


def _counter(name: str, documentation: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    """One counter family with a sample per label value."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, n in values.items():
        family.add_metric([key], n)
    return family


class PipelineMetrics:
    """Prometheus collector reading the live counters at scrape time."""

    def __init__(self, pipeline: LocalPipeline, view: GlobalView) -> None:
        self.pipeline = pipeline
        self.view = view

    def collect(self) -> Any:
        stats = self.pipeline.stats()
        yield _counter(
            "plugstream_raw_records", "Raw records read, by source", "source", self.pipeline.normalize.stats.bySource
        )
        yield _counter(
            "plugstream_connector_records",
            "Canonical records by outcome",
            "outcome",
            {outcome: stats[outcome] for outcome in COUNTERS},
        )
        yield _counter(
            "plugstream_dlq_records", "Records sent to plugstream.dlq, by kind", "kind", stats["rejectedByKind"]
        )
        yield _counter("plugstream_skipped", "Skipped reports, by reason", "reason", stats["skippedByReason"])
        yield _counter("plugstream_unreadable_fields", "Secondary fields nulled, by field", "field", stats["warnings"])
        sizes = GaugeMetricFamily("plugstream_table_size", "Entries per table", labels=["table"])
        aggregate = self.pipeline.aggregate
        sizes.add_metric(["evse_state"], sum(len(s.store) for s in aggregate.states.values()))
        sizes.add_metric(["connector_state"], sum(s.connectors for s in aggregate.states.values()))
        sizes.add_metric(["view_evses"], len(self.view.evses))
        yield sizes
        lag = GaugeMetricFamily("plugstream_consumer_lag", "Records not yet processed", labels=["consumer"])
        for name, value in self.pipeline.lag().items():
            lag.add_metric([name], value)
        for topic, value in self.view.lag().items():
            lag.add_metric([f"view:{topic}"], value)
        yield lag
        owned = GaugeMetricFamily("plugstream_partitions_owned", "connector-status partitions owned")
        owned.add_metric([], len(aggregate.states))
        yield owned


def build_app(pipeline: LocalPipeline, view: GlobalView, api_token: str | None = None) -> web.Application:
    registry = CollectorRegistry()
    registry.register(PipelineMetrics(pipeline, view))
    batch_seconds = Histogram(
        "plugstream_batch_processing_seconds",
        "Stage-2 batch processing time",
        registry=registry,
        buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )
    record_latency = Histogram(
        "plugstream_record_latency_seconds",
        "Raw record timestamp → its stage-2 batch done (wall clock)",
        registry=registry,
        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
    )
    pipeline.aggregate.on_batch.append(
        lambda seconds, stamps: (
            batch_seconds.observe(seconds),
            [record_latency.observe(max(0.0, time.time() - ts / 1000)) for ts in stamps],
        )
    )

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        protected = api_token and request.path.startswith("/api/") and request.path != "/api/health"
        if protected and not hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {api_token}"):
            return _json({"error": "missing or wrong bearer token"}, 401)
        try:
            return await handler(request)
        except BadQuery as exc:
            return _json({"error": str(exc)}, 400)

    async def health(_: web.Request) -> web.Response:
        stopped = [t.get_name() for t in pipeline.tasks if t.done()]
        ok = not stopped and view.ready.is_set()
        return _json(
            {"status": "ok" if ok else "degraded", "stoppedStages": stopped, "viewReady": view.ready.is_set()},
            200 if ok else 503,
        )

    async def stats(_: web.Request) -> web.Response:
        return _json(
            {
                **pipeline.stats(),
                "partitionsOwned": sorted(pipeline.aggregate.states),
                "consumerLag": pipeline.lag(),
                "viewLag": view.lag(),
                "evses": len(view.evses),
                "streamTime": view.current({"lastSeenTimestamp": None})["streamTime"],
            }
        )

    async def evse_list(request: web.Request) -> web.Response:
        query = request.query
        limit = _int(query, "limit", 100, 1, 1000)
        offset = _int(query, "offset", 0, 0, None)
        keep = evse_filter(query)
        items = [view.current(view.evses[uid]) for uid in sorted(view.evses)]
        items = [item for item in items if keep(item)]
        return _json({"total": len(items), "limit": limit, "offset": offset, "items": items[offset : offset + limit]})

    async def evse_one(request: web.Request) -> web.Response:
        uid = request.match_info["evseUid"]
        evse = view.evses.get(uid)
        if evse is None:
            return _json({"error": f"unknown evseUid {uid!r}"}, 404)
        return _json(view.current(evse))

    async def evse_windows(request: web.Request) -> web.Response:
        uid = request.match_info["evseUid"]
        if uid not in view.evses:
            return _json({"error": f"unknown evseUid {uid!r}"}, 404)
        bounds = []
        for name in ("from", "to"):
            try:
                bounds.append(parse_timestamp(request.query.get(name)))
            except UnparseableTime:
                raise BadQuery(f"{name} must be an RFC 3339 timestamp or epoch milliseconds") from None
        start, end = bounds
        items = []
        for window in view.windows.get(uid, ()):
            window_start = parse_timestamp(window["windowStart"])
            if (start is None or window_start >= start) and (end is None or window_start < end):
                items.append(window)
        return _json({"evseUid": uid, "items": items})

    async def connector_one(request: web.Request) -> web.Response:
        uid = request.match_info["connectorUid"]
        evse_uid = view.connector_index.get(uid)
        if evse_uid is None:
            return _json({"error": f"unknown connectorUid {uid!r}"}, 404)
        evse = view.evses[evse_uid]
        connector = next(c for c in evse["connectors"] if c["connectorUid"] == uid)
        return _json({**connector, "evseUid": evse_uid, "source": evse["source"]})

    async def stream(request: web.Request) -> web.StreamResponse:
        keep = evse_filter(request.query)
        resume = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        subscriber = view.subscribe()
        try:
            await response.write(b"retry: 2000\n\n")
            if resume is not None and resume.isdigit():
                backlog = view.since(int(resume))
                if backlog is None:
                    await response.write(b"event: resync\ndata: {}\n\n")  # too old: reload the list
                else:
                    for event in backlog:
                        await _send(response, event, keep, view)
            while True:
                try:
                    event = await asyncio.wait_for(subscriber.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    await response.write(b": heartbeat\n\n")
                    continue
                if event is None:
                    break
                if subscriber.dropped:
                    await response.write(b'event: resync\ndata: {"dropped": %d}\n\n' % subscriber.dropped)
                    subscriber.dropped = 0
                await _send(response, event, keep, view)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            view.unsubscribe(subscriber)
        return response

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")

    async def dashboard(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app = web.Application(middlewares=[guard])
    app.add_routes(
        [
            web.get("/api/health", health),
            web.get("/api/stats", stats),
            web.get("/api/evse", evse_list),
            web.get("/api/evse/{evseUid}/windows", evse_windows),
            web.get("/api/evse/{evseUid}", evse_one),
            web.get("/api/connectors/{connectorUid}", connector_one),
            web.get("/api/stream", stream),
            web.get("/metrics", metrics),
            web.get("/", dashboard),
        ]
    )
    return app


async def _send(
    response: web.StreamResponse, event: Any, keep: Callable[[dict[str, Any]], bool], view: GlobalView
) -> None:
    evse = view.current(event.evse)
    if keep(evse):
        await response.write(b"id: %d\nevent: evse\ndata: " % event.id + orjson.dumps(evse) + b"\n\n")


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
