"""State stores: the memory dict and the RocksDB store behave alike; RocksDB keeps a checkpoint."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streams.config import Settings
from streams.core import EvseState, Policy, apply_record, new_evse
from streams.store import CHECKPOINT_KEY, MemoryStore, RocksStore, StoreError, StoreFactory, parse_store_url

from .test_core import rec

META = orjson.dumps({"offset": 41, "counters": {"accepted": 3}, "streamTime": 1000, "connectors": 2})


def evse_with(uid: str, *connectors: str) -> EvseState:
    first = rec(connectors[0], "AVAILABLE", 1, evse=uid)
    evse = new_evse(first)
    for minute, connector in enumerate(connectors, start=1):
        apply_record(evse, rec(connector, "AVAILABLE", minute, evse=uid), Policy())
    return evse


def as_bytes(evse: EvseState) -> bytes:
    return orjson.dumps(evse.to_json())


@pytest.fixture(params=["memory", "rocksdb"])
def store(request, tmp_path: Path):
    made = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "p0", cache_evses=2)
    yield made
    made.close()


def test_put_get_values_and_len_agree(store) -> None:
    states = {f"ocpi:E{i}": evse_with(f"ocpi:E{i}", f"c{i}a", f"c{i}b") for i in range(5)}
    for uid, evse in states.items():
        assert store.get(uid) is None
        store.put(uid, evse)
    store.commit({uid: as_bytes(evse) for uid, evse in states.items()}, META, changelog_offset=10)
    assert len(store) == 5
    for uid, evse in states.items():
        assert store.get(uid) == evse
    assert sorted(e.evse_uid for e in store.values()) == sorted(states)


def test_load_raw_applies_changelog_bytes_and_tombstones(store) -> None:
    evse = evse_with("ocpi:E1", "c1")
    store.load_raw(b"ocpi:E1", as_bytes(evse))
    store.load_raw(b"ocpi:E2", as_bytes(evse_with("ocpi:E2", "c2")))
    store.load_raw(b"ocpi:E2", None)
    assert store.get("ocpi:E1") == evse
    assert store.get("ocpi:E2") is None
    assert len(store) == 1


def test_rocksdb_survives_reopen_with_its_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "p3"
    store = RocksStore(path, cache_evses=1)
    assert store.checkpoint() == (-1, None)
    evses = {f"ocpi:E{i}": evse_with(f"ocpi:E{i}", "c1", "c2") for i in range(4)}
    for uid, evse in evses.items():
        store.put(uid, evse)
    store.commit({uid: as_bytes(e) for uid, e in evses.items()}, META, changelog_offset=99)
    store.close()

    again = RocksStore(path, cache_evses=1)
    offset, meta = again.checkpoint()
    assert offset == 99
    assert meta is not None and meta["offset"] == 41 and meta["counters"] == {"accepted": 3} and meta["evses"] == 4
    assert len(again) == 4
    assert {e.evse_uid: e for e in again.values()} == evses
    assert CHECKPOINT_KEY not in {e.evse_uid.encode() for e in again.values()}
    again.close()


def test_rocksdb_cache_is_bounded_but_never_drops_uncommitted_changes(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "p0", cache_evses=2)
    evses = {f"ocpi:E{i}": evse_with(f"ocpi:E{i}", "c1") for i in range(6)}
    for uid, evse in evses.items():
        store.put(uid, evse)
    assert len(store._cache) == 6  # pinned: nothing is written until the batch commits
    store.commit({uid: as_bytes(e) for uid, e in evses.items()}, META, changelog_offset=5)
    assert len(store._cache) == 2
    # a state mutated after being read back is the object the next commit writes
    evse = store.get("ocpi:E0")
    assert evse is not None
    apply_record(evse, rec("c1", "CHARGING", 9, evse="ocpi:E0"), Policy())
    store.commit({"ocpi:E0": as_bytes(evse)}, META, changelog_offset=6)
    for i in range(1, 6):
        store.get(f"ocpi:E{i}")  # push E0 out of the cache
    store.commit({}, META, changelog_offset=6)
    reread = store.get("ocpi:E0")
    assert reread is not None and reread.connectors["c1"].status == "CHARGING"
    store.close()


def test_rocksdb_wipe_forgets_everything(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "p0")
    store.put("ocpi:E1", evse_with("ocpi:E1", "c1"))
    store.commit({"ocpi:E1": as_bytes(evse_with("ocpi:E1", "c1"))}, META, changelog_offset=3)
    store.wipe()
    assert (len(store), store.checkpoint(), store.get("ocpi:E1")) == (0, (-1, None), None)
    store.close()


def test_a_second_worker_on_the_same_directory_gets_a_clear_error(tmp_path: Path) -> None:
    first = RocksStore(tmp_path / "p0")
    with pytest.raises(StoreError, match="PLUGSTREAM_STATE_DIR"):
        RocksStore(tmp_path / "p0")
    first.close()


def test_store_urls_and_settings() -> None:
    assert parse_store_url("memory://") == ("memory", None)
    assert parse_store_url("rocksdb://") == ("rocksdb", None)
    assert parse_store_url("rocksdb:///var/lib/plugstream") == ("rocksdb", Path("/var/lib/plugstream"))
    for bad in ("redis://x", "rocksdb", "memory:///tmp"):
        with pytest.raises(StoreError):
            parse_store_url(bad)
    with pytest.raises(ValueError, match="memory:// or rocksdb://"):
        Settings(store="sqlite://")
    with pytest.raises(ValueError, match="standby_replicas needs store=rocksdb://"):
        Settings(standby_replicas=1)
    assert Settings(store="rocksdb://", standby_replicas=1).standby_replicas == 1


def test_factory_puts_each_worker_in_its_own_directory(tmp_path: Path) -> None:
    one = StoreFactory("rocksdb://", tmp_path, "app", "6066", 10)
    two = StoreFactory(f"rocksdb://{tmp_path / 'elsewhere'}", tmp_path, "app", "6067", 10)
    assert one.root == tmp_path / "app-6066"
    assert two.root == tmp_path / "elsewhere" / "app-6067"
    opened = one.open(2)
    assert isinstance(opened, RocksStore) and opened.path == tmp_path / "app-6066" / "p2"
    opened.close()
    one.destroy()
    assert not one.root.exists()
    assert isinstance(StoreFactory("memory://", tmp_path, "app", "1", 10).open(0), MemoryStore)


def test_all_databases_of_a_worker_share_one_memory_budget(tmp_path: Path) -> None:
    """RocksDB's memory is one budget per worker, not a cache and memtables per partition."""
    budget_bytes = 4 * 1024 * 1024
    factory = StoreFactory("rocksdb://", tmp_path, "app", "6066", 10, memory_bytes=budget_bytes)
    stores = [factory.open(p) for p in range(4)]
    assert all(isinstance(s, RocksStore) for s in stores)
    budget = stores[0].budget
    assert all(s.budget is budget for s in stores) and budget.memory_bytes == budget_bytes

    value = bytes(range(256)) * 8  # 2 KiB per state: 4 × 3,000 of them is 24 MiB, 6× the budget
    for n, store in enumerate(stores):
        for start in range(0, 3000, 500):
            store.commit({f"ocpi:E{i}": value for i in range(start, start + 500)}, META, changelog_offset=start)
        assert store.db.get(b"ocpi:E0") == value  # read back: blocks and index go through the cache
        # a soft limit (memtables flush in the background), far from the 4 × 16 MiB the
        # per-database caches and memtables could take before
        assert budget.usage() <= budget_bytes * 2, f"after store {n}: {budget.usage():,} bytes"
    for store in stores:
        store.close()


def test_memory_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLUGSTREAM_STORE_MEMORY_MB", "24")
    monkeypatch.setenv("PLUGSTREAM_FETCH_MAX_BYTES", "524288")
    settings = Settings()
    assert (settings.store_memory_mb, settings.fetch_max_bytes) == (24, 524288)
    monkeypatch.setenv("PLUGSTREAM_STORE_MEMORY_MB", "1")
    with pytest.raises(ValueError, match="store_memory_mb"):
        Settings()
