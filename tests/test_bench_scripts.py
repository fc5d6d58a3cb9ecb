"""The bench scripts import against today's package (a renamed helper once broke the Quix
contestant only when the bench ran), and stay runnable: nothing runs at import."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def load(script: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = f"bench_{script.removesuffix('.py')}"
    spec = importlib.util.spec_from_file_location(name, BENCH / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up
    monkeypatch.setattr(sys, "path", list(sys.path))  # the scripts put the repo on it
    spec.loader.exec_module(module)  # imports resolve; the work sits behind ``__main__``
    return module


@pytest.mark.parametrize("script", sorted(path.name for path in BENCH.glob("*.py")))
def test_bench_script_imports(script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load(script, monkeypatch).__doc__  # and it says what it measures


def test_quix_contestant_folds_with_the_canonical_constructor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Quix contestant builds canonical records with the same constructor stage 2 uses."""
    from streams.models import construct_status

    assert load("contestants.py", monkeypatch).construct_status is construct_status
