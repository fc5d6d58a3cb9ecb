"""The Faust engine: the same pipeline as Faust agents and a Faust table (``PLUGSTREAM_ENGINE=faust``).

One :class:`faust.App` (built by :func:`build_app`, never at import) with two agents:

* ``normalize`` over the raw topics (bytes in): the same stage-1 work as the native engine
  (:class:`streams.engine.Normalizer`), canonical records to ``connector-status`` and dead
  letters to ``plugstream.dlq``, sent with ``send_soon`` (Faust flushes its producer before
  it commits, so this is at-least-once);
* ``aggregate`` over ``connector-status``: the per-EVSE state in a changelog-backed
  :class:`faust.Table` (``<app_id>-faust-evse-state-changelog``; Faust's ``memory://`` or
  ``rocksdb://`` store, ``table_standby_replicas`` standbys), folded with the same pure core
  (``streams/core.py``), outputs to ``connector-changes``, ``evse-availability`` and
  ``evse-availability-windowed`` encoded by Faust codecs compiled from the same ``.avsc``
  files.

State effects exactly once, like the native engine: every table value carries the input
offset it reflects (and the EVSE's own counters), so a record Faust redelivers after a crash
is skipped for the EVSEs that already took it. Counters not tied to an EVSE live in a small
per-partition entry stamped the same way. On the embedded broker the ``plugstream://``
transport (``streams/faust_transport.py``) gives Faust exact end offsets for table recovery;
group timings are those the broker needs (STACK notes).

What Faust costs: each event goes through Faust's per-message machinery (event, ack,
``FutureMessage`` per send) and each table update is one changelog message; README "Engines"
has the measured figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import orjson

from . import avro
from .config import Settings
from .core import COUNTERS, EvseState, apply_record, availability, charge_point_evse, new_evse
from .engine import Normalizer, change_record, dead_letter, policy_for, status_partition
from .faust_transport import ProcessingGaps, Verdict, deliver_in_order, limit_commits
from .kafka import Kafka, as_kafka
from .models import Scope, construct_status
from .store import parse_store_url
from .topics import (
    CONNECTOR_CHANGES,
    CONNECTOR_STATUS,
    DLQ,
    EVSE_AVAILABILITY,
    EVSE_AVAILABILITY_WINDOWED,
    RAW_TOPICS,
    TopicSpec,
    ensure_topics,
    topic_specs,
)

log = logging.getLogger("plugstream.faust")
TABLE = "faust-evse-state"
META_PREFIX = "\x00meta:"
TEXT = "plugstream-text"
AVRO_SCHEMAS = ("ConnectorStatus", "ConnectorChange", "EvseAvailability", "EvseAvailabilityWindow", "DeadLetter")


def register_codecs() -> None:
    """Faust codecs: ``plugstream-text`` (UTF-8 keys) and ``avro-<Name>`` for each output schema."""
    from faust.serializers import codecs

    class Text(codecs.Codec):
        def _dumps(self, obj: Any) -> bytes:
            return obj.encode() if isinstance(obj, str) else bytes(obj)

        def _loads(self, data: bytes) -> str:
            return data.decode()

    def avro_codec(name: str) -> Any:
        class AvroCodec(codecs.Codec):
            def _dumps(self, obj: Any) -> bytes:
                return avro.encode(name, obj)

            def _loads(self, data: bytes) -> Any:
                return avro.decode_resolved(name, data)

        return AvroCodec()

    codecs.register(TEXT, Text())
    for name in AVRO_SCHEMAS:
        codecs.register(f"avro-{name}", avro_codec(name))


def faust_broker(target: str | Kafka) -> tuple[list[str], Any]:
    """Faust broker URLs (the ``plugstream://`` transport) and credentials for a Kafka target."""
    import faust

    kafka = as_kafka(target)
    urls = [f"plugstream://{server}" for server in kafka.bootstrap.split(",")]
    credentials = None
    if kafka.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        options = kafka.client_options()
        credentials = faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=options.get("ssl_context"),
        )
    elif kafka.security_protocol == "SSL":
        credentials = faust.SSLCredentials(kafka.client_options()["ssl_context"])
    return urls, credentials


def build_app(settings: Settings, target: str | Kafka, scratch: Path | None = None) -> Any:
    """The Faust app for these settings (topics, table; the agents are added by :class:`FaustEngine`).

    Faust wants a data directory even for ``memory://``: then it gets ``scratch`` (a temporary
    directory the engine removes), with ``rocksdb://`` the worker's state directory."""
    import faust

    register_codecs()
    urls, credentials = faust_broker(target)
    kind, custom_dir = parse_store_url(settings.store)
    if kind == "memory" and scratch is not None:
        datadir = scratch
    else:
        datadir = (custom_dir or settings.state_dir) / f"{settings.app_id}-{settings.worker_id or settings.web_port}"
    (datadir / "faust").mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=urls,
        broker_credentials=credentials,
        store="rocksdb://" if kind == "rocksdb" else "memory://",
        datadir=str(datadir / "faust"),
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=settings.standby_replicas,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        # the embedded broker holds each JoinGroup for half the session timeout (STACK notes)
        broker_session_timeout=6.0,
        broker_heartbeat_interval=0.5,
        broker_rebalance_timeout=10.0,
        broker_request_timeout=40.0,
        broker_commit_interval=2.0,
        broker_max_poll_records=4000,
        consumer_max_fetch_size=settings.fetch_max_bytes,
        producer_linger_ms=5,
        producer_max_batch_size=1_048_576,
        producer_max_request_size=4_194_304,
        stream_buffer_maxsize=8192,
        stream_wait_empty=False,
        table_cleanup_interval=3600.0,
    )


class FaustEngine:
    """:class:`streams.interfaces.Engine` on Faust. Always a consumer group (Faust has no other
    mode); ``group`` is accepted for the interface's sake."""

    name: ClassVar[str] = "faust"

    def __init__(self, settings: Settings, bootstrap: str | Kafka, group: bool = True) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.policy = policy_for(settings)
        self.normalizer = Normalizer(settings)
        self.tasks: list[asyncio.Task[Any]] = []
        self.on_batch: list[Any] = []
        self.app: Any = None
        self.table: Any = None
        #: per connector-status partition: counter totals, stream time, last offset processed
        self.counters: dict[int, dict[str, int]] = {}
        self.stream_times: dict[int, int] = {}
        self.processed: dict[int, int] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.produced: dict[int, int] = {}
        #: per agent input partition owned now: the next offset due, and gaps being refilled
        self.gaps = ProcessingGaps()
        self.unreadable = 0
        self._cache: dict[str, tuple[EvseState, dict[str, int], int]] = {}
        self._scratch: Path | None = None
        self._rebuild = True

    # -- the agents -------------------------------------------------------------------------
    def _build(self) -> None:
        import tempfile

        self._scratch = Path(tempfile.mkdtemp(prefix="plugstream-faust-"))
        app = self.app = build_app(self.settings, self.bootstrap, self._scratch)
        raw = app.topic(*RAW_TOPICS.values(), key_type=bytes, value_type=bytes, value_serializer="raw")
        status = app.topic(CONNECTOR_STATUS, key_type=bytes, value_type=bytes, value_serializer="raw")
        outputs = {
            name: app.topic(topic, key_serializer=TEXT, value_serializer=f"avro-{schema}")
            for name, topic, schema in (
                ("status", CONNECTOR_STATUS, "ConnectorStatus"),
                ("changes", CONNECTOR_CHANGES, "ConnectorChange"),
                ("availability", EVSE_AVAILABILITY, "EvseAvailability"),
                ("windows", EVSE_AVAILABILITY_WINDOWED, "EvseAvailabilityWindow"),
            )
        }
        dlq = app.topic(DLQ, key_serializer="raw", value_serializer="raw")
        import faust

        self.table = app.Table(
            TABLE,
            partitions=self.settings.partitions,
            schema=faust.Schema(key_type=str, value_type=bytes, key_serializer=TEXT, value_serializer="raw"),
        )
        app.on_partitions_revoked.connect(self._revoked)
        app.on_rebalance_complete.connect(self._rebalanced)
        partitions = self.settings.partitions

        def produced(future: Any) -> None:
            metadata = future.result() if hasattr(future, "result") else None
            if metadata is not None:
                self.produced[metadata.partition] = max(self.produced.get(metadata.partition, -1), metadata.offset)

        async def normalize(stream: Any) -> None:
            async for event in stream.events():
                message = event.message
                if not await self._admit(message):
                    continue
                source = message.topic.removeprefix("raw.")
                timestamp = round(message.timestamp * 1000)
                wrapped = _Message(message, timestamp)
                records, rejections = self.normalizer.handle(wrapped, source, timestamp)
                for rejection in rejections:
                    await dlq.send(
                        key=message.key,
                        value=dead_letter(wrapped, source, rejection, "normalize"),
                        partition=message.partition % partitions,
                        headers=avro.schema_headers("DeadLetter"),
                    )
                for record in records:
                    await outputs["status"].send(
                        key=record.evseUid,
                        value=record.__dict__,
                        partition=status_partition(record, partitions),
                        timestamp=message.timestamp,
                        headers=avro.schema_headers("ConnectorStatus"),
                        callback=produced,
                    )
                self.positions[(message.topic, message.partition)] = message.offset + 1
                self.gaps.processed((message.topic, message.partition), message.offset)

        async def aggregate(stream: Any) -> None:
            async for event in stream.events():
                if not await self._admit(event.message):
                    continue
                started = time.perf_counter()
                await self._fold(event, outputs, dlq)
                for callback in self.on_batch:
                    callback(time.perf_counter() - started, [round(event.message.timestamp * 1000)])

        app.agent(raw, name="normalize")(normalize)
        app.agent(status, name="aggregate")(aggregate)
        agent_topics = {*RAW_TOPICS.values(), CONNECTOR_STATUS}

        def commit_limit(topic: str, partition: int, offset: int) -> int | None:
            if topic not in agent_topics:
                return offset
            due = self.gaps.due.get((topic, partition))
            return None if due is None else min(offset, due)

        limit_commits(app, commit_limit)
        deliver_in_order(app, agent_topics)

    async def _admit(self, message: Any) -> bool:
        """Whether the agent processes ``message`` now: an event past the offset due means
        Faust dropped records of the partition after delivering them, so the partition is
        sought back to the offset due and events are skipped until it arrives
        (:class:`streams.faust_transport.ProcessingGaps`)."""
        slot = (message.topic, message.partition)
        verdict = self.gaps.verdict(slot, message.offset)
        if verdict is Verdict.PROCESS:
            return True
        if verdict is Verdict.SEEK:
            due = self.gaps.due[slot]
            log.warning(
                "%s[%d]: offset %d reached the agent where %d was due; seeking back to %d",
                slot[0],
                slot[1],
                message.offset,
                due,
                due,
            )
            try:
                await self.app.consumer.seek(message.tp, due)
            except Exception as exc:  # revoked meanwhile: its next owner starts from the commits
                log.warning("%s[%d]: seek back failed (%s: %s)", slot[0], slot[1], type(exc).__name__, exc)
        return False

    async def _fold(self, event: Any, outputs: dict[str, Any], dlq: Any) -> None:
        message = event.message
        partition, offset = message.partition, message.offset
        timestamp = round(message.timestamp * 1000)
        if self._rebuild:
            self._rebuild_totals()
        try:
            record = construct_status(avro.decode_resolved("ConnectorStatus", message.value or b"", message.headers))
        except Exception as exc:  # only stage 1 should write here: dead-letter anything else
            from .adapters import Rejection

            meta = self._meta(partition)
            if offset > meta["o"]:
                meta["k"]["rejected"] = meta["k"].get("rejected", 0) + 1
                self._save_meta(partition, meta, offset)
            rejection = Rejection("malformed_avro", f"not a ConnectorStatus record: {type(exc).__name__}: {exc}")
            await dlq.send(
                key=message.key,
                value=dead_letter(_Message(message, timestamp), None, rejection, "aggregate"),
                partition=partition,
                headers=avro.schema_headers("DeadLetter"),
            )
            self.processed[partition] = offset
            self.gaps.processed((message.topic, partition), offset)
            return
        if timestamp > self.stream_times.get(partition, -1):
            self.stream_times[partition] = timestamp
        if record.scope == Scope.CHARGE_POINT:
            station = record.evseUid
            targets = [uid for uid in self._uids() if charge_point_evse(uid, station)]
        else:
            targets = [record.evseUid]
        unmatched = not targets
        for uid in targets:
            unmatched = await self._apply(uid, record, partition, offset, timestamp, outputs) or unmatched
        if unmatched:
            meta = self._meta(partition)
            if offset > meta["o"]:
                meta["k"]["evseScopeUnmatched"] = meta["k"].get("evseScopeUnmatched", 0) + 1
                self._save_meta(partition, meta, offset)
        self.processed[partition] = offset
        self.gaps.processed((message.topic, partition), offset)

    async def _apply(self, uid: str, record: Any, partition: int, offset: int, timestamp: int, outputs: Any) -> bool:
        """Fold ``record`` into EVSE ``uid``; True when the record had nothing to apply to."""
        cached = self._cache.get(uid)
        if cached is None:
            stored = self.table.get(uid)
            if stored is not None:
                entry = _entry(stored)
                cached = (EvseState.from_json(entry["s"]), entry["k"], entry["o"])
        if cached is not None and offset <= cached[2]:
            return False  # redelivered: this EVSE already reflects it
        evse, counters = (cached[0], dict(cached[1])) if cached is not None else (new_evse(record), {})
        outcome = apply_record(evse, record, self.policy)
        if cached is None and not evse.connectors:
            return True  # an EVSE-wide update for an EVSE never seen: nothing to keep
        totals = self.counters.setdefault(partition, dict.fromkeys(COUNTERS, 0))
        for name, n in outcome.counters.items():
            counters[name] = counters.get(name, 0) + n
            totals[name] = totals.get(name, 0) + n
        self._cache[uid] = (evse, counters, offset)
        self.table[uid] = orjson.dumps(
            {"s": evse.to_json(), "k": counters, "o": offset, "t": timestamp, "p": partition}
        )
        ts = timestamp / 1000
        for change in outcome.changes:
            await outputs["changes"].send(
                key=uid,
                value=change_record(change),
                partition=partition,
                timestamp=ts,
                headers=avro.schema_headers("ConnectorChange"),
            )
        for window in outcome.closed_windows:
            await outputs["windows"].send(
                key=uid,
                value=window,
                partition=partition,
                timestamp=ts,
                headers=avro.schema_headers("EvseAvailabilityWindow"),
            )
        if outcome.evse_changed or outcome.changes or outcome.closed_windows:
            stream_time = self.stream_times.get(partition)
            await outputs["availability"].send(
                key=uid,
                value=availability(evse, stream_time, self.policy),
                partition=partition,
                timestamp=None if stream_time is None else stream_time / 1000,
                headers=avro.schema_headers("EvseAvailability"),
            )
        return False

    def _meta(self, partition: int) -> dict[str, Any]:
        stored = self.table.get(f"{META_PREFIX}{partition}")
        return _entry(stored) if stored is not None else {"o": -1, "k": {}}

    def _save_meta(self, partition: int, meta: dict[str, Any], offset: int) -> None:
        before = self._meta(partition)["k"]
        totals = self.counters.setdefault(partition, dict.fromkeys(COUNTERS, 0))
        for name, n in meta["k"].items():
            totals[name] = totals.get(name, 0) + n - before.get(name, 0)
        meta["o"] = offset
        meta["t"] = self.stream_times.get(partition)
        self.table[f"{META_PREFIX}{partition}"] = orjson.dumps(meta)

    def _uids(self) -> list[str]:
        return [key for key in self.table if not key.startswith(META_PREFIX)]

    def _rebuild_totals(self) -> None:
        """Counters and stream times of the partitions held, from the table (after a rebalance)."""
        self._rebuild = False
        counters: dict[int, dict[str, int]] = {}
        times: dict[int, int] = {}
        for key, stored in self.table.items():
            entry = _entry(stored)
            partition = int(key[len(META_PREFIX) :]) if key.startswith(META_PREFIX) else entry["p"]
            if entry.get("t") is not None:
                times[partition] = max(times.get(partition, -1), entry["t"])
            totals = counters.setdefault(partition, dict.fromkeys(COUNTERS, 0))
            for name, n in entry["k"].items():
                totals[name] = totals.get(name, 0) + n
        self.counters = counters
        for partition, stream_time in times.items():
            self.stream_times[partition] = max(self.stream_times.get(partition, -1), stream_time)

    async def _revoked(self, app: Any, revoked: Any, **_: Any) -> None:
        for tp in revoked:
            self.gaps.forget((tp.topic, tp.partition))
        self._cache.clear()
        self._rebuild = True

    async def _rebalanced(self, app: Any, **_: Any) -> None:
        self._cache.clear()
        self._rebuild = True

    # -- the Engine interface ---------------------------------------------------------------
    async def start(self) -> None:
        specs = topic_specs(self.settings.app_id, int(self.settings.window_retention_seconds * 1000))
        specs.append(TopicSpec(f"{self.settings.app_id}-{TABLE}-changelog", compacted=True))
        await ensure_topics(self.bootstrap, specs, self.settings.partitions, self.settings.replication_factor)
        self._build()
        await self.app.start()
        self.tasks = [asyncio.create_task(self._watch(), name="faust")]
        deadline = time.monotonic() + 120
        while not self.app.consumer.assignment():  # joined, partitions assigned, tables recovered
            if time.monotonic() > deadline:
                raise TimeoutError("the Faust app got no partitions within 120 s")
            if self.app.crashed:
                raise RuntimeError(f"the Faust app crashed while starting: {self.app.crash_reason}")
            await asyncio.sleep(0.05)

    async def _watch(self) -> None:
        while not self.app.crashed:
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the Faust app crashed: {self.app.crash_reason}")

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.app is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.app.stop(), 30)
        if self._scratch is not None:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)

    async def wait_processed(self, raw_end_offsets: dict[tuple[str, int], int], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.app.crashed:
                raise RuntimeError(f"the Faust app crashed: {self.app.crash_reason}")
            stage1 = all(self.positions.get(slot, 0) >= end for slot, end in raw_end_offsets.items())
            if stage1:
                await self.app.producer.flush()
                if all(self.processed.get(p, -1) >= last for p, last in self.produced.items()):
                    await self.app.producer.flush()  # the last records' outputs, acknowledged
                    return
            await asyncio.sleep(0.02)
        raise TimeoutError("pipeline did not finish processing in time")

    def stats(self) -> dict[str, Any]:
        totals = dict.fromkeys(COUNTERS, 0)
        rejected = 0
        for counters in self.counters.values():
            for name, n in counters.items():
                if name == "rejected":
                    rejected += n
                else:
                    totals[name] = totals.get(name, 0) + n
        s1 = self.normalizer.stats
        by_kind = dict(s1.rejectedByKind)
        if rejected:
            by_kind["malformed_avro"] = by_kind.get("malformed_avro", 0) + rejected
        return {
            "engine": self.name,
            "accepted": totals["accepted"],
            "duplicates": totals["duplicates"],
            "stale": totals["stale"],
            "skipped": s1.skipped,
            "rejected": s1.rejected + rejected,
            "late": totals["late"],
            "removedBySnapshot": totals["removedBySnapshot"],
            "evseScopeUnmatched": totals["evseScopeUnmatched"],
            "rawRecords": s1.rawRecords,
            "statusRecords": s1.statusRecords,
            "skippedByReason": s1.skippedByReason,
            "rejectedByKind": by_kind,
            "warnings": s1.warnings,
            "bySource": s1.bySource,
        }

    def _assigned(self, topic: str) -> list[Any]:
        if self.app is None or self.app.consumer is None:
            return []
        try:
            return [tp for tp in self.app.consumer.assignment() if tp.topic == topic]
        except Exception:
            return []

    def lag(self) -> dict[str, int]:
        consumer = self.app.consumer if self.app is not None else None
        if consumer is None:
            return {"normalize": 0, "aggregate": 0}

        def behind(tps: list[Any], done: Any) -> int:
            total = 0
            for tp in tps:
                with contextlib.suppress(Exception):
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        total += max(0, highwater - done(tp))
            return total

        raw = [tp for topic in RAW_TOPICS.values() for tp in self._assigned(topic)]
        return {
            "normalize": behind(raw, lambda tp: self.positions.get((tp.topic, tp.partition), highwater_of(tp))),
            "aggregate": behind(self._assigned(CONNECTOR_STATUS), lambda tp: self.processed.get(tp.partition, -1) + 1),
        }

    def partitions_owned(self) -> list[int]:
        return sorted(tp.partition for tp in self._assigned(CONNECTOR_STATUS))

    def stream_time(self) -> int | None:
        return max(self.stream_times.values()) if self.stream_times else None

    def problems(self) -> list[str]:
        if self.app is not None and self.app.crashed:
            return [f"the Faust app crashed: {self.app.crash_reason}"]
        return []

    def table_sizes(self) -> dict[str, int]:
        if self.table is None:
            return {"evse_state": 0, "connector_state": 0}
        evses = sum(1 for key in self.table if not key.startswith(META_PREFIX))
        return {"evse_state": evses, "connector_state": sum(len(e.connectors) for e, _, _ in self._cache.values())}

    def evses(self) -> list[dict[str, Any]]:
        stream_time = self.stream_time()
        views = []
        for key, stored in self.table.items():
            if key.startswith(META_PREFIX):
                continue
            evse = EvseState.from_json(_entry(stored)["s"])
            views.append(availability(evse, stream_time, self.policy))
        return sorted((avro.as_published("EvseAvailability", v) for v in views), key=lambda v: v["evseUid"])


def _entry(stored: Any) -> dict[str, Any]:
    """A table value: the bytes this engine wrote, or the object Faust's table recovery made of
    them (it reads the changelog with its JSON codec)."""
    return stored if isinstance(stored, dict) else orjson.loads(stored)


def highwater_of(tp: Any) -> int:
    """For a partition not processed yet, count nothing as behind (its position is unknown)."""
    return 1 << 62


class _Message:
    """A Faust consumer message with the Kafka timestamp in ms, as the shared stage-1 code reads it."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, message: Any, timestamp_ms: int) -> None:
        self.topic, self.partition, self.offset = message.topic, message.partition, message.offset
        self.key, self.value, self.headers = message.key, message.value, message.headers
        self.timestamp = timestamp_ms
