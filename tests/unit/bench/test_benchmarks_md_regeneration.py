# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/benchmarks.md regenerated from its JSON loses nothing: each generator rewrites its own section.

Every test works on copies in a temp dir (the plots land there too); the repository is only read.
"""
from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(_ROOT, "bench"), os.path.join(_ROOT, "lab")]

import bench_report as br  # noqa: E402
import doc_section  # noqa: E402

DOCS = os.path.join(_ROOT, "docs")
# The inputs of the two generators, as make bench / make bench-precopy leave them in docs/.
INPUTS = ("benchmarks.md", "benchmarks.json", br.REPORT_NOTES, br.PRECOPY_JSON, br.PRECOPY_NOTES)
# One generator per marked section: (its markers, how it runs from its JSON).
GENERATORS = {"report": (br.REPORT_MARKERS, br.write, "benchmarks.json"),
              "precopy": (br.PRECOPY_MARKERS, br.write_precopy, br.PRECOPY_JSON)}
# Sections written by hand after the generated ones: no generator may drop them.
BY_HAND = ("## containerd's scratch on tmpfs", "## Patch granularity of changed files",
           "## The floor under the restore and the checkpoint (issue 26", "### What went, what stays, and why")


@pytest.fixture(name="docs")
def docs_copy(tmp_path):
    for name in INPUTS:
        shutil.copy(os.path.join(DOCS, name), tmp_path / name)
    return tmp_path


def load(docs, name):
    with open(docs / name) as fh:
        return json.load(fh)


def outside(text, markers):
    """The document with the section (markers included) cut out: what its generator must not touch."""
    begin, end = markers
    assert text.count(begin) == 1 and text.count(end) == 1
    return text.split(begin, 1)[0], text.split(end, 1)[1]


def section(text, markers):
    return markers[0] + text.split(markers[0], 1)[1].split(markers[1], 1)[0] + markers[1]


def test_the_repos_benchmarks_md_holds_each_generated_section_once_and_the_hand_written_ones_after_them():
    with open(os.path.join(DOCS, "benchmarks.md")) as fh:
        text = fh.read()
    ends = [text.index(markers[1]) for markers, _write, _json in GENERATORS.values()]
    for title in BY_HAND:
        assert text.count(title) == 1, title
        assert text.index(title) > max(ends), f"{title!r} inside or before a generated section"
    for markers, _write, _json in GENERATORS.values():
        outside(text, markers)  # exactly once each


@pytest.mark.parametrize("name", GENERATORS)
def test_regenerating_one_section_changes_no_byte_outside_it(docs, name):
    markers, write, source = GENERATORS[name]
    before = (docs / "benchmarks.md").read_text()
    write(load(docs, source), str(docs / "benchmarks.md"))
    after = (docs / "benchmarks.md").read_text()
    assert outside(after, markers) == outside(before, markers)
    for title in BY_HAND:
        assert title in after


def test_the_repos_benchmarks_md_is_what_its_json_regenerates(docs):
    """As a user rewrites it: `migration_bench.py --from-json` (write_any) with each generator's JSON.
    A difference means a generated section was edited by hand (edit the notes files, or outside the
    markers) or the generator changed its output: both are to be looked at, not regenerated over."""
    with open(os.path.join(DOCS, "benchmarks.md"), "rb") as fh:
        committed = fh.read()
    for _markers, _write, source in GENERATORS.values():
        br.write_any(load(docs, source), str(docs / "benchmarks.md"))
        assert (docs / "benchmarks.md").read_bytes() == committed, source
    made = sorted(p.name for p in (docs / "img").iterdir())
    assert made == sorted(n for n in os.listdir(os.path.join(DOCS, "img")) if n.endswith(".png"))  # the plots named


def test_a_doc_with_every_section_survives_the_regeneration_of_each(docs):
    """Sections in any state (one stale, one empty), text by hand before, between and after: each
    generator fills its own; the other section and every hand-written byte stay."""
    head = "# Benchmarks, by hand\n\nintro  \n\n"
    between = "\n\n## Between, by hand\n\n"
    tail = "\n\n## The floor (by hand)\n\n| a | b |\n|---|---|\n\n## Evacuation - TODO\n"
    rm, pm = br.REPORT_MARKERS, br.PRECOPY_MARKERS
    doc = docs / "benchmarks.md"
    doc.write_text(f"{head}{rm[0]}\nstale report\n{rm[1]}{between}{pm[0]}\n{pm[1]}{tail}")
    br.write(load(docs, "benchmarks.json"), str(doc))
    text = doc.read_text()
    report = section(text, rm)
    assert text == f"{head}{report}{between}{pm[0]}\n{pm[1]}{tail}"
    assert "stale report" not in report and "## Targets" in report
    br.write_precopy(load(docs, br.PRECOPY_JSON), str(doc))
    text = doc.read_text()
    precopy = section(text, pm)
    assert text == f"{head}{report}{between}{precopy}{tail}"
    assert "## Pre-copy vs stop-and-copy (issue 11)" in precopy
    br.write(load(docs, "benchmarks.json"), str(doc))  # and again: the same bytes
    assert doc.read_text() == f"{head}{report}{between}{precopy}{tail}"


@pytest.mark.parametrize("name", GENERATORS)
def test_a_doc_without_the_sections_markers_is_refused_and_left_as_it_was(docs, name):
    markers, write, source = GENERATORS[name]
    doc = docs / "benchmarks.md"
    original = doc.read_text()
    for broken in (original.replace(markers[0] + "\n", ""), original.replace(markers[1], ""),
                   original.replace(markers[1], markers[1] + "\n" + markers[0] + "\n" + markers[1])):
        doc.write_text(broken)
        with pytest.raises(doc_section.SectionError, match=r"nothing was written") as err:
            write(load(docs, source), str(doc))
        assert str(doc) in str(err.value)
        assert doc.read_text() == broken   # neither appended to nor cut
    assert not (docs / "img").exists()     # refused before a plot was drawn: docs/img stays the doc's


def test_a_new_report_starts_with_both_sections_in_order(docs):
    doc = docs / "new.md"
    br.write_precopy(load(docs, br.PRECOPY_JSON), str(doc))
    text = doc.read_text()
    assert text.index(br.REPORT_MARKERS[0]) < text.index(br.REPORT_MARKERS[1]) < text.index(br.PRECOPY_MARKERS[0])
    assert section(text, br.REPORT_MARKERS) == "\n".join(br.REPORT_MARKERS)   # empty until make bench fills it
    br.write(load(docs, "benchmarks.json"), str(doc))
    assert section(doc.read_text(), br.PRECOPY_MARKERS) == section(text, br.PRECOPY_MARKERS)
