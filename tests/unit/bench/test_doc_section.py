# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/doc_section.py: a generator replaces its own marked section and keeps every other byte."""
from __future__ import annotations

import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path[:0] = [os.path.join(_ROOT, "bench")]

import doc_section as ds  # noqa: E402

M = ("<!-- s:begin -->", "<!-- s:end -->")
OTHER = ("<!-- o:begin -->", "<!-- o:end -->")


def block(body):
    return f"{M[0]}\n{body}\n{M[1]}"


def test_only_the_section_changes_and_every_other_byte_is_kept():
    # odd bytes on purpose: no trailing newline, CRLF, trailing blanks, another section, text after
    head = "# Title\r\n\nby hand  \n\n"
    tail = f"\n\n{OTHER[0]}\nother\n{OTHER[1]}\n\n## Written later\n\nkept \t"
    text = head + block("old\nold") + tail
    assert ds.replace_section(text, M, block("new")) == head + block("new") + tail
    again = ds.replace_section(head + block("new") + tail, M, block("new"))
    assert again == head + block("new") + tail  # a second run finds its markers again


@pytest.mark.parametrize(("text", "words"), [
    ("# no markers at all\n", f"holds {M[0]} 0 times"),
    (f"{M[0]}\nopen, never closed\n", f"holds {M[1]} 0 times"),
    (f"closed, never opened\n{M[1]}\n", f"holds {M[0]} 0 times"),
    (block("a") + "\n" + block("b"), f"holds {M[0]} 2 times"),
    (f"{M[1]}\nreversed\n{M[0]}\n", f"{M[1]} comes before {M[0]}"),
])
def test_a_document_without_its_markers_once_and_in_order_is_refused(text, words):
    with pytest.raises(ds.SectionError, match="nothing was written") as err:
        ds.replace_section(text, M, block("new"), where="docs/x.md")
    assert words in str(err.value) and "docs/x.md" in str(err.value)


def test_a_block_that_would_lose_its_own_markers_is_refused():
    for bad in ("new", f"{M[0]}\nnew", f"new\n{M[1]}", block("new") + "\n"):
        with pytest.raises(ds.SectionError, match="does not start with"):
            ds.replace_section(block("old"), M, bad)


def test_a_refused_write_leaves_the_file_as_it_was(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_bytes(b"# By hand\n\nnothing generated here\n")
    with pytest.raises(ds.SectionError, match=str(doc)):
        ds.write_section(str(doc), M, block("new"))
    assert doc.read_bytes() == b"# By hand\n\nnothing generated here\n"  # not appended, not truncated


def test_a_missing_file_is_an_error_unless_a_skeleton_is_given(tmp_path):
    doc = tmp_path / "new.md"
    with pytest.raises(FileNotFoundError):
        ds.write_section(str(doc), M, block("x"))
    assert not doc.exists()
    ds.write_section(str(doc), M, block("x"), skeleton=ds.skeleton(M, OTHER, head="# New\n\n"))
    assert doc.read_text() == f"# New\n\n{block('x')}\n\n{OTHER[0]}\n{OTHER[1]}\n"


def test_an_existing_file_is_never_replaced_by_the_skeleton(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("by hand\n")
    with pytest.raises(ds.SectionError):
        ds.write_section(str(doc), M, block("x"), skeleton=ds.skeleton(M))
    assert doc.read_text() == "by hand\n"
