"""Hypothesis over the Python API's inputs (issue 12, "Also"): span names, static attributes
and ``configure()`` keywords. Run as a child process by tests/test_fuzz.py, so that a crash
shows as a failed test, with ``argv[1]`` examples per property and the example database (the
corpus, kept in the repository) in ``argv[2]``. The corpus is replayed read-only (Hypothesis
would otherwise delete the examples that pass now, leaving the checkout modified after every
run); new failing examples are saved beside it in ``<corpus>-new`` (git-ignored), to be moved
into the corpus with the fix.

Names and text exclude lone surrogates (issue 12 item 2 makes those U+FFFD elsewhere).
``configure()`` never gets ``exporter``, ``endpoint`` or ``file``: the exporter stays ``none``,
so random text never becomes a host to connect to or a path to write.
"""

import sys

import callspan
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import (
    DirectoryBasedExampleDatabase,
    MultiplexedDatabase,
    ReadOnlyDatabase,
)
from scriptkit import finish

EXAMPLES = int(sys.argv[1])
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=MultiplexedDatabase(
        ReadOnlyDatabase(DirectoryBasedExampleDatabase(sys.argv[2])),
        DirectoryBasedExampleDatabase(sys.argv[2] + "-new"),
    ),
    suppress_health_check=list(HealthCheck),
)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
VALUE = st.one_of(TEXT, st.booleans(), I64, st.floats(allow_nan=True, allow_infinity=True))
KEYWORDS = [
    "disabled",
    "service_name",
    "resource_attributes",
    "sampler",
    "sampler_arg",
    "protocol",
    "headers",
    "compression",
    "timeout_ms",
    "insecure",
    "schedule_delay_ms",
    "export_timeout_ms",
    "max_queue_size",
    "max_export_batch_size",
    "attribute_value_length_limit",
    "span_attribute_count_limit",
    "span_event_count_limit",
    "sample",
    "max_spans_per_second",
    "min_duration",
    "capture",
    "stack_depth",
    "otel_context",
]
SETTING = st.one_of(
    TEXT,
    st.booleans(),
    st.integers(),
    st.floats(),
    st.dictionaries(TEXT, TEXT, max_size=3),
    st.lists(TEXT, max_size=3),
)

callspan.configure(exporter="none")


@PROFILE
@given(name=TEXT, attributes=st.dictionaries(TEXT, VALUE, max_size=6), argument=VALUE)
def names_and_attributes(name, attributes, argument):
    def identity(x):
        return x

    traced = callspan.trace(name=name or None, attributes=attributes)(identity)
    assert traced(argument) is argument or argument != argument  # NaN is not itself


@PROFILE
@given(big=st.integers().filter(lambda n: not -(2**63) <= n < 2**63))
def out_of_range_ints_are_refused(big):
    try:
        callspan.trace(attributes={"n": big})(len)
    except (OverflowError, ValueError, TypeError):
        return
    raise AssertionError(f"attribute {big} accepted")


@PROFILE
@given(settings_=st.dictionaries(st.sampled_from(KEYWORDS), SETTING, max_size=5))
def configure_keywords(settings_):
    callspan.configure(exporter="none", **settings_)

    @callspan.trace
    def probe():
        return 7

    assert probe() == 7


names_and_attributes()
out_of_range_ints_are_refused()
configure_keywords()
callspan.configure(exporter="none")
finish()
