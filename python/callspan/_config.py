"""``callspan.configure()``: keyword arguments that take precedence over the environment.

Every setting has an environment variable (see the README table); a keyword argument here wins
over the signal-specific variable, which wins over the generic one, which wins over the default.
Values are handed to the Rust configuration module as strings, so that one parser applies to
both sources and a bad value produces the same warning naming the setting.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from . import _callspan

# keyword -> its kind, from the Rust table of settings (one row per setting, README order).
_KINDS = {
    keyword: kind for keyword, _variables, kind, _default, _doc in _callspan.settings() if keyword
}


def _variable_form(kind: str, value: Any) -> Any:
    """Python-friendly forms of a setting, turned into its variable's spelling by kind."""
    if kind == "sample_rules" and isinstance(value, Mapping):
        # Globs are written as they are (CALLSPAN_SAMPLE is not percent-encoded).
        return ",".join(f"{pattern}={rate}" for pattern, rate in value.items())
    if kind == "duration" and isinstance(value, (int, float)) and not isinstance(value, bool):
        nanoseconds = value * 1e9  # seconds, like every timeout in Python
        if not math.isfinite(nanoseconds):
            # Passed on as written: the setting's parser says it is not a duration and names
            # the default used instead, as for every other unusable value.
            return str(value)
        return f"{int(nanoseconds)}ns"
    if kind == "names" and isinstance(value, (list, tuple, set, frozenset)):
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

    Values may be given in Python's forms: dicts for ``resource_attributes`` and ``headers``
    (and ``sample``, glob to rate), a list for ``capture``, seconds for ``min_duration`` (or a
    string like ``"250us"``), bools, ints and paths; strings are used as the variable would be.
    ``endpoint`` is used as
    given, like ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: for ``http/protobuf`` it is the full URL,
    ``/v1/traces`` included. Calling it again replaces the previous arguments; spans queued under
    the old configuration are flushed first. Bad values are logged on the ``callspan`` logger and
    ignored (the environment, then the default, applies); an unknown keyword raises TypeError
    naming the nearest valid one. ``_callspan.settings()`` lists every keyword.
    """
    for keyword in settings:
        if keyword not in _KINDS:
            raise TypeError(_unknown_keyword(keyword))
    _callspan.configure(
        {
            keyword: _as_string(_variable_form(_KINDS[keyword], value))
            for keyword, value in settings.items()
            if value is not None
        }
    )


def _keyword_lines() -> str:
    rows = [
        f"    - ``{keyword}`` ({' / '.join(variables)}; default {default or 'none'}): {doc}"
        for keyword, variables, _kind, default, doc in _callspan.settings()
        if keyword
    ]
    return "\n    Keywords, from callspan's table of settings:\n\n" + "\n".join(rows) + "\n"


if configure.__doc__ is not None:  # python -OO strips docstrings
    configure.__doc__ += _keyword_lines()


def _unknown_keyword(keyword: str) -> str:
    close = difflib.get_close_matches(keyword, _KINDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(sorted(_KINDS))}"
    return f"callspan.configure() got an unknown keyword {keyword!r}{hint}"
