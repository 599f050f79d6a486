# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The sender reads the files the walk saw, not whatever a path leads to later (issue 13)."""
from __future__ import annotations

import os

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.sender.controller import make_controller
from ansible_collections.edgemig.migration.plugins.module_utils.sender.stream_sender import AckState, StreamSender
from ansible_collections.edgemig.migration.plugins.module_utils.sender.tree_reader import (
    ChangedDuringWalk,
    open_walked,
    walk_roots,
)

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY----- host secret"


@pytest.fixture
def tree(tmp_path):
    vol = tmp_path / "vol"
    (vol / "d").mkdir(parents=True)
    (vol / "d" / "data").write_bytes(b"volume data")
    (tmp_path / "secret").write_bytes(SECRET)
    return tmp_path, vol


def test_the_walked_file_opens(tree):
    _tmp, vol = tree
    st = os.lstat(vol / "d" / "data")
    fd = open_walked(str(vol / "d" / "data"), st)
    try:
        assert os.read(fd, 100) == b"volume data"
    finally:
        os.close(fd)


def test_a_file_swapped_for_a_symlink_is_not_followed(tree):
    tmp, vol = tree
    st = os.lstat(vol / "d" / "data")
    os.unlink(vol / "d" / "data")
    os.symlink(tmp / "secret", vol / "d" / "data")       # a container sharing the volume does this
    with pytest.raises(OSError):                           # ELOOP: O_NOFOLLOW
        open_walked(str(vol / "d" / "data"), st)


def test_a_parent_swapped_for_a_symlink_leads_nowhere(tree):
    tmp, vol = tree
    st = os.lstat(vol / "d" / "data")
    (tmp / "elsewhere").mkdir()
    os.rename(tmp / "secret", tmp / "elsewhere" / "data")
    os.rename(vol / "d", tmp / "old-d")
    os.symlink(tmp / "elsewhere", vol / "d")               # the parent now leads to the host file
    with pytest.raises(ChangedDuringWalk, match="changed during the walk"):
        open_walked(str(vol / "d" / "data"), st)


def test_the_sender_never_streams_a_file_swapped_in_after_the_walk(tree, monkeypatch):
    tmp, vol = tree
    swapped = []
    real_walk = walk_roots

    def walk_then_swap(roots, live=False):
        for item in real_walk(roots, live):
            if item[1] == "d/data" and not swapped:        # between the walk's lstat and the read
                os.unlink(vol / "d" / "data")
                os.symlink(tmp / "secret", vol / "d" / "data")
                swapped.append(True)
            yield item

    import ansible_collections.edgemig.migration.plugins.module_utils.sender.stream_sender as sender_mod
    monkeypatch.setattr(sender_mod, "walk_roots", walk_then_swap)
    frames = []
    acks = AckState()
    acks.done.set()
    with pytest.raises(OSError):
        StreamSender([("volume/v", str(vol))], make_controller("fixed:none:0", 1), frames.append, acks,
                     workers=1, pipelined=False).run()
    assert swapped and SECRET not in b"".join(frames)
