"""No hostile request gets a 5xx: every route × method × a table of bad values (no broker:
the view is filled in memory)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams import avro
from streams.api import NoWorker
from streams.view import GlobalView
from streams.web import build_app

EVSE = {
    "evseUid": "ocpi:NL:PLG:E1",
    "source": "ocpi",
    "locationId": None,
    "evseDisplayId": None,
    "latitude": 52.1,
    "longitude": 5.1,
    "locationName": "Depot",
    "operatorName": None,
    "city": "Utrecht",
    "countryCode": "NL",
    "statusCounts": {"AVAILABLE": 1},
    "connectorsTotal": 1,
    "available": 1,
    "byStandard": {"IEC_62196_T2": {"total": 1, "available": 1}},
    "byPowerClass": {"3": {"total": 1, "available": 1}},
    "maxAvailablePowerKw": 22.0,
    "lastUpdateTimestamp": 1_772_359_200_000,
    "lastSeenTimestamp": 1_772_359_200_000,
    "stale": False,
    "streamTime": 1_772_359_200_000,
    "connectors": [
        {
            "connectorUid": "ocpi:NL:PLG:E1#1",
            "connectorId": "1",
            "status": "AVAILABLE",
            "rawStatus": "AVAILABLE",
            "live": True,
            "standard": "IEC_62196_T2",
            "powerClass": 3,
            "maxPowerKw": 22.0,
            "lastChangeTimestamp": 1_772_359_200_000,
            "lastSeenTimestamp": 1_772_359_200_000,
        }
    ],
}


class FakeMessage:
    def __init__(self, topic: str, key: bytes, value: bytes, offset: int) -> None:
        self.topic, self.partition, self.offset, self.key, self.value = topic, 0, offset, key, value
        self.headers = ()


def filled_view() -> GlobalView:
    view = GlobalView("127.0.0.1:1", 1, 1_800_000)
    view._take(FakeMessage("evse-availability", b"ocpi:NL:PLG:E1", avro.encode("EvseAvailability", EVSE), 0))
    view._take(FakeMessage("evse-availability", b"ocpi:NL:PLG:BAD", b"\xff\xfe not avro", 1))  # a poison record
    view.refresh()
    view.ready.set()
    return view


@pytest.fixture
async def client():
    view = filled_view()
    async with TestClient(TestServer(build_app(view, NoWorker(), api_token="sécret-tøken"))) as client:
        yield client


AUTH = {"Authorization": "Bearer sécret-tøken"}
ROUTES = [
    "/api/health",
    "/api/live",
    "/api/stats",
    "/api/summary",
    "/api/evse",
    "/api/evse/ocpi:NL:PLG:E1",
    "/api/evse/ocpi:NL:PLG:E1/windows",
    "/api/windows",
    "/api/connectors/ocpi:NL:PLG:E1%231",
    "/api/dead-letters",
    "/metrics",
    "/",
    "/favicon.ico",
    "/static/favicon.svg",
]
HOSTILE_QUERIES = [
    "limit=0",
    "limit=%D9%A3",  # Arabic-Indic three
    "limit=5_0",
    "limit=-1",
    "limit=" + "9" * 40,
    "offset=" + "9" * 40,
    "offset=-1",
    "minPower=nan",
    "minPower=inf",
    "minPower=1e309",
    "bbox=nan,nan,nan,nan",
    "bbox=1,2,3",
    "bbox=" + ",".join(["9" * 400] * 4),
    "minavailable=3",
    "source=tesla",
    "status=%00",
    "q=" + "x" * 500,
    "from=%C2%B2",
    "from=" + "1" * 30,
    "to=not-a-time",
    "lastEventId=%C2%B2",
    "sort=evil",
    "order=sideways",
    "limit=1&limit=2",
    "%ff=%fe",
]


@pytest.mark.parametrize("route", ROUTES)
async def test_no_route_answers_5xx_to_any_method_or_query(client, route: str) -> None:
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        for query in ["", *HOSTILE_QUERIES]:
            url = f"{route}?{query}" if query else route
            async with client.request(method, url, headers=AUTH) as response:
                assert response.status < 500, (method, url, response.status)
                if response.status >= 400 and method != "HEAD":
                    assert response.content_type == "application/json", (method, url)
                    assert (await response.json())["error"]


async def test_tokens_are_bytes_and_never_500(client) -> None:
    for header in ("Bearer sécret", "Bearer \udcff\udcfe", "Basic x", "", "Bearer " + "x" * 5000):
        async with client.get("/api/stats", headers={"Authorization": header}) as response:
            assert response.status == 401 and (await response.json())["error"]
    async with client.get("/api/stats", headers=AUTH) as response:
        assert response.status == 200
    async with client.get("/api/stats", cookies={"plugstream_token": "sécret-tøken"}) as response:
        assert response.status == 200
    async with client.get("/api/health") as response:  # health needs no token
        assert response.status == 200


async def test_stream_takes_the_token_as_a_query_parameter_and_head_has_no_body(client) -> None:
    async with client.head("/api/stream?access_token=s%C3%A9cret-t%C3%B8ken") as response:
        assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
        assert await response.read() == b""
    async with client.get("/api/evse?access_token=s%C3%A9cret-t%C3%B8ken") as response:
        assert response.status == 401  # only the stream accepts it that way


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/nope", 404, "no such route"),
        ("/api/evse?offset=-1", 400, "from 0 to"),
        ("/api/evse?limit=%D9%A3", 400, "whole number"),
        ("/api/evse?limit=5_0", 400, "whole number"),
        ("/api/evse?minPower=nan", 400, "decimal"),
        ("/api/evse?bbox=nan,nan,nan,nan", 400, "decimal"),
        ("/api/evse?minavailable=3", 400, "minAvailable"),
        ("/api/stream?lastEventId=%C2%B2", 400, "ASCII digits"),
    ],
)
async def test_errors_say_what_is_wrong(client, url: str, status: int, words: str) -> None:
    async with client.get(url, headers=AUTH) as response:
        assert response.status == status
        assert words in (await response.json())["error"]


async def test_epoch_milliseconds_work_where_the_message_says(client) -> None:
    async with client.get("/api/evse/ocpi:NL:PLG:E1/windows?from=1740000000000", headers=AUTH) as response:
        assert response.status == 200


async def test_a_poison_record_is_skipped_and_counted(client) -> None:
    async with client.get("/api/evse", headers=AUTH) as response:
        body = await response.json()
    assert [e["evseUid"] for e in body["items"]] == ["ocpi:NL:PLG:E1"]
    async with client.get("/api/stats", headers=AUTH) as response:
        assert (await response.json())["viewUnreadable"] == {"evse-availability": 1}
    async with client.get("/metrics", headers=AUTH) as response:
        assert 'plugstream_view_unreadable_records_total{topic="evse-availability"} 1' in await response.text()


async def test_405_names_the_allowed_methods(client) -> None:
    async with client.post("/api/evse", headers=AUTH) as response:
        assert response.status == 405 and "GET" in response.headers["Allow"]
        assert "read-only" in (await response.json())["error"]
