"""Profile mode: spans for every call of the functions a glob names, without decorating them.

:func:`start_profile` installs callspan's profile hook (``sys.monitoring`` on 3.12+, a PEP 523
frame-evaluation function on 3.9-3.11); each call of a matching Python function becomes exactly
the span ``@callspan.trace`` would make. :func:`stop_profile` removes it and warns when the
globs matched no function at all.
"""

from __future__ import annotations

import logging
import os
import site
import sysconfig
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from . import _callspan

ENV_INCLUDE = "CALLSPAN_PROFILE_INCLUDE"
ENV_EXCLUDE = "CALLSPAN_PROFILE_EXCLUDE"

_log = logging.getLogger("callspan")


def globs_from_env(name: str) -> list[str]:
    """The comma-separated globs of environment variable ``name``."""
    return [g.strip() for g in os.environ.get(name, "").split(",") if g.strip()]


def _library_prefixes() -> list[str]:
    # Code under these paths (the standard library, site-packages) matches only a glob that
    # names it: `--include '*'` means "my code", not every module Python imports.
    paths = {
        sysconfig.get_paths().get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")
    }
    paths.update(getattr(site, "getsitepackages", list)())
    user = getattr(site, "getusersitepackages", None)
    if user is not None:
        paths.add(user())
    prefixes = set()
    for path in paths:
        if path:
            prefixes.add(os.path.join(os.path.normpath(path), ""))
            prefixes.add(os.path.join(os.path.realpath(path), ""))
    return sorted(prefixes)


def _glob_list(value: Iterable[str] | str | None, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    globs = list(value)
    for glob in globs:
        if not isinstance(glob, str):
            raise TypeError(f"callspan.start_profile: {what} globs must be str, not {glob!r}")
    return globs


def start_profile(
    include: Iterable[str] | str | None = None, exclude: Iterable[str] | str | None = None
) -> None:
    """Profile every call of the Python functions ``include`` names, except those ``exclude``
    names, on every thread (threads already running included), until :func:`stop_profile`.

    Globs are shell-style (``*``, ``?``, ``[...]``) over ``code.function.name``, the
    module-qualified qualname (``imgpipe.*``, ``imgpipe.Transformer.apply_transform``); a glob
    also covers what is inside the module or class it names (``imgpipe``). ``include`` defaults
    to ``CALLSPAN_PROFILE_INCLUDE`` and ``exclude`` adds ``CALLSPAN_PROFILE_EXCLUDE`` (both
    comma-separated). The standard library, site-packages and callspan itself stay out unless a
    glob names them (one starting with a wildcard does not). Functions decorated with
    :func:`callspan.trace` keep their one span.

    Raises ValueError without an include glob, RuntimeError when a profile is already running,
    when no ``sys.monitoring`` tool id is free (3.12+) or when another frame-evaluation function
    is installed (3.9-3.11: a debugger's, ``torch.compile``'s); the error names it.
    """
    include_globs = _glob_list(include, "include") or globs_from_env(ENV_INCLUDE)
    exclude_globs = _glob_list(exclude, "exclude") + globs_from_env(ENV_EXCLUDE)
    if not include_globs:
        raise ValueError(
            "callspan.start_profile: no include glob: pass include=['myapp.*'] or set "
            f"{ENV_INCLUDE}"
        )
    _callspan.start_profile(include_globs, exclude_globs, _library_prefixes())
    _state.include = include_globs


def stop_profile() -> None:
    """Stop profiling (no-op when no profile runs). Suspended generators and coroutines end now;
    calls still running end now on 3.12+ (this thread's and other threads'), when they return
    on 3.9-3.11; all with their spans exported. Warns when no function matched the include
    globs."""
    report = _callspan.stop_profile()
    if report is None:
        return
    matched, modules = report
    if matched == 0:
        _log.warning(
            "callspan profile: the include globs %s matched no function; functions of these "
            "modules ran: %s",
            ", ".join(_state.include),
            ", ".join(modules) if modules else "(none)",
        )


class _State:
    include: list[str] = []


_state = _State()


@contextmanager
def profile(
    include: Iterable[str] | str | None = None, exclude: Iterable[str] | str | None = None
) -> Iterator[None]:
    """``with callspan.profile(include=[...], exclude=[...]):`` profiles the block (see
    :func:`start_profile`)."""
    start_profile(include, exclude)
    try:
        yield
    finally:
        stop_profile()
