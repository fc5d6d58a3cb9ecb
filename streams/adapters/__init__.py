"""Source adapters: one module per source behind :class:`SourceAdapter`, and the registry.

``get_adapter("ocpi")`` returns the adapter; an unknown name raises
:class:`UnknownSourceError` whose message lists the valid names.
``normalize_bytes`` is the single entry point the pipeline and the CLI use: bytes in,
records + rejections out, and never an exception other than :class:`Rejection`.
"""

from __future__ import annotations

import logging
from typing import Any

from ..vocabulary import Source
from .base import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    NormalizeContext,
    NormalizeResult,
    Rejection,
    SourceAdapter,
    decode_payload,
)
from .edrv import EdrvAdapter
from .here import HereAdapter
from .ocm import OcmAdapter
from .ocpi import OcpiAdapter
from .ocpp import OcppAdapter

__all__ = [
    "REGISTRY",
    "NormalizeContext",
    "NormalizeResult",
    "Rejection",
    "SourceAdapter",
    "UnknownSourceError",
    "decode_payload",
    "get_adapter",
    "normalize_bytes",
    "normalize_document",
]

log = logging.getLogger(__name__)

REGISTRY: dict[str, SourceAdapter] = {
    adapter.source.value: adapter
    for adapter in (OcpiAdapter(), OcmAdapter(), HereAdapter(), EdrvAdapter(), OcppAdapter())
}


class UnknownSourceError(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown source {self.name!r}; valid sources: {', '.join(sorted(REGISTRY))}"


def get_adapter(name: str | Source) -> SourceAdapter:
    try:
        return REGISTRY[str(name)]
    except KeyError:
        raise UnknownSourceError(str(name)) from None


def normalize_document(source: str | Source, document: Any, ctx: NormalizeContext) -> NormalizeResult:
    """Run one adapter with a last-resort guard: a bug in an adapter becomes a rejection
    (kind ``internal_error``, logged) instead of crashing a worker or stalling a partition."""
    adapter = get_adapter(source)
    try:
        return adapter.normalize(document, ctx)
    except Rejection:
        raise
    except Exception as exc:
        log.exception("adapter %s failed on a document", source)
        raise Rejection("internal_error", f"{type(exc).__name__}: {exc}") from exc


def normalize_bytes(
    source: str | Source,
    raw: bytes,
    ctx: NormalizeContext,
    max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
) -> NormalizeResult:
    return normalize_document(source, decode_payload(raw, max_bytes), ctx)
