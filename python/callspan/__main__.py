"""The ``callspan`` command (also ``python -m callspan``).

* ``callspan config``: print the effective configuration, each value with its source.
* ``callspan view [FILE] [-o OUT.html]``: write a self-contained HTML page of the callers of
  each traced function from an OTLP JSON file (default: the file exporter's
  ``callspan-spans.jsonl``) and say where it is.
* ``callspan run [--include GLOB]... [--exclude GLOB]... script.py | -m module | -- COMMAND``:
  run a program with the profile hook on (``callspan._run``).
* ``callspan report [FILE] [--sort total|calls|mean|name] [--format text|json]``: the caller
  report (``callspan.report()``) of the spans in an OTLP JSON file.
* ``callspan run [--report] ...``: run a program with the profile hook on (see
  ``callspan._run``); ``--report`` prints the caller report at exit (``CALLSPAN_REPORT=1``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _config(_args) -> int:
    from . import _callspan

    rows = _callspan.effective_config()
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value}  ({source})")
    print(f"{'spans go to':<{width}}  {_callspan.destination()}")
    return 0


def _spans_file(command: str, name: str) -> Path | None:
    """The OTLP JSON file a command reads, or None after saying how to make it."""
    source = Path(name)
    if source.is_file():
        return source
    print(
        f"callspan {command}: {source} does not exist. Write spans to it first with the file "
        "exporter (CALLSPAN_EXPORTER=file, CALLSPAN_FILE=path), or name an OTLP JSON file.",
        file=sys.stderr,
    )
    return None


def _view(args) -> int:
    from ._otlp_json import OtlpJsonError
    from ._view import summary_lines, write_view

    source = _spans_file("view", args.file)
    if source is None:
        return 1
    try:
        target, data = write_view(source, args.output)
    except (OtlpJsonError, UnicodeDecodeError) as error:
        print(f"callspan view: {error}", file=sys.stderr)
        return 1
    for line in summary_lines(data):
        print(line)
    print(
        f"wrote {target.resolve()} ({data['span_count']} spans, "
        f"{len(data['functions'])} traced function(s)): open it in a browser"
    )
    return 0


def _report(args) -> int:
    from ._otlp_json import OtlpJsonError, read_spans
    from ._report import render, rows_from_spans

    source = _spans_file("report", args.file)
    if source is None:
        return 1
    try:
        rows = rows_from_spans(read_spans(source))
    except (OtlpJsonError, UnicodeDecodeError) as error:
        print(f"callspan report: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(render(rows, args.sort, args.format, source=f"spans in {source}"))
    return 0


def _span_file_argument(command: argparse.ArgumentParser) -> None:
    """The span file `view` and `report` read."""
    from ._view import DEFAULT_INPUT

    command.add_argument(
        "file",
        nargs="?",
        default=DEFAULT_INPUT,
        help=f"OTLP JSON (lines) file of spans (default: {DEFAULT_INPUT})",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="callspan",
        description="callspan: one OpenTelemetry span per call, tagged with its caller.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config = commands.add_parser("config", help="print the effective configuration")
    config.set_defaults(run=_config)
    view = commands.add_parser(
        "view", help="write an HTML page of the callers of each traced function"
    )
    _span_file_argument(view)
    view.add_argument(
        "-o", "--output", help="the HTML file to write (default: FILE with suffix .html)"
    )
    view.set_defaults(run=_view)
    # Listed for `callspan --help`; `main` hands `run`'s arguments to its own parser untouched.
    commands.add_parser(
        "run", help="run a script, -m module or -- COMMAND with the profile hook on", add_help=False
    )
    report = commands.add_parser(
        "report", help="print the callers of each traced function from an OTLP JSON file"
    )
    _span_file_argument(report)
    report.add_argument("--sort", choices=("total", "calls", "mean", "name"), default="total")
    report.add_argument("--format", choices=("text", "json"), default="text")
    report.set_defaults(run=_report)
    return top


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        from . import _run

        rest = argv[1:]
        if rest[:1] == ["--report"]:
            # The caller report at exit (every call counted), in this process and in those a
            # command starts (they inherit the environment).
            os.environ["CALLSPAN_REPORT"] = "1"
            rest = rest[1:]
        return _run.main(rest)
    args = parser().parse_args(argv)
    return args.run(args)


def cli() -> None:
    """Entry point of the ``callspan`` console script."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    cli()
