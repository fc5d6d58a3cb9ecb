"""Where stage 2 keeps the EVSE states of one input partition: in memory or in RocksDB.

Selected by ``PLUGSTREAM_STORE``:

* ``memory://`` (default) — a dict of live :class:`~streams.core.EvseState` objects. Fastest;
  memory grows with the number of connectors; a restart rebuilds it from the changelog.
* ``rocksdb://`` or ``rocksdb:///some/dir`` — one RocksDB database per partition under
  ``<dir>/<app_id>-<web_port>/p<N>`` (``dir`` defaults to ``PLUGSTREAM_STATE_DIR``). States live
  on disk as their changelog bytes; a bounded cache of ``PLUGSTREAM_STORE_CACHE_EVSES`` hot EVSEs
  stays in memory. The database records which changelog offset it reflects, so a restart
  (or a standby taking over) replays only the changelog's tail. All databases of a worker
  share one memory budget, ``PLUGSTREAM_STORE_MEMORY_MB`` (block cache, memtables, index
  and filter blocks), so RocksDB's memory does not grow with the partitions a worker owns.

The changelog topic stays the source of truth in both cases: a local database is only a
head start, written *after* the changelog is acknowledged, so it is never ahead of it. A
database whose checkpoint lies beyond the changelog's end (the topic was recreated) is
wiped and rebuilt.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson

from .core import EvseState

log = logging.getLogger("plugstream.store")

#: Key of the per-partition checkpoint record in a RocksDB store (never an EVSE uid: those
#: start with their source's name).
CHECKPOINT_KEY = b"\x00checkpoint"


class StoreError(RuntimeError):
    """A state store cannot be opened or used (message says what to change)."""


class PartitionStore(Protocol):
    """EVSE states of one partition. Objects handed out by :meth:`get` are mutated in place by
    the core; :meth:`commit` is called once per batch with every mutated EVSE's bytes."""

    def get(self, uid: str) -> EvseState | None: ...

    def put(self, uid: str, evse: EvseState) -> None:
        """Add a state the store does not hold yet (the caller's ``get`` returned ``None``)."""
        ...

    def values(self) -> Iterator[EvseState]: ...

    def uids_with_prefix(self, prefix: str) -> list[str]:
        """Uids of the states held whose uid starts with ``prefix`` (an OCPP charge point's EVSEs)."""
        ...

    def __len__(self) -> int: ...

    def commit(self, states: dict[str, bytes | None], meta: bytes, changelog_offset: int) -> None: ...

    def checkpoint(self) -> tuple[int, dict[str, Any] | None]: ...

    def load_raw(self, key: bytes, value: bytes | None) -> None: ...

    def wipe(self) -> None: ...

    def close(self) -> None: ...


class MemoryStore:
    """A dict of live states; nothing survives the process (the changelog rebuilds it)."""

    def __init__(self) -> None:
        self.evses: dict[str, EvseState] = {}

    def get(self, uid: str) -> EvseState | None:
        return self.evses.get(uid)

    def put(self, uid: str, evse: EvseState) -> None:
        self.evses[uid] = evse

    def values(self) -> Iterator[EvseState]:
        return iter(list(self.evses.values()))

    def uids_with_prefix(self, prefix: str) -> list[str]:
        return [uid for uid in self.evses if uid.startswith(prefix)]  # rare (charge-point-wide updates)

    def __len__(self) -> int:
        return len(self.evses)

    def commit(self, states: dict[str, bytes | None], meta: bytes, changelog_offset: int) -> None:
        """Nothing to write: the objects are the state."""

    def checkpoint(self) -> tuple[int, dict[str, Any] | None]:
        return -1, None  # nothing local: restore reads the whole changelog

    def load_raw(self, key: bytes, value: bytes | None) -> None:
        uid = key.decode()
        if value is None:
            self.evses.pop(uid, None)
        else:
            self.evses[uid] = EvseState.from_json(orjson.loads(value))

    def wipe(self) -> None:
        self.evses.clear()

    def close(self) -> None:
        self.evses.clear()


def _rocksdict() -> Any:
    try:
        import rocksdict
    except ImportError as exc:  # pragma: no cover - rocksdict is a declared dependency
        raise StoreError("rocksdb:// needs the rocksdict package (pip install rocksdict)") from exc
    return rocksdict


class RocksBudget:
    """One memory budget for every RocksDB database of a worker.

    A block cache of ``memory_bytes`` that memtables are charged to as well (RocksDB's
    write-buffer manager "cost to cache"), with index and filter blocks kept in the same
    cache. Without it each partition's database had its own cache and memtables, so
    RocksDB's share of a worker grew with the number of partitions it owned or stood by for.
    """

    def __init__(self, memory_bytes: int) -> None:
        rocksdict = _rocksdict()
        self.memory_bytes = memory_bytes
        self.cache = rocksdict.Cache(memory_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            memory_bytes // 2, False, self.cache
        )

    def usage(self) -> int:
        """Bytes the cache holds now (blocks plus charged memtables)."""
        return int(self.cache.get_usage())


class RocksStore:
    """One RocksDB database per partition, values in the changelog's own encoding."""

    def __init__(self, path: Path, cache_evses: int = 10_000, budget: RocksBudget | None = None) -> None:
        self.path = path
        self.cache_evses = cache_evses
        self.budget = budget or RocksBudget(16 * 1024 * 1024)
        self._cache: dict[str, EvseState] = {}  # hot states; pinned until the batch commits
        self.db = self._open()
        self._count = self._read_count()

    def _open(self) -> Any:
        rocksdict = _rocksdict()
        self._write_batch = rocksdict.WriteBatch
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        # memtables small enough that several fit the shared budget; a flush when it fills
        options.set_write_buffer_size(min(4 * 1024 * 1024, max(self.budget.memory_bytes // 8, 512 * 1024)))
        options.set_max_write_buffer_number(2)
        options.set_write_buffer_manager(self.budget.write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(self.budget.cache)
        table.set_cache_index_and_filter_blocks(True)
        options.set_block_based_table_factory(table)
        self._options = options
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            return rocksdict.Rdict(str(self.path), options)
        except Exception as exc:
            raise StoreError(
                f"cannot open RocksDB state at {self.path}: {exc}. Is another worker using the same state "
                "directory? Give each worker its own PLUGSTREAM_STATE_DIR (or web port)."
            ) from exc

    def _read_count(self) -> int:
        _, meta = self.checkpoint()
        return int(meta.get("evses", 0)) if meta else 0

    def get(self, uid: str) -> EvseState | None:
        cache = self._cache
        evse = cache.pop(uid, None)
        if evse is None:
            raw = self.db.get(uid.encode())
            if raw is None:
                return None
            evse = EvseState.from_json(orjson.loads(raw))
        cache[uid] = evse  # most recently used last
        return evse

    def put(self, uid: str, evse: EvseState) -> None:
        self._count += 1  # new by contract: get() just looked in the cache and the database
        self._cache[uid] = evse

    def values(self) -> Iterator[EvseState]:
        seen = set()
        for uid, evse in list(self._cache.items()):
            seen.add(uid)
            yield evse
        for key, raw in self.db.items():
            if key == CHECKPOINT_KEY:
                continue
            uid = key.decode()
            if uid not in seen:
                yield EvseState.from_json(orjson.loads(raw))

    def uids_with_prefix(self, prefix: str) -> list[str]:
        found = {uid for uid in self._cache if uid.startswith(prefix)}  # new states live here until commit
        start = prefix.encode()
        for key in self.db.keys(from_key=start):
            if not key.startswith(start):
                break
            found.add(key.decode())
        return sorted(found)

    def __len__(self) -> int:
        return self._count

    def commit(self, states: dict[str, bytes | None], meta: bytes, changelog_offset: int) -> None:
        """Write a batch's states and the changelog offset they reach, atomically; then trim
        the cache (only here, so no object mutated in the batch is evicted before it is written)."""
        batch = self._write_batch(raw_mode=True)
        for uid, value in states.items():
            if value is None:
                batch.delete(uid.encode())
            else:
                batch.put(uid.encode(), value)
        batch.put(CHECKPOINT_KEY, self._checkpoint_value(meta, changelog_offset))
        self.db.write(batch)
        excess = len(self._cache) - self.cache_evses
        if excess > 0:
            for uid in list(self._cache)[:excess]:
                del self._cache[uid]

    def _checkpoint_value(self, meta: bytes, changelog_offset: int) -> bytes:
        return orjson.dumps({"changelogOffset": changelog_offset, "meta": orjson.loads(meta), "evses": self._count})

    def checkpoint(self) -> tuple[int, dict[str, Any] | None]:
        """(changelog offset this database reflects, the partition meta stored with it)."""
        raw = self.db.get(CHECKPOINT_KEY)
        if raw is None:
            return -1, None
        value = orjson.loads(raw)
        return value["changelogOffset"], {**value["meta"], "evses": value.get("evses", 0)}

    def load_raw(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record during restore: bytes in, bytes stored (no parsing)."""
        self._cache.pop(key.decode(), None)
        exists = self.db.get(key) is not None
        if value is None:
            if exists:
                self.db.delete(key)
                self._count -= 1
        else:
            self.db[key] = value
            self._count += not exists

    def wipe(self) -> None:
        """Forget everything local (the changelog is then rebuilt into an empty database)."""
        from rocksdict import Rdict

        self._cache.clear()
        self.db.close()
        Rdict.destroy(str(self.path), self._options)
        self.db = self._open()
        self._count = 0

    def close(self) -> None:
        self._cache.clear()
        self.db.close()


def parse_store_url(url: str) -> tuple[str, Path | None]:
    """``memory://`` → ("memory", None); ``rocksdb://[/dir]`` → ("rocksdb", dir or None)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("memory", "rocksdb"):
        raise StoreError(f"unknown store {url!r}: use memory:// or rocksdb://[/path/to/dir]")
    if scheme == "memory":
        if rest:
            raise StoreError(f"memory:// takes no path, got {url!r}")
        return "memory", None
    return "rocksdb", Path(rest) if rest else None


class StoreFactory:
    """Opens partition stores for one worker (``app_id`` + worker id keep workers apart).

    :meth:`acquire` locks the worker's directory (``<dir>/<app_id>-<worker id>/LOCK``) for the
    life of the process, so a second worker pointed at the same directory fails at start with
    one clear message instead of failing partition by partition.
    """

    def __init__(
        self,
        url: str,
        state_dir: Path,
        app_id: str,
        worker_tag: str,
        cache_evses: int,
        memory_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.kind, custom = parse_store_url(url)
        self.root = (custom or state_dir) / f"{app_id}-{worker_tag}"
        self.cache_evses = cache_evses
        self.memory_bytes = memory_bytes
        self._budget: RocksBudget | None = None
        self._lock: Any = None

    def acquire(self) -> None:
        """Lock this worker's state directory (``rocksdb://`` only); :class:`StoreError` if another
        process holds it."""
        if self.kind != "rocksdb" or self._lock is not None:
            return
        import fcntl
        import os

        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / "LOCK", "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreError(
                f"state directory {self.root} is in use by {holder}; give each worker on this machine its own "
                "PLUGSTREAM_WORKER_ID (or --web-port) or PLUGSTREAM_STATE_DIR"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"worker pid {os.getpid()}")
        handle.flush()
        self._lock = handle

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def persistent(self) -> bool:
        return self.kind == "rocksdb"

    def open(self, partition: int) -> MemoryStore | RocksStore:
        if self.kind == "memory":
            return MemoryStore()
        if self._budget is None:
            self._budget = RocksBudget(self.memory_bytes)
        return RocksStore(self.root / f"p{partition}", self.cache_evses, self._budget)

    def destroy(self) -> None:
        """Delete every local database of this worker (tests, ``--fresh`` runs)."""
        if self.kind == "rocksdb" and self.root.exists():
            shutil.rmtree(self.root)
