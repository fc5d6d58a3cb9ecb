"""A Faust transport whose end offsets come from fetch high watermarks: ``plugstream://``.

Faust reads the end offsets of changelog partitions (``consumer.highwaters``) to decide when
table recovery is done. Its aiokafka driver asks ListOffsets, which the embedded broker
answers with the last batch's base offset + 1 whenever a batch holds more than one record —
so recovery stops early and table state is silently lost after a restart (STACK notes).
This driver answers the same question from a fetch: it seeks just before what ListOffsets
says (the last batch's first record), fetches once, and reads the high watermark the fetch
response carries, which is right on every broker. Everything else is Faust's own aiokafka
driver, unchanged.

Registered through Faust's own transport registry (the ``faust.transports`` entry point in
``pyproject.toml``), so ``broker="plugstream://host:9092"`` selects it; no Faust internals
are patched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

FETCH_TIMEOUT_MS = 2_000


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
    def _new_consumer_thread(self) -> HighwaterConsumerThread:
        return HighwaterConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    """``plugstream://``: Faust's aiokafka transport with exact end offsets."""

    Consumer = Consumer
