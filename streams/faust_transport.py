"""A Faust transport whose end offsets come from fetch high watermarks: ``plugstream://``.

Faust reads the end offsets of changelog partitions (``consumer.highwaters``) to decide when
table recovery is done. Its aiokafka driver asks ListOffsets, which the embedded broker
answers with the last batch's base offset + 1 whenever a batch holds more than one record —
so recovery stops early and table state is silently lost after a restart (STACK notes).
This driver answers the same question from a fetch: it seeks just before what ListOffsets
says (the last batch's first record), fetches once, and reads the high watermark the fetch
response carries, which is right on every broker.

Its consumer also guards the partitions of the agents' input topics against two ways Faust
0.15 loses records across a rebalance (README "Engines"): commits are bounded by what the
agents processed (:func:`limit_commits`), and records reach the agents in offset order
(:func:`deliver_in_order`). Everything else is Faust's own aiokafka driver, unchanged.

Registered through Faust's own transport registry (the ``faust.transports`` entry point in
``pyproject.toml``), so ``broker="plugstream://host:9092"`` selects it; no Faust internals
are patched.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_TIMEOUT_MS = 2_000
#: a gap still there after this many seeks back is a hole in the log (retention, compaction)
SEEK_BACK_TRIES = 3
log = logging.getLogger(__name__)

#: ``limit(topic, partition, offset)`` → the offset that may be committed (``None``: none yet)
CommitLimit = Callable[[str, int, int], int | None]
_COMMIT_LIMITS: weakref.WeakKeyDictionary[Any, CommitLimit] = weakref.WeakKeyDictionary()
_IN_ORDER_TOPICS: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def deliver_in_order(app: Any, topics: set[str]) -> None:
    """Records of ``topics`` (whose offsets have no holes: not compacted, no transactions)
    reach ``app``'s streams in offset order without gaps (see :class:`Consumer`)."""
    _IN_ORDER_TOPICS[app] = frozenset(topics)


def limit_commits(app: Any, limit: CommitLimit) -> None:
    """Bound every offset ``app``'s consumer commits by what the application really processed.

    Why: Faust's stream skips the events it dequeues while a rebalance runs (an older consumer
    generation, or flow control suspended) — and acks them, so their offsets become
    committable. Committed, they are past the offset the post-rebalance seek returns to, and
    those records are never processed by anyone. With a limit the broker never holds an offset
    beyond the agents' own progress, so the seek brings the skipped records back.
    """
    _COMMIT_LIMITS[app] = limit


class HighwaterConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with end offsets from fetch high watermarks."""

    async def _highwaters(self, partitions: list[Any]) -> Mapping[Any, int]:
        if self.consumer.in_transaction or not partitions:
            return await super()._highwaters(partitions)
        conf = self.app.conf
        transport = self.transport
        reader = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=faust_aiokafka.server_list(transport.url, transport.default_port),
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
            request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
            **faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        )
        await reader.start()
        try:
            ours = {aiokafka.TopicPartition(tp.topic, tp.partition): tp for tp in partitions}
            tps = list(ours)
            reader.assign(tps)
            listed = await reader.end_offsets(tps)
            for tp in tps:
                reader.seek(tp, max(0, listed[tp] - 1))
            found: dict[Any, int] = {}
            pending = {tp for tp in tps if listed[tp] > 0}
            for tp in tps:
                if listed[tp] == 0:
                    found[ours[tp]] = 0  # an empty partition
            for _ in range(20):  # each round fetches every partition still without a high watermark
                if not pending:
                    break
                await reader.getmany(*pending, timeout_ms=FETCH_TIMEOUT_MS // 10, max_records=1)
                for tp in list(pending):
                    highwater = reader.highwater(tp)
                    if highwater is not None:
                        found[ours[tp]] = highwater
                        pending.discard(tp)
            for tp in pending:  # the fetch never answered: ListOffsets is all there is
                found[ours[tp]] = listed[tp]
            return found
        finally:
            await reader.stop()


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with two guards for the partitions of registered topics.

    * In-order delivery: after a seek, a record of a partition must be the next offset due.
      Faust can hand its streams records fetched before a rebalance's seek (its fetch call
      was in flight across the rebalance); they carry the new generation, so its streams take
      them, and its read-offset bookkeeping then drops the re-fetched records the seek asked
      for — those records were never processed. A record past the offset due is dropped
      here instead, with the rest of its batch, and the partition is sought back to that
      offset (a gap still there after :data:`SEEK_BACK_TRIES` seeks is a hole in the log).
    * Commits never run ahead of processing (:func:`limit_commits`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._due: dict[Any, int] = {}
        self._resought: dict[Any, tuple[int, int]] = {}  # partition → (offset sought back to, times)

    def _new_consumer_thread(self) -> HighwaterConsumerThread:
        return HighwaterConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _ordered(self, tp: Any) -> bool:
        return tp.topic in _IN_ORDER_TOPICS.get(self.app, ())

    def _expect(self, tp: Any, offset: int | None) -> None:
        if self._ordered(tp):
            if offset is None or offset < 0:
                self._due.pop(tp, None)
            else:
                self._due[tp] = offset

    async def seek_to_committed(self) -> Mapping[Any, int]:
        """Seek to the committed offsets — and a partition of a registered topic with none to
        its beginning. Faust leaves such a partition where its fetcher was; after records
        were skipped in a rebalance (never committed, since :func:`limit_commits` holds the
        commits back) that position is past them, and they would never be processed."""
        committed = dict(await super().seek_to_committed())
        uncommitted = [tp for tp, offset in committed.items() if self._ordered(tp) and (offset is None or offset < 0)]
        if uncommitted:
            for tp, start in (await self.earliest_offsets(*uncommitted)).items():
                await self.seek(tp, start)
                committed[tp] = start
        for tp, offset in committed.items():
            self._expect(tp, offset)
        return committed

    async def seek_wait(self, partitions: Mapping[Any, int]) -> None:
        await super().seek_wait(partitions)
        for tp, offset in partitions.items():
            self._expect(tp, offset)

    async def _seek(self, partition: Any, offset: int) -> None:
        await super()._seek(partition, offset)
        self._expect(partition, offset)

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        for tp in revoked:
            self._due.pop(tp, None)
            self._resought.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        due, resought = self._due, self._resought
        sought_back: set[Any] = set()  # the rest of this batch is stale for these partitions
        async for tp, message in super().getmany(timeout):
            if tp in sought_back:
                continue
            offset = message.offset
            expected = due.get(tp)
            if expected is not None and offset != expected:
                if offset < expected:
                    continue  # delivered already
                place, tries = resought.get(tp, (expected, 0))
                if place != expected or tries < SEEK_BACK_TRIES:
                    log.warning(
                        "%s[%d]: record %d arrived where %d was due; seeking back to %d",
                        tp.topic,
                        tp.partition,
                        offset,
                        expected,
                        expected,
                    )
                    resought[tp] = (expected, tries + 1 if place == expected else 1)
                    sought_back.add(tp)
                    await self.seek(tp, expected)
                    continue
                log.warning(
                    "%s[%d]: no records %d-%d in the log; going on", tp.topic, tp.partition, expected, offset - 1
                )
            if expected is not None or self._ordered(tp):
                due[tp] = offset + 1
            yield tp, message

    async def _commit(self, offsets: Mapping[Any, int]) -> bool:
        limit = _COMMIT_LIMITS.get(self.app)
        if limit is not None:
            bounded: dict[Any, int] = {}
            for tp, offset in offsets.items():
                allowed = limit(tp.topic, tp.partition, offset)
                if allowed is not None:
                    bounded[tp] = allowed
            if not bounded:
                return False
            offsets = bounded
        return await super()._commit(offsets)


class Transport(faust_aiokafka.Transport):
    """``plugstream://``: Faust's aiokafka transport with exact end offsets."""

    Consumer = Consumer
