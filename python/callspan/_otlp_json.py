"""Reads spans out of OTLP JSON files: the input layer of ``python -m callspan view``.

Accepts what the file exporter writes (JSON lines, one ``ExportTraceServiceRequest`` per line,
as in the OpenTelemetry file-exporter spec), a single pretty-printed request, or a JSON array of
requests. Field names follow the OTLP JSON mapping (lowerCamelCase); the proto3 snake_case
spelling is accepted too. Each span becomes one :class:`CallSpan` with the caller attributes of
the README's span table; nothing here knows about HTML.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

STATUS_CODE_ERROR = 2
# The attributes of the README's span table that the view shows; others are not decoded.
VIEW_ATTRIBUTES = frozenset(
    {
        "code.function.name",
        "caller.function.name",
        "caller.file.path",
        "caller.line.number",
        "caller.class.name",
        "thread.name",
    }
)


class CallSpan(NamedTuple):
    """One traced call, as the view needs it (a tuple: 100,000 of them are made per page)."""

    callee: str  # code.function.name, else the span name
    caller: str | None  # caller.function.name; None when the span has no caller attributes
    caller_file: str | None  # caller.file.path
    caller_line: int | None  # caller.line.number
    caller_class: str | None  # caller.class.name
    thread: str | None  # thread.name
    duration_ns: int
    start_unix_nano: int
    error: bool
    trace_id: str
    span_id: str


class OtlpJsonError(ValueError):
    """The file is not OTLP JSON; the message names the file and what was wrong."""


def _get(obj: dict, camel: str, snake: str, default=None):
    value = obj.get(camel)
    if value is None:
        value = obj.get(snake, default)
    return value


def decode_any_value(value: dict):
    """The Python value of an OTLP JSON ``AnyValue`` (ints arrive as strings, per the mapping)."""
    for key in ("stringValue", "string_value"):
        if key in value:
            return value[key]
    for key in ("intValue", "int_value"):
        if key in value:
            return int(value[key])
    for key in ("doubleValue", "double_value"):
        if key in value:
            return float(value[key])
    for key in ("boolValue", "bool_value"):
        if key in value:
            return bool(value[key])
    return None


def _is_error(status: dict | None) -> bool:
    if not status:
        return False
    code = status.get("code", 0)
    return code == STATUS_CODE_ERROR or code == "STATUS_CODE_ERROR"


def spans_of_request(request: dict) -> Iterator[CallSpan]:
    """Every span of one ``ExportTraceServiceRequest`` in its JSON form."""
    for resource_spans in _get(request, "resourceSpans", "resource_spans", ()):
        scopes = _get(resource_spans, "scopeSpans", "scope_spans") or resource_spans.get(
            "instrumentationLibrarySpans", ()
        )
        for scope_spans in scopes:
            for span in scope_spans.get("spans", ()):
                attributes = {
                    kv["key"]: decode_any_value(kv.get("value", {}))
                    for kv in span.get("attributes", ())
                    if kv["key"] in VIEW_ATTRIBUTES
                }
                start = int(_get(span, "startTimeUnixNano", "start_time_unix_nano", 0))
                end = int(_get(span, "endTimeUnixNano", "end_time_unix_nano", start))
                caller_line = attributes.get("caller.line.number")
                yield CallSpan(
                    callee=attributes.get("code.function.name") or span.get("name", "?"),
                    caller=attributes.get("caller.function.name"),
                    caller_file=attributes.get("caller.file.path"),
                    caller_line=int(caller_line) if caller_line is not None else None,
                    caller_class=attributes.get("caller.class.name"),
                    thread=attributes.get("thread.name"),
                    duration_ns=max(0, end - start),
                    start_unix_nano=start,
                    error=_is_error(span.get("status")),
                    trace_id=_get(span, "traceId", "trace_id", ""),
                    span_id=_get(span, "spanId", "span_id", ""),
                )


def _requests(document, path: Path) -> list[dict]:
    if isinstance(document, list):
        requests = document
    else:
        requests = [document]
    for request in requests:
        if not isinstance(request, dict) or not (
            "resourceSpans" in request or "resource_spans" in request
        ):
            raise OtlpJsonError(
                f"{path}: not OTLP JSON traces (expected objects with 'resourceSpans', "
                "as the file exporter writes: CALLSPAN_EXPORTER=file)"
            )
    return requests


def read_spans(path: str | Path) -> Iterator[CallSpan]:
    """The spans in an OTLP JSON (or JSON lines) file, in file order."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        documents = [json.loads(text)] if text.strip() else []
    except json.JSONDecodeError:
        documents = None  # more than one document: JSON lines
    if documents is not None:
        for document in documents:
            for request in _requests(document, path):
                yield from spans_of_request(request)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as error:
            raise OtlpJsonError(f"{path}, line {number}: not JSON ({error.msg})") from None
        for request in _requests(document, path):
            yield from spans_of_request(request)
