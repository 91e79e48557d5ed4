"""The README's configuration table and Rust's table of settings say the same thing.

Rust's table (`callspan_core::config::table`, exported as `_callspan.settings()`) is what the
configuration resolver reads; the README is what users read. Every row of one is a row of the
other, with the same variables, the same `configure()` keyword and the same default.
"""

from __future__ import annotations

import re
from pathlib import Path

import callspan
import pytest
from callspan import _callspan

README = Path(__file__).resolve().parent.parent / "README.md"


def expand(variable: str) -> set[str]:
    """`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` -> the signal's and the generic variable."""
    match = re.fullmatch(r"(\w*)\[(\w+)\](\w*)", variable)
    if match is None:
        return {variable}
    before, optional, after = match.groups()
    return {before + optional + after, before + after}


def plain(cell: str) -> str:
    """A README cell without its Markdown emphasis and code marks."""
    return cell.replace("**", "").replace("`", "").strip()


def readme_rows() -> list[dict]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue  # prose, a header or a separator row
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 4, f"a configuration row has 4 columns: {line}"
        variable_cell, keyword_cell, default_cell, meaning = cells
        variables: set[str] = set()
        for name in re.findall(r"`([^`]+)`", variable_cell):
            variables |= expand(name)
        keyword = re.match(r"`(\w+)`", keyword_cell)
        default = plain(default_cell)
        rows.append(
            {
                "variables": frozenset(variables),
                "keyword": keyword.group(1) if keyword else None,
                "keyword_cell": keyword_cell,
                "default": "" if default == "—" else default,
                "meaning": meaning,
                "line": line,
            }
        )
    return rows


def rust_rows() -> dict[frozenset, tuple]:
    return {frozenset(variables): row for row in _callspan.settings() for variables in [row[1]]}


def test_every_setting_has_a_readme_row_and_every_readme_row_a_setting():
    readme = {row["variables"] for row in readme_rows()}
    rust = set(rust_rows())
    assert rust - readme == set(), "settings missing from the README's configuration table"
    assert readme - rust == set(), "README configuration rows that are not settings"
    assert len(readme_rows()) == len(rust), "a README configuration row appears twice"


@pytest.mark.parametrize("row", readme_rows(), ids=lambda row: sorted(row["variables"])[0])
def test_readme_keyword_and_default_match_the_rust_table(row):
    keyword, _variables, _kind, default, _doc = rust_rows()[row["variables"]]
    assert row["keyword"] == keyword, row["line"]
    if keyword is None:
        assert row["keyword_cell"] == "—", row["line"]
    assert row["default"] == default, row["line"]


def test_every_keyword_is_accepted_by_configure_and_misspelt_ones_are_refused():
    keywords = {row[0] for row in _callspan.settings() if row[0]}
    assert {"endpoint", "timeout_ms", "sample", "otel_context"} <= keywords
    for keyword in keywords:
        assert f"``{keyword}``" in callspan.configure.__doc__, keyword
    with pytest.raises(TypeError) as error:
        callspan.configure(timeout=5)
    assert str(error.value) == (
        "callspan.configure() got an unknown keyword 'timeout'; did you mean 'timeout_ms'?"
    )
    with pytest.raises(TypeError, match=r"unknown keyword 'samplr'; did you mean 'sampler'\?"):
        callspan.configure(samplr="always_on")
    # Nothing close: every valid keyword is listed.
    with pytest.raises(TypeError, match=r"unknown keyword 'zzz'; valid: .*otel_context"):
        callspan.configure(zzz=1)
    # Metrics settings have no keyword (environment only, for now).
    with pytest.raises(TypeError, match="unknown keyword 'max_edges'"):
        callspan.configure(max_edges=10)


def test_the_native_configure_refuses_keys_that_are_not_keywords():
    with pytest.raises(TypeError, match='"timeout" is not a keyword'):
        _callspan.configure({"timeout": "5"})
