"""W3C Trace Context (``traceparent``) for callers that cross processes by hand.

``inject`` writes the current callspan span into a carrier (HTTP headers, a message's metadata);
``extract`` reads one back; ``remote_parent`` makes it the parent of traced calls in a block. The
remote parent follows the current task's context (``contextvars``), not the thread, so a block
inside a coroutine never leaks into other tasks. Parsing follows the W3C recommendation: an
invalid header is ignored (a new trace starts), never an error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass

from . import _callspan

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


@dataclass(frozen=True)
class RemoteSpan:
    """A span context received from another process."""

    trace_id: int
    span_id: int
    sampled: bool

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"


def inject(carrier: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Write ``traceparent`` for the current traced call into ``carrier`` (a new dict if None).

    Outside any traced call the carrier is left unchanged.
    """
    if carrier is None:
        carrier = {}
    current = _callspan.current_span()
    if current is not None:
        trace_id, span_id, sampled = current
        carrier["traceparent"] = RemoteSpan(trace_id, span_id, sampled).traceparent
    return carrier


def extract(carrier: Mapping[str, str] | str) -> RemoteSpan | None:
    """Read a ``traceparent`` (a header value, or a carrier holding one); None if absent or
    invalid."""
    value: str | None
    if isinstance(carrier, str):
        value = carrier
    else:
        value = next((v for k, v in carrier.items() if k.lower() == "traceparent"), None)
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    # Version ff is invalid; version 00 has nothing after the flags.
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return RemoteSpan(trace_id, span_id, bool(int(flags_hex, 16) & 1))


@contextlib.contextmanager
def remote_parent(
    carrier: Mapping[str, str] | str | RemoteSpan | None,
) -> Iterator[RemoteSpan | None]:
    """Make the span in ``carrier`` the parent of traced calls inside the block.

    Does nothing (the block's calls start a new trace) when there is no valid ``traceparent``.
    """
    remote = carrier if isinstance(carrier, RemoteSpan) else extract(carrier or {})
    if remote is None:
        yield None
        return
    token = _callspan.set_remote_parent(remote.trace_id, remote.span_id, remote.sampled)
    try:
        yield remote
    finally:
        _callspan.reset_remote_parent(token)
