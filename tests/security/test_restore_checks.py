# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 23, the restore's own checks, against the real tmpfs_restore and switchover and a fake dockerd.

- Starting a container that already runs is a failed restore (Docker answers 304 and restores
  nothing): refused, its checkpoint kept.
- Before Docker is pointed at a checkpoint, everything in its directory is a directory or a
  regular file with one link, but for the page links set_pages_aside made in that same call:
  a sender's ``pages-1.img -> /etc/shadow``, a FIFO, a device, a socket or a hard link is
  refused, naming it, before any Docker call that changes anything (the fake's log shows).
"""
from __future__ import annotations

import os
import socket
import stat

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.docker import switchover, tmpfs_restore as tr
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError

PAGES = b"p" * 8192
CORE = b"c" * 300


@pytest.fixture(autouse=True)
def _no_containerd(monkeypatch):
    # This machine's containerd (if any) and its temporary directory are not the test's business.
    monkeypatch.setattr(tr, "containerd_temp_dirs", set)


def checkpoint(tmp_path, pages: bytes | None = PAGES) -> str:
    """A received checkpoint on the 'dump tmpfs': ``<dump>/web.restore/edgemig``."""
    ckpt = tmp_path / "dump" / "web.restore" / "edgemig"
    ckpt.mkdir(parents=True)
    (ckpt / "core-1.img").write_bytes(CORE)
    if pages is not None:
        (ckpt / "pages-1.img").write_bytes(pages)
    return str(ckpt)


def no_start(fake) -> None:
    """Docker was asked nothing that changes anything: no start, no exec, no removal."""
    assert fake.changing_calls() == [], fake.changing_calls()


# --- 304: a running container is never "restored" --------------------------------------------

def test_a_running_container_is_refused_before_anything_moves(fake_docker, tmp_path):
    fake_docker.add_container("web", running=True)
    ckpt = checkpoint(tmp_path)
    with pytest.raises(DockerAPIError) as exc:
        tr.start_from_checkpoint(fake_docker.api(), "web", ckpt)
    assert exc.value.status == 304
    assert exc.value.message == "container web is already running: not restored from its checkpoint"
    no_start(fake_docker)
    assert not os.path.islink(os.path.join(ckpt, "pages-1.img"))                # not even set aside
    assert open(os.path.join(ckpt, "pages-1.img"), "rb").read() == PAGES        # checkpoint kept


def test_a_container_cold_started_behind_our_back_answers_304_and_the_checkpoint_stays(fake_docker, tmp_path):
    # Inspect says stopped; by the start, a restart policy (or anyone) started it cold.
    fake_docker.add_container("web", restart_policy="always")
    real_inspect = fake_docker._container_inspect

    def inspect_then_cold_start(ref, **kw):
        answer = real_inspect(ref, **kw)
        snapshot = (answer[0], {**answer[1], "State": dict(answer[1]["State"])})
        fake_docker.containers["web"]["State"].update(Running=True, Status="running")
        return snapshot
    fake_docker._container_inspect = inspect_then_cold_start
    ckpt = checkpoint(tmp_path)
    with pytest.raises(DockerAPIError) as exc:
        tr.start_from_checkpoint(fake_docker.api(), "web", ckpt)
    assert exc.value.status == 304
    assert exc.value.message == "container web is already running: not restored from its checkpoint"
    starts = fake_docker.calls_to("POST", "/start")
    assert len(starts) == 1 and starts[0][2] == {"checkpoint": "edgemig"}
    assert fake_docker.restored_from == []                                        # nothing was restored
    assert open(os.path.join(ckpt, "pages-1.img"), "rb").read() == PAGES         # kept (through our link)
    assert os.path.isfile(os.path.join(ckpt, "core-1.img"))
    assert not os.path.lexists(os.path.join(fake_docker.container_dir("web"), "checkpoints"))  # link undone


def test_switchover_reports_a_running_target_as_a_failed_restore_and_keeps_the_images(fake_docker, tmp_path):
    fake_docker.add_container("web", running=True)
    ckpt = checkpoint(tmp_path)
    with pytest.raises(switchover.SwitchoverError, match="not restored from its checkpoint"):
        switchover.restore_and_switch({"docker_host": fake_docker.url, "name": "web", "checkpoint_dir": ckpt})
    no_start(fake_docker)
    assert os.path.isfile(os.path.join(ckpt, "core-1.img"))


def test_a_good_checkpoint_restores_and_is_deleted(fake_docker, tmp_path):
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path)
    tr.start_from_checkpoint(fake_docker.api(), "web", ckpt)
    assert fake_docker.running("web") and fake_docker.restored_from == [["core-1.img", "pages-1.img"]]
    assert not os.path.exists(ckpt) and not os.path.exists(tr.pages_aside_dir(ckpt))


def test_a_retry_after_a_failed_start_takes_the_links_the_first_attempt_made(fake_docker, tmp_path):
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path)
    assert tr.set_pages_aside(ckpt) == len(PAGES)                                # as the failed attempt did
    assert os.path.islink(os.path.join(ckpt, "pages-1.img"))
    tr.start_from_checkpoint(fake_docker.api(), "web", ckpt)                     # the retry
    assert fake_docker.running("web") and not os.path.exists(ckpt)


# --- the checkpoint directory: regular files and directories only --------------------------------

def refused(fake, ckpt, match):
    with pytest.raises(tr.UnsafeCheckpoint, match=match):
        tr.start_from_checkpoint(fake.api(), "web", ckpt)
    no_start(fake)


@pytest.mark.parametrize("target", ["/etc/shadow", tr.climbing_link("/etc/shadow"), "../../../../etc/shadow"])
def test_a_page_link_sent_by_the_sender_is_refused_and_left_alone(fake_docker, tmp_path, target):
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path, pages=None)
    os.symlink(target, os.path.join(ckpt, "pages-1.img"))
    refused(fake_docker, ckpt, r"pages-1\.img is a symlink")
    assert os.readlink(os.path.join(ckpt, "pages-1.img")) == target              # not moved, not followed
    assert not os.path.exists(tr.pages_aside_dir(ckpt))


def test_a_link_that_looks_like_ours_but_leads_to_a_file_we_did_not_set_aside_is_refused(fake_docker, tmp_path):
    # The exact form of our own link, to the aside directory, where nothing of ours is.
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path, pages=None)
    os.symlink(tr.climbing_link(os.path.join(tr.pages_aside_dir(ckpt), "pages-1.img")),
               os.path.join(ckpt, "pages-1.img"))
    refused(fake_docker, ckpt, r"pages-1\.img is a symlink")


def test_an_aside_directory_that_is_a_symlink_is_refused(fake_docker, tmp_path):
    fake_docker.add_container("web")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pages-1.img").write_bytes(b"secret")                             # stands for /etc/shadow
    ckpt = checkpoint(tmp_path, pages=None)
    os.symlink(str(elsewhere), tr.pages_aside_dir(ckpt))
    os.symlink(tr.climbing_link(os.path.join(tr.pages_aside_dir(ckpt), "pages-1.img")),
               os.path.join(ckpt, "pages-1.img"))
    refused(fake_docker, ckpt, r"edgemig\.pages is a symlink")
    assert (elsewhere / "pages-1.img").read_bytes() == b"secret"


def test_any_other_symlink_even_nested_is_refused(fake_docker, tmp_path):
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path)
    os.mkdir(os.path.join(ckpt, "sub"))
    os.symlink("/etc/passwd", os.path.join(ckpt, "sub", "core-2.img"))
    refused(fake_docker, ckpt, r"sub/core-2\.img is a symlink \(to '/etc/passwd'\)")


def test_a_fifo_is_refused_without_being_opened(fake_docker, tmp_path):
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path)
    os.mkfifo(os.path.join(ckpt, "fdinfo-2.img"))                                  # opening it would hang
    refused(fake_docker, ckpt, r"fdinfo-2\.img is a FIFO")


def test_a_page_file_that_is_a_fifo_is_refused_before_it_moves(fake_docker, tmp_path):
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path, pages=None)
    os.mkfifo(os.path.join(ckpt, "pages-1.img"))
    refused(fake_docker, ckpt, r"pages-1\.img is a FIFO")
    assert stat.S_ISFIFO(os.lstat(os.path.join(ckpt, "pages-1.img")).st_mode)


def test_a_socket_is_refused(fake_docker, tmp_path):
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(os.path.join(ckpt, "s.img"))
        refused(fake_docker, ckpt, r"s\.img is a socket")
    finally:
        sock.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_a_device_node_is_refused(fake_docker, tmp_path):
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path)
    os.mknod(os.path.join(ckpt, "tty.img"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    refused(fake_docker, ckpt, r"tty\.img is a character device")


@pytest.mark.parametrize("name", ["core-1.img", "pages-1.img"])
def test_a_hard_link_to_a_file_elsewhere_is_refused(fake_docker, tmp_path, name):
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path)
    outside = tmp_path / "outside-file"
    os.rename(os.path.join(ckpt, name), outside)
    os.link(outside, os.path.join(ckpt, name))
    refused(fake_docker, ckpt, rf"{name.replace('.', '[.]')} is hard-linked \(2 links\)")
    assert not os.path.islink(os.path.join(ckpt, name))                          # a page file was not moved


def test_the_checkpoint_directory_itself_as_a_symlink_is_refused(fake_docker, tmp_path):
    fake_docker.add_container("web")
    real = checkpoint(tmp_path)
    link = tmp_path / "dump" / "web.restore" / "linked"
    os.symlink(real, link)
    refused(fake_docker, str(link), r"linked is a symlink, not a directory")
    assert not os.path.exists(tr.pages_aside_dir(str(link)))                     # nothing moved through it
    assert not os.path.islink(os.path.join(real, "pages-1.img"))


def test_switchover_refuses_a_sent_link_before_starting_anything(fake_docker, tmp_path):
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path, pages=None)
    os.symlink(tr.climbing_link("/etc/shadow"), os.path.join(ckpt, "pages-1.img"))
    with pytest.raises(switchover.SwitchoverError, match=r"pages-1\.img is a symlink"):
        switchover.restore_and_switch({"docker_host": fake_docker.url, "name": "web", "checkpoint_dir": ckpt})
    no_start(fake_docker)
    assert not fake_docker.running("web")


# --- containerd's content store: a restore's tar is never one containerd already holds -------

def test_a_restore_right_after_dockers_own_checkpoint_call_is_not_refused_as_already_existing(fake_docker, tmp_path):
    # Docker's checkpoint call leaves the blob of its tar of these very files until containerd's
    # next GC; Docker 26 then refused the restore ("commit failed: ... already exists"), 2 of 5 times.
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path)
    fake_docker.leave_checkpoint_blob(ckpt)
    tr.set_pages_aside(ckpt)
    fake_docker.leave_checkpoint_blob(ckpt)                                      # and as a failed attempt left it
    tr.start_from_checkpoint(fake_docker.api(), "web", ckpt)
    assert fake_docker.running("web") and fake_docker.restored_from == [["core-1.img", "pages-1.img"]]


def test_the_fake_refuses_a_tar_it_already_holds(fake_docker, tmp_path):
    # The fake plays the refusal (else the test above proves nothing): the same files, no nonce.
    fake_docker.add_container("web")
    ckpt = checkpoint(tmp_path)
    os.symlink(os.path.dirname(ckpt), os.path.join(fake_docker.container_dir("web"), "checkpoints"))
    fake_docker.leave_checkpoint_blob(ckpt)
    with pytest.raises(DockerAPIError, match=r"commit failed: content sha256:[0-9a-f]{64}: already exists"):
        fake_docker.api().start_container("web", checkpoint="edgemig")
    assert not fake_docker.running("web")


def test_each_attempt_writes_a_fresh_nonce_and_never_follows_one_it_finds(fake_docker, tmp_path):
    ckpt = checkpoint(tmp_path)
    first = tr.write_nonce(ckpt)
    assert tr.write_nonce(ckpt) != first
    secret = tmp_path / "secret"
    secret.write_text("keep")
    nonce = os.path.join(ckpt, tr.RESTORE_NONCE)
    os.unlink(nonce)
    os.symlink(str(secret), nonce)                                                # a sender's link
    tr.write_nonce(ckpt)
    assert secret.read_text() == "keep" and not os.path.islink(nonce) and os.stat(nonce).st_nlink == 1
