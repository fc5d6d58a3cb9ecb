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
from enum import Enum
from typing import Any

import aiokafka
from aiokafka.errors import IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_TIMEOUT_MS = 2_000
#: a gap still there after this many seeks back is a hole in the log (retention, compaction)
SEEK_BACK_TRIES = 3
#: tries of a seek to the committed offsets that the assignment changing under it cut short
SEEK_TO_COMMITTED_TRIES = 3
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


class Verdict(Enum):
    """What an agent does with the event in front of it (:meth:`ProcessingGaps.verdict`)."""

    PROCESS = "process"
    SKIP = "skip"  # past a gap being refilled: the seek back brings it again
    SEEK = "seek"  # past a gap: seek the partition back to the offset due, skip this one


class ProcessingGaps:
    """The agents' own check that every record of an input partition is processed, in order.

    The consumer's guards work on what it *delivers*; Faust's stream can still drop an
    event after delivery (it skips events while a rebalance runs, or whose consumer
    generation is stale) and, if no seek follows, the partition goes on past them — records
    nobody ever processes. So each agent asks here before processing: an event past the
    offset due opens a gap, the agent seeks the partition back to that offset (its commits
    are held there by :func:`limit_commits`) and skips events until the one due arrives. The
    same first event past the gap arriving again means the log really has no records there
    (a hole: compaction, retention, transaction markers), and the agent goes on.

    Plain bookkeeping with no Faust or Kafka in it, so it is unit-tested directly
    (``tests/test_faust_transport.py``); slots are ``(topic, partition)``.
    """

    def __init__(self) -> None:
        #: per input partition owned now: the next offset the agent is due to process
        self.due: dict[tuple[str, int], int] = {}
        #: per partition with a gap being refilled (past ``due``, which cannot move meanwhile:
        #: nothing is processed): (first offset past the gap, last offset seen)
        self._refilling: dict[tuple[str, int], tuple[int, int]] = {}

    def verdict(self, slot: tuple[str, int], offset: int) -> Verdict:
        due = self.due.get(slot)
        if due is None or offset <= due:
            self._refilling.pop(slot, None)
            return Verdict.PROCESS  # the first event of an assignment, the one due, or a redelivery
        refill = self._refilling.get(slot)
        if refill is None:
            self._refilling[slot] = (offset, offset)
            return Verdict.SEEK
        first, last = refill
        if offset == first:
            del self._refilling[slot]
            log.warning("%s[%d]: no records %d-%d in the log; going on", slot[0], slot[1], due, offset - 1)
            return Verdict.PROCESS
        self._refilling[slot] = (first, offset)
        # a new pass that did not start at the offset due: seek again
        return Verdict.SEEK if offset <= last else Verdict.SKIP

    def processed(self, slot: tuple[str, int], offset: int) -> None:
        """The agent processed ``offset``; a redelivery never moves the offset due back."""
        self.due[slot] = max(self.due.get(slot, 0), offset + 1)

    def forget(self, slot: tuple[str, int]) -> None:
        """The partition was revoked: its next owner starts from the commits."""
        self.due.pop(slot, None)
        self._refilling.pop(slot, None)


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
                log.warning(
                    "%s[%d]: no fetch answered for the end offset; using ListOffsets' %d (may be short)",
                    tp.topic,
                    tp.partition,
                    listed[tp],
                )
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
        commits back) that position is past them, and they would never be processed.

        aiokafka seeks partition by partition and raises when the assignment changes in
        between, leaving some partitions sought and Faust's read offsets (and the offsets
        due here) not updated for them; so a seek cut short that way is done again over the
        assignment as it is now."""
        for attempt in range(1, SEEK_TO_COMMITTED_TRIES + 1):
            try:
                committed = dict(await super().seek_to_committed())
                break
            except IllegalStateError as exc:
                if attempt == SEEK_TO_COMMITTED_TRIES or not self.assignment():
                    raise
                log.info("seek to committed offsets cut short by a rebalance (%s); seeking again", exc)
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
