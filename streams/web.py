"""HTTP API and dashboard served by a worker (aiohttp, read-only).

Endpoints (field names are the Avro field names):
``GET /api/health``, ``GET /api/stats``, ``GET /api/evse`` (filters: ``source``,
``status`` present, ``minAvailable``, ``stale``; ``limit``/``offset``),
``GET /api/evse/{evseUid}``, ``GET /api/connectors/{connectorUid}``, ``GET /`` dashboard.
A worker answers from the partitions it owns; with several workers, see README.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from .core import availability
from .runner import LocalPipeline, _as_published

STATIC = Path(__file__).parent / "static"


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def build_app(pipeline: LocalPipeline, api_token: str | None = None) -> web.Application:
    aggregate = pipeline.aggregate

    def views() -> list[dict[str, Any]]:
        stream_time = aggregate.stream_time()
        return [
            _as_published("EvseAvailability", availability(evse, stream_time, aggregate.policy))
            for state in list(aggregate.states.values())
            for evse in list(state.evses.values())
        ]

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        protected = api_token and request.path.startswith("/api/") and request.path != "/api/health"
        if protected and request.headers.get("Authorization") != f"Bearer {api_token}":
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        return await handler(request)

    async def health(_: web.Request) -> web.Response:
        failed = [t.get_name() for t in pipeline.tasks if t.done()]
        status = 503 if failed else 200
        return web.json_response({"status": "ok" if not failed else "degraded", "stoppedStages": failed}, status=status)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(
            {
                **pipeline.stats(),
                "partitionsOwned": sorted(aggregate.states),
                "evses": sum(len(s.evses) for s in aggregate.states.values()),
            }
        )

    async def evse_list(request: web.Request) -> web.Response:
        query = request.query
        try:
            limit = int(query.get("limit", 100))
            offset = int(query.get("offset", 0))
            min_available = int(query["minAvailable"]) if "minAvailable" in query else None
        except ValueError:
            return _bad("limit, offset and minAvailable must be integers")
        if not 1 <= limit <= 1000 or offset < 0:
            return _bad("limit must be 1..1000 and offset >= 0")
        stale = query.get("stale")
        if stale not in (None, "true", "false"):
            return _bad("stale must be true or false")
        items = sorted(views(), key=lambda v: v["evseUid"])
        if "source" in query:
            items = [v for v in items if v["source"] == query["source"]]
        if "status" in query:
            items = [v for v in items if v["statusCounts"].get(query["status"].upper(), 0) > 0]
        if min_available is not None:
            items = [v for v in items if v["available"] >= min_available]
        if stale is not None:
            items = [v for v in items if v["stale"] == (stale == "true")]
        return web.json_response({"total": len(items), "items": items[offset : offset + limit]})

    async def evse_one(request: web.Request) -> web.Response:
        uid = request.match_info["evseUid"]
        for state in aggregate.states.values():
            evse = state.evses.get(uid)
            if evse is not None:
                view = availability(evse, aggregate.stream_time(), aggregate.policy)
                return web.json_response(_as_published("EvseAvailability", view))
        return web.json_response({"error": f"unknown evseUid {uid!r}"}, status=404)

    async def connector_one(request: web.Request) -> web.Response:
        uid = request.match_info["connectorUid"]
        for view in views():
            for connector in view["connectors"]:
                if connector["connectorUid"] == uid:
                    return web.json_response({**connector, "evseUid": view["evseUid"], "source": view["source"]})
        return web.json_response({"error": f"unknown connectorUid {uid!r}"}, status=404)

    async def dashboard(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    app = web.Application(middlewares=[auth])
    app.add_routes(
        [
            web.get("/api/health", health),
            web.get("/api/stats", stats),
            web.get("/api/evse", evse_list),
            web.get("/api/evse/{evseUid}", evse_one),
            web.get("/api/connectors/{connectorUid}", connector_one),
            web.get("/", dashboard),
        ]
    )
    return app


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
