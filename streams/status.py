"""What a worker says about itself: counters, lag, problems and its Prometheus metrics.

The worker builds a :class:`~streams.interfaces.WorkerStatus` from its engine a few times a
second (:func:`collect_status`) and hands it to its HTTP API process; in a single process
(tests) :class:`LiveStatus` serves the same thing on demand.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .core import COUNTERS
from .interfaces import Engine, WorkerStatus


def _counter(name: str, documentation: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    """One counter family with a sample per label value."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, n in values.items():
        family.add_metric([key], n)
    return family


class _EngineCollector:
    """Reads the engine's live counters at scrape time."""

    def __init__(self, engine: Engine, problems: Any) -> None:
        self.engine = engine
        self.problems = problems

    def collect(self) -> Any:
        engine = self.engine
        stats = engine.stats()
        yield _counter("plugstream_raw_records", "Raw records read, by source", "source", stats.get("bySource", {}))
        yield _counter(
            "plugstream_connector_records",
            "Canonical records by outcome",
            "outcome",
            {outcome: stats[outcome] for outcome in COUNTERS},
        )
        yield _counter(
            "plugstream_dlq_records", "Records sent to plugstream.dlq, by kind", "kind", stats["rejectedByKind"]
        )
        yield _counter("plugstream_skipped", "Skipped reports, by reason", "reason", stats["skippedByReason"])
        yield _counter("plugstream_unreadable_fields", "Secondary fields nulled, by field", "field", stats["warnings"])
        yield _counter(
            "plugstream_unreadable_records",
            "Records that could not be decoded on topics plugstream reads back, by topic",
            "topic",
            stats.get("unreadableByTopic", {}),
        )
        sizes = GaugeMetricFamily("plugstream_table_size", "Entries per table", labels=["table"])
        for table, size in engine.table_sizes().items():
            sizes.add_metric([table], size)
        yield sizes
        lag = GaugeMetricFamily("plugstream_consumer_lag", "Records not yet processed", labels=["consumer"])
        for name, value in engine.lag().items():
            lag.add_metric([name], value)
        yield lag
        owned = GaugeMetricFamily("plugstream_partitions_owned", "connector-status partitions owned")
        owned.add_metric([], len(engine.partitions_owned()))
        yield owned
        problems = self.problems()
        up = GaugeMetricFamily(
            "plugstream_stage_up", "1 while the worker processes what it was given, else 0", labels=["engine"]
        )
        up.add_metric([engine.name], 0 if problems else 1)
        yield up


class WorkerMetrics:
    """The worker's Prometheus registry: engine counters plus batch/latency histograms."""

    def __init__(self, engine: Engine, problems: Any = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(engine, problems or engine.problems))
        batch_seconds = Histogram(
            "plugstream_batch_processing_seconds",
            "Stage-2 batch processing time",
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        record_latency = Histogram(
            "plugstream_record_latency_seconds",
            "Raw record timestamp → its stage-2 batch done (wall clock, display only)",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
        )

        def observe(seconds: float, stamps: list[int]) -> None:
            batch_seconds.observe(seconds)
            if stamps:  # one observation per batch: the newest and oldest record bound it
                now = time.time()
                record_latency.observe(max(0.0, now - max(stamps) / 1000))
                record_latency.observe(max(0.0, now - min(stamps) / 1000))

        engine.on_batch.append(observe)

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def collect_status(engine: Engine, metrics: WorkerMetrics, worker_id: str, problems: list[str]) -> WorkerStatus:
    """The status a worker publishes (``problems``: the engine's plus the worker's own)."""
    return {
        "engine": engine.name,
        "workerId": worker_id,
        "pid": os.getpid(),
        "sentAt": int(time.time() * 1000),
        "stats": engine.stats(),
        "consumerLag": engine.lag(),
        "partitionsOwned": engine.partitions_owned(),
        "streamTime": engine.stream_time(),
        "problems": problems,
        "tableSizes": engine.table_sizes(),
        "metrics": metrics.text(),
    }


class LiveStatus:
    """A :class:`~streams.interfaces.StatusSource` reading an engine in this process."""

    attached = True

    def __init__(self, engine: Engine, worker_id: str = "local") -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.metrics = WorkerMetrics(engine)

    def latest(self) -> WorkerStatus:
        return collect_status(self.engine, self.metrics, self.worker_id, self.engine.problems())

    def age_seconds(self) -> float:
        return 0.0
