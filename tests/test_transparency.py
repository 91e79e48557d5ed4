"""A traced function is transparent to real code: introspection, function attributes read and
written through, implicit class/static methods, honest names, and names that are not UTF-8.

Run in child processes exporting to the recording receiver; the receiver decodes every request
with the (strict, UTF-8-checking) protobuf decoder, so a request that arrived was valid.
"""

from __future__ import annotations

import os
from pathlib import Path

from e2e_support import SCRIPTS_DIR, calls_from, parse_output
from test_trace_e2e import assert_nothing_dropped, wait_for_exactly

TRANSPARENCY = SCRIPTS_DIR / "transparency.py"


def test_traced_functions_look_like_the_functions_they_wrap(receiver, run_script):
    output = parse_output(run_script(TRANSPARENCY).stdout)
    spans = wait_for_exactly(receiver, 9)
    assert_nothing_dropped(output, 9)
    facts = output.facts
    assert (facts["before"], facts["after"]) == (6, 31)
    for fact in (
        "written_through",
        "code_is_wrapped",
        "globals_is_module",
        "closure_cell",
        "annotations",
        "getfile",
        "getsourcefile",
        "getsource_has_def",
        "unwrap",
        "isfunction",
        "pickles",
        "copies",
        "traced_class_is_not_function",
        "class_attributes_stay_on_the_wrapper",
        "class_has_no_code",
    ):
        assert facts[fact] is True, fact
    assert facts["signature"] == "(value, factor=10, *, offset=1) -> int"
    assert facts["fullargspec"] == ["value", "factor"]
    assert facts["real_type"] == "TracedFunction"
    # Implicit classmethods / staticmethod decorated directly bind like the plain functions.
    assert facts["class_getitem"] == "Plugin[int]"
    assert facts["init_subclass"] == "plug"
    assert facts["new_args"] == [1, 2]
    assert facts["explicit"] == "Plugin"
    assert "put @callspan.trace below @property" in facts["property_error"]
    assert "below @cached_property" in facts["cached_property_error"]
    names = sorted(span.name for span in spans)
    assert names == sorted(
        [
            "scale",
            "scale",
            "make_counter.<locals>.bump",
            "Registry.__init_subclass__",
            "Registry.__class_getitem__",
            "Registry.__new__",
            "Registry.explicit",
            "anonymous",
            "anonymous",
        ]
    )
    # __module__ None (exec without __name__): the bare qualified name, no invented module.
    [anonymous] = calls_from(spans, TRANSPARENCY, "anonymous")
    assert anonymous.attributes["code.function.name"] == "anonymous"
    # ... and as a caller (it was "<unknown>.anonymous_caller").
    [from_exec] = [s for s in spans if s.attributes["caller.function.name"] == "anonymous_caller"]
    assert from_exec.name == "anonymous"
    assert from_exec.attributes["caller.file.path"] == "<string>"


NON_UTF8_SCRIPT = """
import callspan
from scriptkit import finish, report


def shout():
    return "hi"


shout.__qualname__ = "sh\\udcffout"
shout = callspan.trace(shout)


@callspan.trace(name="named\\ud800", attributes={"k\\udc80ey": "val\\udfffue"})
def named():
    return shout()  # CALL:inner


named()  # CALL:outer


@callspan.trace
def fails():
    raise ValueError("bad \\udcff byte")


try:
    fails()
except ValueError:
    pass
report(file=__file__.encode("utf-8", "surrogateescape").hex())
finish()
"""


def _replaced(text: str) -> str:
    """What the receiver may show for ``text``: lone surrogates replaced by U+FFFD (one or more)."""
    return "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)


def _assert_lossy(received: str, original: str) -> None:
    assert "\ufffd" in received, received
    assert received.replace("\ufffd", "") == _replaced(original), (received, original)


def test_names_and_paths_that_are_not_utf8_are_replaced_not_fatal(receiver, run_script, tmp_path):
    # A script really placed under a directory whose name holds a non-UTF-8 byte: Python decodes
    # it with surrogateescape, so __file__ and co_filename hold a lone surrogate.
    directory = os.path.join(os.fsencode(tmp_path), b"caf\xe9-\xff")
    os.mkdir(directory)
    script = Path(os.fsdecode(os.path.join(directory, b"names.py")))
    script.write_text(NON_UTF8_SCRIPT)
    output = parse_output(run_script(script).stdout)
    spans = wait_for_exactly(receiver, 3)
    assert_nothing_dropped(output, 3)
    assert bytes.fromhex(output.facts["file"]) == os.fsencode(str(script))

    [failed] = [span for span in spans if span.name == "fails"]
    event = failed.event("exception").attributes
    _assert_lossy(event["exception.message"], "bad \udcff byte")
    line = NON_UTF8_SCRIPT.splitlines().index('    raise ValueError("bad \\udcff byte")') + 1
    _assert_lossy(
        event["exception.stacktrace"].splitlines()[1],
        f'  File "{script}", line {line}, in __main__.fails',
    )
    spans = [span for span in spans if span is not failed]
    by_name = {span.attributes["code.function.name"]: span for span in spans}
    inner = next(span for name, span in by_name.items() if name.startswith("__main__.sh"))
    outer = next(span for name, span in by_name.items() if name.startswith("__main__.named"))
    _assert_lossy(inner.name, "sh\udcffout")
    _assert_lossy(inner.attributes["code.function.name"], "__main__.sh\udcffout")
    _assert_lossy(outer.name, "named\ud800")
    assert outer.attributes["code.function.name"] == "__main__.named"
    [(key, value)] = [(k, v) for k, v in outer.attributes.items() if k.startswith("k")]
    _assert_lossy(key, "k\udc80ey")
    _assert_lossy(value, "val\udfffue")
    for span in spans:
        for attribute in ("code.file.path", "caller.file.path"):
            _assert_lossy(span.attributes[attribute], str(script))
    # Callee and caller side replace the same way: the caller of `shout` is `named`'s file.
    assert inner.attributes["caller.file.path"] == outer.attributes["code.file.path"]
    assert inner.parent_span_id == outer.span_id
