"""HTTP API, live stream, metrics and dashboard (aiohttp, read-only), served by the API process.

Queries are answered from :class:`streams.view.GlobalView` — the output topics materialized
over all partitions — so every worker answers for every EVSE. The worker's own figures
(counters, lag, problems, its metrics) come from a :class:`~streams.interfaces.StatusSource`.
Field names are the Avro field names.

Rules every route follows:
- GET (and HEAD) only; anything else is ``405`` with ``Allow``; unknown paths ``404``;
  every error is JSON ``{"error": "..."}`` — a hostile request never gets a 5xx.
- Query parameters are checked: numbers are plain ASCII decimals within bounds (no NaN,
  no ``٣``, no ``5_0``), choices come from the schema's enums, and a parameter a route does
  not know is a ``400`` naming the ones it does.
- With ``PLUGSTREAM_API_TOKEN`` set, ``/api/*`` except ``/api/health`` and ``/api/live``
  needs the token: ``Authorization: Bearer <token>``, or the ``plugstream_token`` cookie
  (what the dashboard sets), or for ``/api/stream`` only ``?access_token=`` (EventSource
  cannot send headers). Tokens are compared as bytes in constant time and never logged.
- CORS headers are never sent.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from .interfaces import StatusSource
from .models import ConnectorStandard, Source, Status
from .timeparse import UnparseableTime, parse_timestamp
from .view import GlobalView, natural_key

STATIC = Path(__file__).parent / "static"
HEARTBEAT_SECONDS = 15.0
#: A worker whose status is older than this is not processing (stalled loop or gone).
STATUS_STALE_SECONDS = 10.0
#: How long the view may go without a successful fetch round before health says so.
VIEW_STALE_SECONDS = 30.0
SOURCES = {s.value for s in Source}
STATUSES = {s.value for s in Status}
STANDARDS = {s.value for s in ConnectorStandard}
MAX_OFFSET = 1_000_000_000
#: How long a query may spend decoding what arrived since the last one.
QUERY_REFRESH_SECONDS = 0.02
TOKEN_COOKIE = "plugstream_token"
_INT = re.compile(r"[0-9]{1,10}")
_NUMBER = re.compile(r"-?[0-9]{1,10}(?:\.[0-9]{1,12})?")

#: Filters shared by the list and the live stream, and what each route accepts besides.
FILTERS = ("source", "status", "minAvailable", "standard", "powerClass", "minPower", "bbox", "stale", "q")
LIST_PARAMS = (*FILTERS, "limit", "offset", "sort", "order")
SORTS = {
    "evseUid": lambda e: natural_key(e["evseUid"]),
    "source": lambda e: (e["source"], natural_key(e["evseUid"])),
    "available": lambda e: (e["available"], natural_key(e["evseUid"])),
    "connectorsTotal": lambda e: (e["connectorsTotal"], natural_key(e["evseUid"])),
    "lastUpdateTimestamp": lambda e: (e["lastUpdateTimestamp"] or "", natural_key(e["evseUid"])),
    "locationName": lambda e: ((e["locationName"] or "").lower(), natural_key(e["evseUid"])),
}


class BadQuery(ValueError):
    """A query parameter that cannot be used; answered with 400 and this message."""


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json", headers=headers)


def check_params(query: Any, allowed: Iterable[str]) -> None:
    """Reject parameters the route does not know (a misspelling would otherwise be ignored)."""
    allowed = tuple(allowed)
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        valid = ", ".join(allowed) if allowed else "none"
        raise BadQuery(f"unknown query parameter(s) {', '.join(unknown)}; valid: {valid}")
    for name in query:
        if len(query.getall(name)) > 1:
            raise BadQuery(f"{name} given more than once")


def _int(query: Any, name: str, default: int | None, low: int, high: int) -> int | None:
    if name not in query:
        return default
    text = query[name]
    if not _INT.fullmatch(text):
        raise BadQuery(f"{name} must be a whole number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise BadQuery(f"{name} must be a whole number from {low} to {high}")
    return value


def _float(query: Any, name: str, low: float, high: float) -> float | None:
    if name not in query:
        return None
    return _number(query[name], name, low, high)


def _number(text: str, name: str, low: float, high: float) -> float:
    if not _NUMBER.fullmatch(text.strip()):
        raise BadQuery(f"{name} must be a decimal number from {low:g} to {high:g}")
    value = float(text)
    if not (math.isfinite(value) and low <= value <= high):
        raise BadQuery(f"{name} must be a decimal number from {low:g} to {high:g}")
    return value


def _choice(query: Any, name: str, allowed: Iterable[str]) -> str | None:
    if name not in query:
        return None
    value = query[name]
    if value not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(sorted(allowed))}")
    return value


def _time(query: Any, name: str) -> Any:
    """RFC 3339 text or epoch milliseconds (ASCII digits)."""
    if name not in query:
        return None
    text = query[name].strip()
    try:
        if text.isascii() and text.isdigit():
            if len(text) > 15:
                raise UnparseableTime("out of range")
            return parse_timestamp(int(text))
        return parse_timestamp(text)
    except (UnparseableTime, OverflowError, ValueError):
        raise BadQuery(f"{name} must be an RFC 3339 timestamp or epoch milliseconds") from None


def evse_filter(query: Any) -> Callable[[dict[str, Any]], bool]:
    """The list/stream filters (see :data:`FILTERS`). Raises :class:`BadQuery`."""
    source = _choice(query, "source", SOURCES)
    status = _choice(query, "status", STATUSES)
    standard = _choice(query, "standard", STANDARDS)
    power_class = _int(query, "powerClass", None, 1, 6)
    min_available = _int(query, "minAvailable", None, 0, 1_000_000)
    min_power = _float(query, "minPower", 0, 5_000)
    stale = _choice(query, "stale", {"true", "false"})
    text = query.get("q", "").strip().lower()
    if len(text) > 200:
        raise BadQuery("q must be at most 200 characters")
    bbox = None
    if "bbox" in query:
        parts = query["bbox"].split(",")
        if len(parts) != 4:
            raise BadQuery("bbox must be minLon,minLat,maxLon,maxLat")
        bbox = [
            _number(parts[0], "bbox minLon", -180, 180),
            _number(parts[1], "bbox minLat", -90, 90),
            _number(parts[2], "bbox maxLon", -180, 180),
            _number(parts[3], "bbox maxLat", -90, 90),
        ]
        if bbox[0] > bbox[2] or bbox[1] > bbox[3]:
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
        return not text or any(
            text in (evse.get(name) or "").lower()
            for name in ("evseUid", "locationName", "city", "operatorName", "locationId", "evseDisplayId")
        )

    return keep


def _bytes(text: str) -> bytes:
    """Header/cookie text as the bytes that arrived (aiohttp decodes them with surrogateescape)."""
    return text.encode("utf-8", "surrogateescape")


def health_report(
    view: GlobalView, status: StatusSource, stale_after: float = STATUS_STALE_SECONDS
) -> tuple[bool, list[str]]:
    """(healthy, reasons): the readiness rules of the README's "Health" section."""
    reasons: list[str] = []
    if view.failed is not None:
        reasons.append(f"view stopped: {type(view.failed).__name__}: {view.failed}")
    elif not view.ready.is_set():
        reasons.append("view still loading the output topics")
    elif view.last_fetch_ok is not None and time.monotonic() - view.last_fetch_ok > VIEW_STALE_SECONDS:
        reasons.append(f"view has not fetched for {time.monotonic() - view.last_fetch_ok:.0f}s")
    if status.attached:
        age = status.age_seconds()
        latest = status.latest()
        if latest is None or age is None:
            reasons.append("worker has not reported yet")
        elif age > stale_after:
            reasons.append(f"worker has not reported for {age:.0f}s (its loop is stalled or it stopped)")
        else:
            reasons.extend(latest.get("problems", []))
    return not reasons, reasons


def build_app(
    view: GlobalView,
    status: StatusSource,
    api_token: str | None = None,
    status_stale_seconds: float = STATUS_STALE_SECONDS,
) -> web.Application:
    token = None if not api_token else _bytes(f"Bearer {api_token}")
    raw_token = None if not api_token else _bytes(api_token)
    public = {"/api/health", "/api/live"}
    started = time.monotonic()
    rates = RateTracker()

    def authorized(request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        if header is not None and hmac.compare_digest(_bytes(header), token):
            return True
        cookie = request.cookies.get(TOKEN_COOKIE)
        if cookie is not None and hmac.compare_digest(_bytes(cookie), raw_token):
            return True
        if request.path == "/api/stream":
            given = request.query.get("access_token")
            if given is not None and hmac.compare_digest(_bytes(given), raw_token):
                return True
        return False

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            protected = token is not None and request.path.startswith("/api/") and request.path not in public
            if protected and not authorized(request):
                return _json(
                    {"error": "missing or wrong token (Authorization: Bearer <token>)"},
                    401,
                    {"WWW-Authenticate": 'Bearer realm="plugstream"'},
                )
            return await handler(request)
        except BadQuery as exc:
            return _json({"error": str(exc)}, 400)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            message = {404: "no such route", 405: f"{request.method} not allowed; this API is read-only (GET)"}
            return _json({"error": message.get(exc.status, exc.reason)}, exc.status, headers)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug must still answer JSON, and say so
            import logging

            logging.getLogger("plugstream.web").exception("error answering %s", request.path)
            return _json({"error": f"internal error: {type(exc).__name__}"}, 500)

    def fresh() -> None:
        """Bring the view up to date, within a small time budget (a busy machine answers from
        a slightly older view rather than late; the view keeps decoding in the background)."""
        view.touch()
        view.refresh(budget=QUERY_REFRESH_SECONDS)

    async def health(request: web.Request) -> web.Response:
        check_params(request.query, ())
        ok, reasons = health_report(view, status, status_stale_seconds)
        latest = status.latest() if status.attached else None
        body = {
            "status": "ok" if ok else "unavailable",
            "reasons": reasons,
            "viewReady": view.ready.is_set(),
            "engine": latest.get("engine") if latest else None,
        }
        return _json(body, 200 if ok else 503)

    async def live(request: web.Request) -> web.Response:
        check_params(request.query, ())
        return _json({"status": "alive", "uptimeSeconds": round(time.monotonic() - started, 1)})

    async def stats(request: web.Request) -> web.Response:
        check_params(request.query, ())
        latest = status.latest() if status.attached else None
        fresh()
        worker = latest or {}
        rates.observe(worker.get("stats", {}))
        body = {
            **worker.get("stats", {}),
            "engine": worker.get("engine"),
            "workerId": worker.get("workerId"),
            "partitionsOwned": worker.get("partitionsOwned", []),
            "consumerLag": worker.get("consumerLag", {}),
            "tableSizes": worker.get("tableSizes", {}),
            "problems": worker.get("problems", []),
            "viewLag": view.lag(),
            "viewUnreadable": view.unreadable,
            "deadLetters": view.dead_letter_totals(),
            "evses": len(view.evses),
            "streamTime": view.stream_time_text(),
            "rates": rates.current(),
        }
        return _json(body)

    async def summary(request: web.Request) -> web.Response:
        check_params(request.query, ())
        fresh()
        return _json(view.summary())

    async def evse_list(request: web.Request) -> web.Response:
        query = request.query
        check_params(query, LIST_PARAMS)
        limit = _int(query, "limit", 100, 1, 1000)
        offset = _int(query, "offset", 0, 0, MAX_OFFSET)
        sort = _choice(query, "sort", set(SORTS)) or "evseUid"
        descending = (_choice(query, "order", {"asc", "desc"}) or "asc") == "desc"
        keep = evse_filter(query)
        fresh()
        items = [item for item in view.current_items() if keep(item)]
        items.sort(key=SORTS[sort], reverse=descending)
        page = items[offset : offset + limit]  # type: ignore[operator]
        return _json({"total": len(items), "limit": limit, "offset": offset, "items": page})

    async def evse_one(request: web.Request) -> web.Response:
        check_params(request.query, ())
        fresh()
        uid = request.match_info["evseUid"]
        evse = view.evses.get(uid)
        if evse is None:
            return _json({"error": f"unknown evseUid {uid[:300]!r}"}, 404)
        return _json(view.current(evse))

    def _window_range(query: Any) -> tuple[Any, Any]:
        check_params(query, ("from", "to"))
        return _time(query, "from"), _time(query, "to")

    def _in_range(windows: list[dict[str, Any]], start: Any, end: Any) -> list[dict[str, Any]]:
        items = []
        for window in windows:
            window_start = parse_timestamp(window["windowStart"])
            if (start is None or window_start >= start) and (end is None or window_start < end):
                items.append(window)
        return items

    async def evse_windows(request: web.Request) -> web.Response:
        start, end = _window_range(request.query)
        fresh()
        uid = request.match_info["evseUid"]
        if uid not in view.evses:
            return _json({"error": f"unknown evseUid {uid[:300]!r}"}, 404)
        return _json({"evseUid": uid, "items": _in_range(view.windows(uid), start, end)})

    async def fleet_windows(request: web.Request) -> web.Response:
        start, end = _window_range(request.query)
        return _json({"items": _in_range(view.fleet_windows(), start, end)})

    async def connector_one(request: web.Request) -> web.Response:
        check_params(request.query, ())
        fresh()
        uid = request.match_info["connectorUid"]
        evse_uid = view.connector_index.get(uid)
        if evse_uid is None:
            return _json({"error": f"unknown connectorUid {uid[:300]!r}"}, 404)
        evse = view.evses[evse_uid]
        connector = next(c for c in evse["connectors"] if c["connectorUid"] == uid)
        return _json({**connector, "evseUid": evse_uid, "source": evse["source"]})

    async def dead_letters(request: web.Request) -> web.Response:
        check_params(request.query, ("limit",))
        limit = _int(request.query, "limit", 10, 1, 50)
        return _json({"items": view.dead_letters(limit)})

    async def stream(request: web.Request) -> web.StreamResponse:
        query = request.query
        check_params(query, (*FILTERS, "lastEventId", "access_token"))
        keep = evse_filter(query)
        resume_text = request.headers.get("Last-Event-ID") or query.get("lastEventId")
        resume = None
        if resume_text is not None:
            resume_text = resume_text.strip()
            if not (resume_text.isascii() and resume_text.isdigit() and len(resume_text) <= 18):
                raise BadQuery("Last-Event-ID / lastEventId must be an event id (ASCII digits)")
            resume = int(resume_text)
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":
            return web.Response(headers=headers)
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        subscriber = view.subscribe()
        try:
            await response.write(b"retry: 2000\n\n")
            if resume is not None:
                backlog = view.since(resume)
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
                # every event already queued goes out in one write: a busy view emits thousands a
                # second, and a write per event per client would cost more than the events
                frames = []
                while event is not None:
                    if subscriber.dropped:
                        frames.append(b'event: resync\ndata: {"dropped": %d}\n\n' % subscriber.dropped)
                        subscriber.dropped = 0
                    evse, frame = view.render(event)
                    if keep(evse):
                        frames.append(frame)
                    if subscriber.queue.empty() or len(frames) >= 500:
                        break
                    event = subscriber.queue.get_nowait()
                if frames:
                    await response.write(b"".join(frames))
                if event is None:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            view.unsubscribe(subscriber)
        return response

    async def metrics(request: web.Request) -> web.Response:
        check_params(request.query, ())
        latest = status.latest() if status.attached else None
        text = (latest or {}).get("metrics", "") + view_metrics(view)
        return web.Response(body=text.encode(), content_type="text/plain", charset="utf-8")

    async def dashboard(request: web.Request) -> web.FileResponse:
        check_params(request.query, ())
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def static_file(request: web.Request) -> web.StreamResponse:
        path = (STATIC / request.match_info["name"]).resolve()
        if STATIC.resolve() not in path.parents or not path.is_file():
            return _json({"error": "no such file"}, 404)
        return web.FileResponse(path, headers={"Cache-Control": "max-age=3600"})

    async def favicon(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "favicon.svg", headers={"Content-Type": "image/svg+xml"})

    app = web.Application(middlewares=[guard], client_max_size=4096)
    app.add_routes(
        [
            web.get("/api/health", health),
            web.get("/api/live", live),
            web.get("/api/stats", stats),
            web.get("/api/summary", summary),
            web.get("/api/evse", evse_list),
            web.get("/api/evse/{evseUid}/windows", evse_windows),
            web.get("/api/evse/{evseUid}", evse_one),
            web.get("/api/windows", fleet_windows),
            web.get("/api/connectors/{connectorUid}", connector_one),
            web.get("/api/dead-letters", dead_letters),
            web.get("/api/stream", stream),
            web.get("/metrics", metrics),
            web.get("/", dashboard),
            web.get("/favicon.ico", favicon),
            web.get("/static/{name:.+}", static_file),
        ]
    )
    return app


class RateTracker:
    """Records per second from successive counter readings (for the dashboard's pipeline panel)."""

    def __init__(self) -> None:
        self._last: tuple[float, dict[str, int]] | None = None
        self._rates: dict[str, float] = {}

    def observe(self, stats: dict[str, Any]) -> None:
        now = time.monotonic()
        counts = {"raw": stats.get("rawRecords", 0), **{f"raw.{k}": v for k, v in stats.get("bySource", {}).items()}}
        counts["accepted"] = stats.get("accepted", 0)
        if self._last is not None:
            then, before = self._last
            if now - then < 0.5:
                return
            self._rates = {name: max(0.0, (n - before.get(name, 0)) / (now - then)) for name, n in counts.items()}
        self._last = (now, counts)

    def current(self) -> dict[str, float]:
        return {name: round(rate, 1) for name, rate in self._rates.items()}


def view_metrics(view: GlobalView) -> str:
    """The API process's own Prometheus families (names distinct from the worker's)."""
    lines = [
        "# HELP plugstream_view_evses EVSEs in this API process's view",
        "# TYPE plugstream_view_evses gauge",
        f"plugstream_view_evses {len(view.evses)}",
        "# HELP plugstream_view_lag Records on an output topic not yet in the view",
        "# TYPE plugstream_view_lag gauge",
    ]
    lines += [f'plugstream_view_lag{{topic="{topic}"}} {n}' for topic, n in sorted(view.lag().items())]
    lines += [
        "# HELP plugstream_view_unreadable_records_total Records the view skipped as undecodable",
        "# TYPE plugstream_view_unreadable_records_total counter",
    ]
    lines += [
        f'plugstream_view_unreadable_records_total{{topic="{t}"}} {n}' for t, n in sorted(view.unreadable.items())
    ]
    return "\n".join(lines) + "\n"


async def _send(
    response: web.StreamResponse, event: Any, keep: Callable[[dict[str, Any]], bool], view: GlobalView
) -> None:
    evse, frame = view.render(event)
    if keep(evse):
        await response.write(frame)


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving; a port that cannot be bound raises ``OSError`` before anything else runs."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
