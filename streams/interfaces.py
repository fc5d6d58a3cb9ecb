"""The interfaces engines, the worker and the HTTP API share — and nothing else.

Engines (``streams/engine.py``: native; ``streams/faust_app.py``: Faust) implement
:class:`Engine`; the worker process runs one (chosen by name through
``streams/engines.py``) and publishes a :data:`WorkerStatus` snapshot a few times a second
to its HTTP API process (``streams/api.py``), which reads it through a
:class:`StatusSource`. This module imports neither side, so neither imports the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypedDict

#: Engines a worker can run (``PLUGSTREAM_ENGINE`` / ``--engine``); the registry lives in
#: ``streams/engines.py``.
ENGINE_NAMES = ("native", "faust")

#: (seconds the batch took, record timestamps of the batch) — what engines report per batch.
BatchCallback = Callable[[float, list[int]], Any]


class Engine(Protocol):
    """Both pipeline stages (normalize → connector-status → dedupe/aggregate → outputs)."""

    name: ClassVar[str]
    #: the asyncio tasks the engine runs; a task that ends means a stage stopped
    tasks: list[asyncio.Task[Any]]
    on_batch: list[BatchCallback]

    async def start(self) -> None:
        """Create topics, start both stages; returns once they consume (raises if one fails)."""
        ...

    async def stop(self) -> None: ...

    async def wait_processed(self, raw_end_offsets: dict[tuple[str, int], int], timeout: float = 300) -> None:
        """Until every raw record below those end offsets, and every record it produced,
        has been processed and its outputs acknowledged."""
        ...

    def stats(self) -> dict[str, Any]:
        """The counters of DESIGN §6 (``accepted, duplicates, stale, skipped, rejected, late`` …)."""
        ...

    def lag(self) -> dict[str, int]:
        """Records not yet processed, per stage (``normalize``, ``aggregate``)."""
        ...

    def partitions_owned(self) -> list[int]: ...

    def stream_time(self) -> int | None: ...

    def problems(self) -> list[str]:
        """Why this worker is not processing what it was given (empty when it is)."""
        ...

    def table_sizes(self) -> dict[str, int]: ...

    def evses(self) -> list[dict[str, Any]]:
        """The final per-EVSE table held by this worker (the ``--dump`` ``evses``)."""
        ...


class WorkerStatus(TypedDict, total=False):
    """What a worker tells its API process, a few times a second (JSON)."""

    engine: str
    workerId: str
    pid: int
    sentAt: int  # wall clock, epoch ms (display only: processing never reads it)
    stats: dict[str, Any]
    consumerLag: dict[str, int]
    partitionsOwned: list[int]
    streamTime: int | None
    problems: list[str]
    tableSizes: dict[str, int]
    metrics: str  # the worker's own Prometheus exposition text


class StatusSource(Protocol):
    """Where the HTTP API learns how its worker is doing."""

    attached: bool  # False for a standalone ``plugstream api`` (no worker of its own)

    def latest(self) -> WorkerStatus | None: ...

    def age_seconds(self) -> float | None:
        """Seconds since the last status arrived (``None`` before the first)."""
        ...
