"""Pipeline throughput with and without HTTP load on the worker's API, same log, same run.

    python bench/api_load.py [--records 50000] [--evses 2000] [--rounds 2] [--readers 25]
                             [--stalled 25] [--concurrency 4]

The native worker (``plugstream worker``, default settings: its HTTP API runs in its own
process) processes the same backlog as in ``bench/pipeline.py``, once idle and once while
loopback HTTP load runs for the whole processing time: ``--readers`` live-stream readers
(``/api/stream``), ``--stalled`` stream sockets that send a request and never read, and
``--concurrency`` loops requesting ``/api/evse?limit=100`` back to back. Prints both
throughputs, the loss, and the ``/api/evse`` latency percentiles measured while the pipeline
was busy. Targets: loss <= 10 %, p99 < 100 ms.

The load comes from a process of its own at the API process's CPU priority (nice 10, as
``PLUGSTREAM_API_NICE``): in production the clients are other machines, and on this one a
Python client reading 25 streams would otherwise compete with the pipeline itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pipeline
from aiohttp import ClientSession, ClientTimeout

from streams.simulate import make_log


class Load:
    """Bounded loopback HTTP load against one API port; records /api/evse latencies."""

    def __init__(self, readers: int, stalled: int, concurrency: int) -> None:
        self.readers, self.stalled, self.concurrency = readers, stalled, concurrency
        self.latencies: list[float] = []
        self.errors = 0
        self.events = 0

    async def __call__(self, port: int) -> None:
        base = f"http://127.0.0.1:{port}"
        async with ClientSession(timeout=ClientTimeout(total=None, sock_read=None)) as http:
            while True:  # the API process may still be loading its view
                try:
                    async with http.get(f"{base}/api/health") as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                await asyncio.sleep(0.1)
            tasks = [asyncio.create_task(self._reader(http, base)) for _ in range(self.readers)]
            tasks += [asyncio.create_task(self._stalled(port)) for _ in range(self.stalled)]
            tasks += [asyncio.create_task(self._requests(http, base)) for _ in range(self.concurrency)]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _reader(self, http: ClientSession, base: str) -> None:
        async with http.get(f"{base}/api/stream") as response:
            async for chunk in response.content.iter_any():
                self.events += chunk.count(b"event: evse")

    async def _stalled(self, port: int) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.Event().wait()  # never read: the server's buffers for it fill up
        finally:
            writer.close()

    async def _requests(self, http: ClientSession, base: str) -> None:
        while True:
            started = time.perf_counter()
            try:
                async with http.get(f"{base}/api/evse?limit=100") as response:
                    await response.read()
                    if response.status != 200:
                        self.errors += 1
            except OSError:
                self.errors += 1
            self.latencies.append((time.perf_counter() - started) * 1000)


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 2 else float("nan")


class LoadProcess:
    """``Load`` in a separate niced process; its figures come back in a JSON file."""

    def __init__(self, readers: int, stalled: int, concurrency: int) -> None:
        self.options = [str(readers), str(stalled), str(concurrency)]
        self.latencies: list[float] = []
        self.errors = self.events = 0

    async def __call__(self, port: int) -> None:
        import json
        import os
        import signal
        import tempfile

        handle, out = tempfile.mkstemp(suffix=".json")
        os.close(handle)
        process = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--generate", str(port), out, *self.options, preexec_fn=lambda: os.nice(10)
        )
        try:
            await process.wait()
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
                await process.wait()
            with contextlib.suppress(ValueError, OSError):
                data = json.loads(Path(out).read_text())
                self.latencies, self.errors, self.events = data["latencies"], data["errors"], data["events"]
            Path(out).unlink(missing_ok=True)


def generate(port: int, out: str, readers: int, stalled: int, concurrency: int) -> None:
    """Run the load until SIGINT, then write what it measured."""
    import json
    import signal

    load = Load(readers, stalled, concurrency)

    async def run() -> None:
        task = asyncio.current_task()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await load(port)

    asyncio.run(run())
    Path(out).write_text(json.dumps({"latencies": load.latencies, "errors": load.errors, "events": load.events}))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--evses", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--readers", type=int, default=25)
    parser.add_argument("--stalled", type=int, default=25)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    log = pipeline.encoded_log(make_log(args.evses, args.records, seed=3))
    _, reference = pipeline.job_alone(log)
    print(
        f"{len(log):,} raw records, native worker; load: {args.readers} stream readers, {args.stalled} stalled"
        f" stream sockets, {args.concurrency} /api/evse?limit=100 loops"
    )
    idle, loaded, latencies, requests, events = [], [], [], 0, 0
    for number in range(1, args.rounds + 1):
        runs = ["idle", "loaded"] if number % 2 else ["loaded", "idle"]
        for kind in runs:
            load = LoadProcess(args.readers, args.stalled, args.concurrency) if kind == "loaded" else None
            result = await pipeline.run_contestant("native", log, reference, during=load)
            if not result.exact:
                raise SystemExit(f"tables differ from the reference: {result.note}")
            (loaded if load else idle).append(result.rate)
            if load is not None:
                latencies += load.latencies
                requests += len(load.latencies)
                events += load.events
                errors = load.errors
                print(
                    f"round {number} {kind}: {result.rate:,.0f} raw/s, {len(load.latencies)} requests, {errors} errors"
                )
            else:
                print(f"round {number} {kind}: {result.rate:,.0f} raw/s")
    without, with_load = statistics.median(idle), statistics.median(loaded)
    loss = 1 - with_load / without
    print()
    print("| run | raw records/s (median) |")
    print("|---|---:|")
    print(f"| no HTTP load | {without:,.0f} |")
    print(f"| under HTTP load | {with_load:,.0f} |")
    print(f"\nthroughput loss under load: {loss * 100:.1f}% (target <= 10%)")
    print(
        f"/api/evse?limit=100 while busy: {requests:,} requests, p50 {pct(latencies, 50):.1f} ms,"
        f" p99 {pct(latencies, 99):.1f} ms (target < 100 ms); {events:,} stream events delivered"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        generate(int(sys.argv[2]), sys.argv[3], *(int(v) for v in sys.argv[4:7]))
    else:
        asyncio.run(main())
