"""The engine registry: an engine is chosen by name (``PLUGSTREAM_ENGINE``, ``--engine``).

Engines are imported only when chosen: the Faust engine pulls in faust-streaming, which a
native worker never needs to load.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .interfaces import ENGINE_NAMES, Engine

#: name → "module:class"; every class implements :class:`streams.interfaces.Engine`.
ENGINES: dict[str, str] = {
    "native": "streams.engine:NativeEngine",
    "faust": "streams.faust_app:FaustEngine",
}
assert tuple(ENGINES) == ENGINE_NAMES


class UnknownEngineError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown engine {name!r}; valid engines: {', '.join(ENGINES)}")


def engine_class(name: str) -> type:
    try:
        module, _, attribute = ENGINES[name].partition(":")
    except KeyError:
        raise UnknownEngineError(name) from None
    return getattr(import_module(module), attribute)


def create_engine(settings: Any, bootstrap: Any, group: bool = False, name: str | None = None) -> Engine:
    """The engine ``name`` (default: ``settings.engine``) for this broker."""
    return engine_class(name or settings.engine)(settings, bootstrap, group)
