"""HTTP API, live stream and metrics against a worker on the embedded broker."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiohttp import ClientSession

from streams.config import Settings
from streams.engines import create_engine
from streams.runner import publish
from streams.status import LiveStatus
from streams.view import GlobalView
from streams.web import build_app, serve

from ..helpers import FIXTURES

pytestmark = pytest.mark.integration
LOG = FIXTURES / "replay_log.jsonl"


class Worker:
    """A worker in this process: both stages, the global view and the HTTP server."""

    def __init__(
        self, bootstrap: str, port: int, token: str | None = None, group: bool = False, engine: str = "native"
    ) -> None:
        self.settings = Settings(partitions=3)
        self.pipeline = create_engine(self.settings, bootstrap, group=group, name=engine)
        self.view = GlobalView(bootstrap, 3, int(self.settings.staleness_seconds * 1000))
        self.port, self.token = port, token
        self.url = f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> Worker:
        await self.pipeline.start()
        await self.view.start()
        app = build_app(self.view, LiveStatus(self.pipeline), self.token)
        self.runner = await serve(app, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()
        await self.view.stop()
        await self.pipeline.stop()


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def get(session: ClientSession, url: str, **kw) -> tuple[int, dict]:
    async with session.get(url, **kw) as response:
        return response.status, await response.json()


def free_port() -> int:
    from streams.broker import free_port as pick

    return pick()


async def test_query_endpoints_filters_and_errors(broker) -> None:
    async with Worker(broker.bootstrap, free_port()) as worker, ClientSession() as http:
        report = await publish(broker.bootstrap, [LOG], 3, progress=False)
        await worker.pipeline.wait_processed(report.raw_end_offsets)

        async def all_four() -> bool:
            return (await get(http, f"{worker.url}/api/evse"))[1]["total"] == 4

        await wait_for(all_four)
        status, body = await get(http, f"{worker.url}/api/evse/ocpi:NL:PLG:E1")
        assert status == 200 and body["available"] == 1 and body["lastUpdateTimestamp"] == "2026-03-01T10:11:00.000Z"
        status, body = await get(http, f"{worker.url}/api/evse/does-not-exist")
        assert status == 404 and "unknown evseUid" in body["error"]

        async def uids(query: str) -> list[str]:
            status, body = await get(http, f"{worker.url}/api/evse?{query}")
            assert status == 200, body
            return [e["evseUid"] for e in body["items"]]

        assert await uids("source=edrv") == ["edrv:cs1"]
        assert await uids("status=RESERVED") == ["edrv:cs1"]
        assert await uids("minAvailable=2") == ["ocm:77"]
        assert await uids("standard=IEC_62196_T2_COMBO") == ["ocm:77"]
        assert await uids("minPower=40") == ["ocm:77"]
        assert await uids("powerClass=2") == ["edrv:cs1"]  # c1 at 11 kW
        assert await uids("powerClass=4") == []  # the only 150 kW connector was removed
        assert await uids("stale=false&limit=2&offset=1") == ["here:h1", "ocm:77"]
        assert await uids("bbox=-180,-90,180,90") == []  # the fixture has no coordinates
        for bad in (
            "limit=0",
            "limit=x",
            "source=tesla",
            "status=FREE",
            "bbox=1,2,3",
            "bbox=5,0,1,1",
            "powerClass=9",
            "stale=maybe",
            "minPower=lots",
        ):
            status, body = await get(http, f"{worker.url}/api/evse?{bad}")
            assert status == 400 and body["error"], bad

        status, body = await get(http, f"{worker.url}/api/evse/ocpi:NL:PLG:E1/windows?from=2026-03-01T09:00:00Z")
        assert status == 200 and [w["windowStart"] for w in body["items"]] == ["2026-03-01T10:00:00.000Z"]
        status, body = await get(http, f"{worker.url}/api/evse/ocpi:NL:PLG:E1/windows?to=2026-03-01T10:00:00Z")
        assert body["items"] == []
        status, body = await get(http, f"{worker.url}/api/evse/ocpi:NL:PLG:E1/windows?from=noon")
        assert status == 400

        status, body = await get(http, f"{worker.url}/api/connectors/edrv:c2")
        assert status == 200 and (body["status"], body["evseUid"]) == ("AVAILABLE", "edrv:cs1")
        status, body = await get(http, f"{worker.url}/api/stats")
        assert body["accepted"] == 12 and body["partitionsOwned"] == [0, 1, 2] and "consumerLag" in body
        # counters agree: this worker's rejections plus replay's own dead letters = the DLQ topic
        assert body["rejected"] == sum(body["rejectedByKind"].values()) == 2
        assert body["deadLetters"] == {
            "total": 4,
            "byKind": {"absurd_value": 1, "malformed_json": 2, "unrecognized_document": 1},
            "byStage": {"normalize": 2, "replay": 2},
        }
        status, body = await get(http, f"{worker.url}/api/health")
        assert status == 200 and body["status"] == "ok"
        async with http.get(f"{worker.url}/metrics") as response:
            text = await response.text()
        assert 'plugstream_connector_records_total{outcome="accepted"} 12.0' in text
        assert 'plugstream_dlq_records_total{kind="absurd_value"} 1.0' in text
        assert "plugstream_batch_processing_seconds_bucket" in text and "plugstream_consumer_lag" in text
        async with http.post(f"{worker.url}/api/evse") as response:
            assert response.status == 405  # read-only
        async with http.get(f"{worker.url}/api/evse", headers={"Origin": "http://evil.example"}) as response:
            assert "Access-Control-Allow-Origin" not in response.headers  # CORS off


async def test_bearer_token_protects_the_api(broker) -> None:
    async with Worker(broker.bootstrap, free_port(), token="s3cret") as worker, ClientSession() as http:
        assert (await get(http, f"{worker.url}/api/evse"))[0] == 401
        assert (await get(http, f"{worker.url}/api/evse", headers={"Authorization": "Bearer nope"}))[0] == 401
        assert (await get(http, f"{worker.url}/api/evse", headers={"Authorization": "Bearer s3cret"}))[0] == 200
        assert (await get(http, f"{worker.url}/api/health"))[0] == 200


async def read_events(response, until, timeout: float) -> list[dict]:
    events, buffer = [], b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(response.content.readany(), max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            if fields.get(b"event") == b"evse":
                events.append({"id": int(fields[b"id"]), **orjson.loads(fields[b"data"])})
        if until(events):
            break
    return events


async def test_live_stream_delivers_a_change_within_a_second_and_resumes(broker) -> None:
    async with Worker(broker.bootstrap, free_port()) as worker, ClientSession() as http:
        doc = {"_id": "c9", "chargestation": "cs9", "status": "Available", "updatedAt": "2026-03-01T10:00:00Z"}
        async with http.get(f"{worker.url}/api/stream?source=edrv") as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            started = time.monotonic()
            path = FIXTURES / "tmp_live.jsonl"
            try:
                path.write_bytes(
                    orjson.dumps({"source": "edrv", "timestamp": int(time.time() * 1000), "payload": doc}) + b"\n"
                )
                await publish(broker.bootstrap, [path], 3, progress=False)
            finally:
                path.unlink()
            events = await read_events(response, lambda ev: any(e["evseUid"] == "edrv:cs9" for e in ev), 5)
            elapsed = time.monotonic() - started
        assert [e["evseUid"] for e in events] == ["edrv:cs9"]
        assert elapsed < 1.0, f"change took {elapsed:.2f}s to arrive"
        first_id = events[0]["id"]
        headers = {"Last-Event-ID": str(first_id - 1)}
        async with http.get(f"{worker.url}/api/stream", headers=headers) as response:
            replayed = await read_events(response, lambda ev: len(ev) >= 1, 3)
        assert replayed[0]["id"] == first_id and replayed[0]["evseUid"] == "edrv:cs9"


async def test_slow_clients_do_not_grow_memory(broker) -> None:
    from streams.view import Event, Subscriber

    subscriber = Subscriber()
    for n in range(5000):
        subscriber.offer(Event(n, {}))
    assert subscriber.queue.qsize() == 1000 and subscriber.dropped == 4000
