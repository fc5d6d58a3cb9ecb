"""Two workers in one consumer group: partitions split, and either one answers for any EVSE."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import ClientSession

from streams.broker import free_port
from streams.runner import publish

from ..helpers import FIXTURES
from .test_api import Worker, get

pytestmark = pytest.mark.integration


async def test_any_worker_answers_for_any_evse(broker, engine: str) -> None:
    async with (
        Worker(broker.bootstrap, free_port(), group=True, engine=engine) as one,
        Worker(broker.bootstrap, free_port(), group=True, engine=engine) as two,
        ClientSession() as http,
    ):
        await publish(broker.bootstrap, [FIXTURES / "replay_log.jsonl"], 3, progress=False)
        deadline = time.monotonic() + 60
        while True:
            owned = [w.pipeline.partitions_owned() for w in (one, two)]
            totals = [(await get(http, f"{w.url}/api/evse"))[1]["total"] for w in (one, two)]
            accepted = sum(w.pipeline.stats()["accepted"] for w in (one, two))
            if totals == [4, 4] and accepted == 12 and all(owned) and sorted(owned[0] + owned[1]) == [0, 1, 2]:
                break
            assert time.monotonic() < deadline, (owned, totals, accepted)
            await asyncio.sleep(0.25)
        for worker in (one, two):
            for uid in ("ocpi:NL:PLG:E1", "edrv:cs1", "here:h1", "ocm:77"):
                status, body = await get(http, f"{worker.url}/api/evse/{uid}")
                assert status == 200 and body["evseUid"] == uid
        for worker in (one, two):
            stats = (await get(http, f"{worker.url}/api/stats"))[1]
            assert stats["engine"] == engine  # /api/stats says which engine ran
        first = (await get(http, f"{one.url}/api/evse"))[1]["items"]
        second = (await get(http, f"{two.url}/api/evse"))[1]["items"]
        assert first == second  # the same global view on both
