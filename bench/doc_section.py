# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way a benchmark writes into a document: its own marked section, in place.

A generated section sits between a begin and an end marker (HTML comments, invisible on the rendered
page). A generator replaces its own section, markers included, and nothing else: every byte outside it
is kept, and so is every section whose generator did not run. A document without the section's markers
(or with them twice, or reversed) is refused with the file and the marker named, and is left untouched:
appending would duplicate a section someone moved, and dropping would lose text written since.
"""
from __future__ import annotations

import os


class SectionError(ValueError):
    """The document does not hold the section's markers exactly once, in order."""


def check_section(text: str, markers: tuple[str, str], where: str = "the document") -> None:
    """Raise SectionError unless ``text`` holds each of ``markers`` exactly once, begin before end."""
    begin, end = markers
    for marker in markers:
        count = text.count(marker)
        if count != 1:
            raise SectionError(f"{where} holds {marker} {count} times, not once: add the section's markers "
                               f"{begin} ... {end} where the section belongs (nothing was written)")
    if text.index(end) < text.index(begin):
        raise SectionError(f"{where}: {end} comes before {begin} (nothing was written)")


def replace_section(text: str, markers: tuple[str, str], block: str, where: str = "the document") -> str:
    """``text`` with the part from ``markers[0]`` to ``markers[1]`` (both included) replaced by ``block``,
    which must itself begin and end with those markers (so a second run finds them again)."""
    begin, end = markers
    if not (block.startswith(begin) and block.endswith(end)):
        raise SectionError(f"the new {begin} section does not start with {begin} and end with {end}")
    check_section(text, markers, where)
    head, rest = text.split(begin, 1)
    return head + block + rest.split(end, 1)[1]


def read_document(path: str, markers: tuple[str, str], skeleton: str | None = None) -> str:
    """The text of ``path``, its section's markers checked - a generator calls it before it draws or
    computes anything, so a refused document leaves nothing else half-updated either. A file that does not
    exist yet is ``skeleton`` (its sections' markers with nothing between them) when one is given; without
    one, it is an error."""
    if os.path.exists(path) or skeleton is None:
        with open(path) as fh:
            text = fh.read()
    else:
        text = skeleton
    check_section(text, markers, where=path)
    return text


def write_section(path: str, markers: tuple[str, str], block: str, skeleton: str | None = None) -> None:
    """Replace the section in the file ``path`` (see read_document for a file not there yet)."""
    new = replace_section(read_document(path, markers, skeleton), markers, block, where=path)
    with open(path, "w") as fh:  # opened for writing only once the new text is whole
        fh.write(new)


def skeleton(*sections: tuple[str, str], head: str = "") -> str:
    """A new document: ``head``, then each section's markers, empty, in the order given."""
    return head + "\n\n".join(f"{begin}\n{end}" for begin, end in sections) + "\n"
