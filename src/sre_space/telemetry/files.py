"""Reading spans from a file or stdin, whatever the format.

``read_spans(path_or_dash)`` sniffs the content, plain or gzip:

- OTLP JSON: an ``ExportTraceServiceRequest``/``TracesData`` object, or one per
  line (the Collector's file exporter writes JSON lines);
- Jaeger JSON: ``{"data": [...]}`` (v1 API, UI download), a bare trace, a list
  of traces, or ``{"result": {...}}`` (v3 API), one document or one per line;
- OTLP protobuf: a serialized ``ExportTraceServiceRequest``/``TracesData``.

Anything else raises :class:`~sre_space.telemetry.otlp.DecodeFailure`.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sre_space.telemetry.jaeger import decode_jaeger, is_jaeger
from sre_space.telemetry.model import Span
from sre_space.telemetry.otlp import Decoded, DecodeFailure, decode_json, decode_protobuf, loads

GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path_or_dash: str | Path) -> bytes:
    """The file's bytes (``-``: stdin), inflated if gzip."""
    stdin = str(path_or_dash) == "-"
    data = sys.stdin.buffer.read() if stdin else Path(path_or_dash).read_bytes()
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DecodeFailure(f"invalid gzip: {exc}") from None
    return data


def decode_document(doc: Any) -> Decoded:
    """One parsed JSON document: OTLP or any Jaeger shape."""
    if isinstance(doc, Mapping) and ("resourceSpans" in doc or "resource_spans" in doc):
        return decode_json(doc)
    if is_jaeger(doc):
        return decode_jaeger(doc)
    if isinstance(doc, list):  # a list of OTLP requests
        out = Decoded()
        for item in doc:
            out.extend(decode_document(item))
        return out
    if isinstance(doc, Mapping) and not doc:
        return Decoded()
    raise DecodeFailure("JSON is neither OTLP (resourceSpans) nor Jaeger (data, result, spans)")


def _json_documents(data: bytes) -> Iterator[Any]:
    try:
        yield loads(data)
        return
    except DecodeFailure as whole:
        lines = [line for line in data.splitlines() if line.strip()]
        if len(lines) < 2:
            raise whole from None
    for n, line in enumerate(lines, 1):
        try:
            yield loads(line)
        except DecodeFailure as exc:
            raise DecodeFailure(f"line {n}: {exc}") from None


def decode_bytes(data: bytes) -> Decoded:
    """Spans of a payload in any supported format (already inflated)."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"{", b"["):
        out = Decoded(nbytes=len(data))
        for doc in _json_documents(data):
            part = decode_document(doc)
            out.spans.extend(part.spans)
            for reason in part.reasons:
                out.reject(reason, 0)
            out.rejected += part.rejected
        return out
    if not data.strip():
        return Decoded()
    try:
        return decode_protobuf(data)
    except DecodeFailure:
        raise DecodeFailure(
            "not OTLP JSON, Jaeger JSON, or an OTLP protobuf ExportTraceServiceRequest"
        ) from None


def read_file(path_or_dash: str | Path) -> Decoded:
    """Spans of a file (``-``: stdin), with the count of spans that were unusable."""
    return decode_bytes(read_bytes(path_or_dash))


def read_spans(path_or_dash: str | Path) -> list[Span]:
    """Spans of a file (``-``: stdin): OTLP JSON/protobuf or Jaeger JSON, plain or gzip."""
    return list(read_file(path_or_dash).spans)


__all__ = ["decode_bytes", "decode_document", "read_bytes", "read_file", "read_spans"]
