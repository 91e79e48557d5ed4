"""``callspan.configure()``: keyword arguments that take precedence over the environment.

Every setting has an environment variable (see the README table); a keyword argument here wins
over the signal-specific variable, which wins over the generic one, which wins over the default.
Values are handed to the Rust configuration module as strings, so that one parser applies to
both sources and a bad value produces the same warning naming the setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from . import _callspan

# keyword argument -> the Rust configuration key it sets
_KEYS = {
    "disabled": "disabled",
    "service_name": "service_name",
    "resource_attributes": "resource_attributes",
    "sampler": "sampler",
    "sampler_arg": "sampler_arg",
    "exporter": "exporter",
    "file": "file",
    "endpoint": "endpoint",
    "protocol": "protocol",
    "headers": "headers",
    "compression": "compression",
    "timeout_ms": "timeout_ms",
    "insecure": "insecure",
    "certificate": "certificate",
    "client_key": "client_key",
    "client_certificate": "client_certificate",
    "schedule_delay_ms": "schedule_delay_ms",
    "export_timeout_ms": "export_timeout_ms",
    "max_queue_size": "max_queue_size",
    "max_export_batch_size": "max_export_batch_size",
    "attribute_value_length_limit": "attribute_value_length_limit",
    "span_attribute_count_limit": "span_attribute_count_limit",
    "span_event_count_limit": "span_event_count_limit",
    "sample": "sample",
    "max_spans_per_second": "max_spans_per_second",
    "min_duration": "min_duration",
    "capture": "capture",
    "stack_depth": "stack_depth",
    "otel_context": "otel_context",
}


def _callspan_form(key: str, value: Any) -> Any:
    """Python-friendly forms of the callspan settings, as their variables spell them."""
    if key == "sample" and isinstance(value, Mapping):
        # Globs are written as they are (CALLSPAN_SAMPLE is not percent-encoded).
        return ",".join(f"{pattern}={rate}" for pattern, rate in value.items())
    if key == "min_duration" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{int(value * 1e9)}ns"  # seconds, like every timeout in Python
    if key == "capture" and isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(value)
    return value


def _key_values(value: Mapping[str, Any]) -> str:
    # The same `k=v,k2=v2` form as OTEL_RESOURCE_ATTRIBUTES, with the separators escaped.
    return ",".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in value.items())


def _as_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return _key_values(value)
    if isinstance(value, os.PathLike):
        return os.fsdecode(value)
    return str(value)


def configure(**settings: Any) -> None:
    """Configure callspan in code; each keyword wins over its environment variable.

    Keywords: ``disabled``, ``service_name``, ``resource_attributes`` (dict), ``sampler``,
    ``sampler_arg``, ``exporter`` (``otlp``, ``console``, ``file``, ``none``), ``file``,
    ``endpoint``, ``protocol`` (``grpc``, ``http/protobuf``), ``headers`` (dict),
    ``compression`` (``gzip``, ``none``), ``timeout_ms``, ``insecure`` (bool), ``certificate``,
    ``client_key``, ``client_certificate`` (PEM file paths), ``schedule_delay_ms``,
    ``export_timeout_ms``, ``max_queue_size``, ``max_export_batch_size``,
    ``attribute_value_length_limit``, ``span_attribute_count_limit``, ``span_event_count_limit``;
    callspan's own: ``sample`` (dict of glob to rate, or the ``CALLSPAN_SAMPLE`` string),
    ``max_spans_per_second``, ``min_duration`` (seconds, or a string like ``"250us"``),
    ``capture`` (list of ``function``, ``file``, ``line``, ``class``, ``thread``), ``stack_depth``,
    ``otel_context`` (bool). ``endpoint`` is used as
    given, like ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: for ``http/protobuf`` it is the full URL,
    ``/v1/traces`` included. Calling it again replaces the previous arguments; spans queued under
    the old configuration are flushed first. Bad values are logged on the ``callspan`` logger and
    ignored (the environment, then the default, applies); unknown keywords raise TypeError.
    """
    unknown = sorted(set(settings) - set(_KEYS))
    if unknown:
        raise TypeError(
            f"callspan.configure: unknown setting(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(_KEYS))}"
        )
    _callspan.configure(
        {_KEYS[k]: _as_string(_callspan_form(k, v)) for k, v in settings.items() if v is not None}
    )
