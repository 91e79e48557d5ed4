"""The pyparsing workload of ``benches/realcode.py``, and the child process that times one row.

The workload parses generated text with two grammars built from pyparsing's own elements:

- arithmetic and comparisons with function calls, through ``infix_notation`` (four precedence
  levels, packrat off, pyparsing's default): every operand is tried at each level and every
  failed alternative raises a ``ParseException`` that a ``MatchFirst`` or ``Opt`` catches;
- JSON-like documents (``Forward`` values, ``QuotedString``, ``pyparsing_common.number``,
  keywords, nested ``DelimitedList``s).

Inputs come from a seeded ``random.Random``: every row parses the same text, and the child
reports a digest of the parse results so the parent can check that no row changed them.

Child process: ``python benches/realcode.py --child ROW --inputs N --out PATH`` (the parent passes
the receiver's endpoint and the sampler in the environment). It installs the row's decorator or
profiler, imports pyparsing (from the pinned sdist of ``tests/realcode``, rewritten at import by
``tests/realcode/realcode_rewrite.py`` for the decorated rows), builds the grammars, parses a
warm-up set (other inputs, a quarter as many, at most 8), then times one pass over the inputs
with ``time.perf_counter``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable

import benchkit

sys.path.insert(0, str(benchkit.TESTS_DIR / "realcode"))
import harness  # noqa: E402  (tests/realcode/harness.py: the pinned sdists)
import realcode_rewrite  # noqa: E402  (tests/realcode: the import hook that decorates every def)

LIBRARY = harness.LIBRARIES["pyparsing"]
SEED = 14
MAX_WARMUP_INPUTS = 8

# -- inputs ---------------------------------------------------------------------------------------


def make_inputs(count: int, seed: int = SEED) -> list[tuple[str, str]]:
    """``count`` (grammar, text) pairs: JSON and arithmetic alternating (so that a prefix of
    the list, as the small rows parse, has both in the same proportion)."""
    rng = random.Random(seed)

    def operand(depth: int) -> str:
        r = rng.random()
        if depth > 0 and r < 0.12:
            return f"({flat(depth - 1)})"
        if depth > 0 and r < 0.2:
            return f"{rng.choice(['f', 'max', 'clip'])}({flat(depth - 1)})"
        if r < 0.55:
            return str(rng.randint(0, 999))
        if r < 0.7:
            return f"{rng.randint(0, 99)}.{rng.randint(0, 99)}"
        return rng.choice(["x", "y", "rate", "total_1"])

    def flat(depth: int) -> str:
        parts = [operand(depth)]
        for _ in range(rng.randint(1, 6)):
            parts += [rng.choice(["+", "-", "*", "/", "<", "=="]), operand(depth)]
        return " ".join(parts)

    def document(depth: int) -> str:
        r = rng.random()
        if depth <= 0 or r < 0.3:
            return rng.choice(['"a"', "12", "-3.5e2", "true", "null", '"hello world"', "0.25"])
        items = range(rng.randint(0, 4))
        if r < 0.65:
            return "[" + ", ".join(document(depth - 1) for _ in items) + "]"
        return "{" + ", ".join(f'"k{i}": {document(depth - 1)}' for i in items) + "}"

    return [
        ("json", document(4)) if index % 2 == 0 else ("arithmetic", flat(1))
        for index in range(count)
    ]


# -- grammars -------------------------------------------------------------------------------------


def grammars(pp: Any) -> dict[str, Any]:
    """The two grammars, built from the pyparsing module given (decorated or not)."""
    ppc = pp.pyparsing_common
    identifier = pp.Word(pp.alphas + "_", pp.alphanums + "_")
    call = pp.Forward()
    operand = ppc.number | call | identifier
    arithmetic = pp.infix_notation(
        operand,
        [
            (pp.one_of("- +"), 1, pp.OpAssoc.RIGHT),
            (pp.one_of("* / %"), 2, pp.OpAssoc.LEFT),
            (pp.one_of("+ -"), 2, pp.OpAssoc.LEFT),
            (pp.one_of("< <= > >= == !="), 2, pp.OpAssoc.LEFT),
        ],
    )
    call <<= pp.Group(
        identifier + pp.Suppress("(") + pp.Opt(pp.DelimitedList(arithmetic)) + pp.Suppress(")")
    )

    lbrack, rbrack, lbrace, rbrace, colon = map(pp.Suppress, "[]{}:")
    value = pp.Forward()
    keyword = pp.Keyword("true") | pp.Keyword("false") | pp.Keyword("null")
    array = pp.Group(lbrack + pp.Opt(pp.DelimitedList(value)) + rbrack)
    member = pp.Group(pp.QuotedString('"') + colon + value)
    document = pp.Dict(lbrace + pp.Opt(pp.DelimitedList(member)) + rbrace)
    value <<= pp.QuotedString('"') | ppc.number | keyword | array | document
    return {"arithmetic": arithmetic, "json": value}


def parse_all(parsers: dict[str, Any], inputs: list[tuple[str, str]]) -> list[Any]:
    return [
        parsers[grammar].parse_string(text, parse_all=True).as_list() for grammar, text in inputs
    ]


def digest(results: list[Any]) -> str:
    return hashlib.sha256(repr(results).encode()).hexdigest()[:16]


# -- the OpenTelemetry SDK row's decorator --------------------------------------------------------

_otel_tracer: list[Any] = []


def otel_trace(func: Callable[..., Any]) -> Callable[..., Any]:
    """What a user of the OpenTelemetry SDK writes to trace a function: a span per call named
    after it, through the tracer set up by the child before pyparsing is imported."""
    return _otel_tracer[0].start_as_current_span(func.__qualname__)(func)


OTEL_DECORATOR = '__import__("realcode_workload").otel_trace'

# -- the child process ----------------------------------------------------------------------------


class Row:
    """How one row runs: the decorator the rewriter adds (None: undecorated), and what is
    switched on around the timed pass."""

    decorator: str | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def report(self) -> dict[str, Any]:
        return {}


class CProfileRow(Row):
    def start(self) -> None:
        import cProfile

        self.profile = cProfile.Profile()
        self.profile.enable()

    def stop(self) -> None:
        self.profile.disable()

    def report(self) -> dict[str, Any]:
        """What the timed pass did, counted by cProfile: calls of pyparsing's functions, and
        exceptions made (``ParseBaseException.__init__`` calls)."""
        import pstats

        package = str(harness.source_tree(LIBRARY) / "pyparsing")
        calls = exceptions = 0
        for (file, _, function), (_, total, *_) in pstats.Stats(self.profile).stats.items():
            if file.startswith(package):
                calls += total
                if file.endswith("exceptions.py") and function == "__init__":
                    exceptions += total
        return {"pyparsing_calls": calls, "exceptions_made": exceptions}


class YappiRow(Row):
    def start(self) -> None:
        import yappi

        yappi.start()

    def stop(self) -> None:
        import yappi

        yappi.stop()


class VizTracerRow(Row):
    def start(self) -> None:
        from viztracer import VizTracer

        # Its default ring buffer (1M entries), kept in memory; not saved (saving is a
        # separate, later cost).
        self.tracer = VizTracer(verbose=0)
        self.tracer.start()

    def stop(self) -> None:
        self.tracer.stop()


class CallspanRow(Row):
    """Every def of pyparsing decorated with ``@callspan.trace``; the sampler and the receiver
    come from the environment (``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""

    decorator = realcode_rewrite.DECORATORS["callspan"]

    def report(self) -> dict[str, Any]:
        import callspan

        started = time.perf_counter()
        flushed = callspan.flush(120.0)
        return {
            "flush_s": time.perf_counter() - started,
            "flushed": flushed,
            "stats": callspan.stats(),
        }


class OtelRow(Row):
    """Every def of pyparsing decorated with the OpenTelemetry SDK's ``start_as_current_span``:
    TracerProvider, BatchSpanProcessor defaults, OTLP/gRPC exporter to the same receiver."""

    decorator = OTEL_DECORATOR

    def __init__(self) -> None:
        import otel_sdk

        self.sdk = otel_sdk.CountingSdk(os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"], "realcode")
        _otel_tracer[:] = [self.sdk.tracer]

    def report(self) -> dict[str, Any]:
        started = time.perf_counter()
        counts = self.sdk.shutdown()
        return {"flush_s": time.perf_counter() - started, "otel_sdk": counts}


ROW_KINDS: dict[str, Callable[[], Row]] = {
    "undecorated": Row,
    "cprofile": CProfileRow,
    "yappi": YappiRow,
    "viztracer": VizTracerRow,
    "callspan": CallspanRow,
    "otel_sdk": OtelRow,
}


def child(kind: str, inputs: int, out: str, warmup: int | None = None) -> None:
    row = ROW_KINDS[kind]()
    if row.decorator is not None:
        realcode_rewrite.install(list(LIBRARY.packages), decorator=row.decorator)
    sys.path.insert(0, str(harness.source_tree(LIBRARY)))
    import pyparsing

    parsers = grammars(pyparsing)
    # Other inputs first (a quarter as many by default): imports, caches and registrations settle.
    if warmup is None:
        warmup = min(MAX_WARMUP_INPUTS, max(1, inputs // 4))
    parse_all(parsers, make_inputs(warmup, seed=SEED + 1))
    work = make_inputs(inputs)
    row.start()
    started = time.perf_counter()
    results = parse_all(parsers, work)
    wall = time.perf_counter() - started
    row.stop()
    result = {
        "wall_s": wall,
        "inputs": inputs,
        "digest": digest(results),
        "pyparsing": pyparsing.__version__,
        "pyparsing_file": pyparsing.__file__,
        "decorated_defs": realcode_rewrite.decorated_defs,
        **row.report(),
    }
    Path(out).write_text(json.dumps(result) + "\n")
