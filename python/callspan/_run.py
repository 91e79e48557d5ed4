"""``callspan run``: run a program with callspan's profile hook on, like ``python -m cProfile``.

* ``callspan run [--include GLOB]... [--exclude GLOB]... script.py [args...]`` runs the script as
  ``__main__`` exactly as ``python script.py`` would (``sys.argv``, ``sys.path[0]``, ``__file__``,
  exit code, uncaught exceptions and their traceback, ``SystemExit``, ``KeyboardInterrupt``).
* ``... run -m package.module [args...]`` runs a module as ``python -m`` does.
* ``... run -- COMMAND [args...]`` runs a command (a console script of this environment, or
  ``python ...``) with the profile started in every Python process it starts: the options are
  passed on as ``CALLSPAN_PROFILE_INCLUDE`` / ``CALLSPAN_PROFILE_EXCLUDE`` and a
  ``sitecustomize`` on ``PYTHONPATH`` imports callspan, which starts the profile from them.

``--include`` defaults to ``CALLSPAN_PROFILE_INCLUDE``, else to ``__main__`` and the modules and
packages beside the script (for ``-m``: its top-level package).
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys
import traceback
from typing import NoReturn

from . import _profile

USAGE = """\
usage: callspan run [--include GLOB]... [--exclude GLOB]... script.py [args...]
       callspan run [--include GLOB]... [--exclude GLOB]... -m module [args...]
       callspan run [--include GLOB]... [--exclude GLOB]... -- COMMAND [args...]

Runs a Python program with callspan's profile hook: every call of a function whose
module-qualified name matches an --include glob (and no --exclude glob) becomes a span
tagged with its caller. Globs: shell-style over 'module.Class.function' ('imgpipe.*');
a glob also covers what is inside the module it names. Default --include: __main__ and
the modules beside the script. Also read from CALLSPAN_PROFILE_INCLUDE/_EXCLUDE
(comma-separated)."""

BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bootstrap")


def _usage_error(message: str) -> NoReturn:
    print(f"{USAGE}\n\ncallspan run: error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse(argv: list[str]) -> tuple[list[str], list[str], str, list[str]]:
    """(include, exclude, mode, target): mode is 'script', 'module' or 'command'."""
    include: list[str] = []
    exclude: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        if arg in ("--include", "--exclude") or arg.startswith(("--include=", "--exclude=")):
            name, _, value = arg.partition("=")
            if not value:
                i += 1
                if i == len(argv):
                    _usage_error(f"{name} needs a glob")
                value = argv[i]
            (include if name == "--include" else exclude).append(value)
            i += 1
            continue
        if arg == "-m":
            if i + 1 == len(argv):
                _usage_error("-m needs a module name")
            return include, exclude, "module", argv[i + 1 :]
        if arg == "--":
            if i + 1 == len(argv):
                _usage_error("-- needs a command")
            return include, exclude, "command", argv[i + 1 :]
        if arg.startswith("-"):
            _usage_error(f"unknown option {arg}")
        return include, exclude, "script", argv[i:]
    _usage_error("no script, -m module or -- COMMAND given")


def _modules_beside(directory: str) -> list[str]:
    """The top-level modules and packages in ``directory`` (the script's own code)."""
    names: list[str] = []
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return names
    for entry in entries:
        path = os.path.join(directory, entry)
        if entry.endswith(".py") and entry != "__init__.py":
            names.append(entry[:-3])
        elif os.path.isfile(os.path.join(path, "__init__.py")) and entry.isidentifier():
            names.append(entry)
    return [n for n in names if n.isidentifier()]


def _print_exception(exc: BaseException, first_frame_file: str | None) -> None:
    """The traceback Python prints, without callspan's and runpy's frames."""
    tb = exc.__traceback__
    if first_frame_file is not None:
        while (
            tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != first_frame_file
        ):
            tb = tb.tb_next
        if tb is None:
            tb = exc.__traceback__
    traceback.print_exception(type(exc), exc, tb)


def _run_script(include: list[str], exclude: list[str], argv: list[str]) -> int:
    script = argv[0]
    path = os.path.abspath(script)
    if (
        not os.path.exists(path)
        or os.path.isdir(path)
        and not os.path.exists(os.path.join(path, "__main__.py"))
    ):
        # What `python missing.py` says, with its exit code.
        print(
            f"{sys.executable}: can't open file {path!r}: [Errno 2] No such file or directory",
            file=sys.stderr,
        )
        return 2
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    sys.argv[:] = argv
    sys.path[0] = directory
    default = ["__main__", *_modules_beside(directory)]
    return _run_profiled(
        include, exclude, default, lambda: runpy.run_path(script, run_name="__main__"), path
    )


def _run_module(include: list[str], exclude: list[str], argv: list[str]) -> int:
    module = argv[0]
    sys.argv[:] = argv
    sys.path[0] = os.getcwd()
    default = ["__main__", module.split(".")[0]]
    return _run_profiled(
        include,
        exclude,
        default,
        lambda: runpy.run_module(module, run_name="__main__", alter_sys=True),
        None,
    )


def _run_profiled(include, exclude, default, run, first_frame_file) -> int:
    include = include or _profile.globs_from_env(_profile.ENV_INCLUDE) or default
    _profile.start_profile(include, exclude)
    try:
        run()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        _profile.stop_profile()
        _print_exception(exc, first_frame_file)
        return 1
    finally:
        _profile.stop_profile()
    return 0


def _run_command(include: list[str], exclude: list[str], argv: list[str]) -> NoReturn:
    include = include or _profile.globs_from_env(_profile.ENV_INCLUDE)
    if not include:
        _usage_error("callspan run -- COMMAND needs --include GLOB (or CALLSPAN_PROFILE_INCLUDE)")
    executable = shutil.which(argv[0])
    if executable is None:
        print(f"callspan run: command not found: {argv[0]}", file=sys.stderr)
        sys.exit(127)
    env = dict(os.environ)
    env[_profile.ENV_INCLUDE] = ",".join(include)
    exclude = exclude + _profile.globs_from_env(_profile.ENV_EXCLUDE)
    if exclude:
        env[_profile.ENV_EXCLUDE] = ",".join(exclude)
    pythonpath = env.get("PYTHONPATH")
    env["PYTHONPATH"] = BOOTSTRAP_DIR + (os.pathsep + pythonpath if pythonpath else "")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(executable, argv, env)


def main(argv: list[str]) -> int:
    """``callspan run ARGS``; returns the exit code (the program's own on SystemExit)."""
    include, exclude, mode, target = _parse(argv)
    try:
        if mode == "command":
            _run_command(include, exclude, target)
        if mode == "module":
            return _run_module(include, exclude, target)
        return _run_script(include, exclude, target)
    except (ValueError, TypeError, RuntimeError) as exc:
        if "callspan.start_profile" not in str(exc):
            raise
        print(f"callspan run: {exc}", file=sys.stderr)
        return 2
