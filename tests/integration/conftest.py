"""Integration tests go through a real Kafka-protocol broker: the embedded Tansu binary.

Topic names are part of the public contract (``raw.ocpi`` …), so instead of unique topic
names each test gets its own broker — it starts in ~50 ms and lives in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.broker import EmbeddedBroker


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as embedded:
        yield embedded


#: Both engines run every test that defines pipeline behaviour (DESIGN §7: the same topics,
#: records, dumps and counters under both).
ENGINES = ["native", "faust"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param
