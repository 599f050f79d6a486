# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Start a container from CRIU images that stay on the dump tmpfs.

Checkpoint images are the service's memory (keys, sessions, passwords) and
must never land on persistent storage. Docker 20.10 restores only from the
container's own ``<data root>/containers/<id>/checkpoints/<name>`` (a custom
checkpoint dir on start is refused), which is on the data root's disk. So,
for the length of the start call, that ``checkpoints`` directory is a
symlink to the directory on the tmpfs that holds ``<name>/``; Docker walks
``checkpoints/<name>`` as a real directory through it. On success the images
are deleted at once: nothing needs them once the processes run.

Docker hands the checkpoint to containerd as a tar (hashed into its content
store, then unpacked into a fresh directory for runc), ~15 ms per MB on an
edge's two cores: 1.5-2 s of MariaDB's restore went there while CRIU's own run
took 0.4 s. The memory pages are nearly all of those bytes, and CRIU opens
``pages-<id>.img`` by name, following a symlink. So the pages are set aside
beside the checkpoint (``<name>.pages/``, same tmpfs) and each is left as a
symlink: the tar carries a link of a few bytes, and CRIU reads the pages
straight from our tmpfs (never a second copy in containerd's directory).

The link is relative, and climbs to the root before naming our path. CRIU
opens the pages from the restored task, already inside the container's root:
an absolute link would be resolved there and not found. A relative one is
resolved from the images directory CRIU opened before that, in the host's
mount tree; enough ``..`` reach that tree's root wherever containerd unpacked
the images, because ``..`` at a root stays there.

Before Docker is pointed at the checkpoint, every entry of its directory must be a
regular file (one link) or a directory, but for the page links set aside made in that
same call (:func:`check_images`): CRIU, run as root, follows a link, so a
``pages-1.img -> /etc/shadow`` sent by a hostile edge would hand that file to the
restored service; a FIFO would hang the restore, a device open the host's.

Every attempt first writes a fresh :data:`RESTORE_NONCE` file into the checkpoint
directory. Docker tars that directory into containerd's content store and commits
it by digest, refusing a digest already there ("failed to upload checkpoint to
containerd: commit failed: content sha256:...: already exists"). Docker's own
checkpoint call leaves exactly that blob behind (its tar of the same files) until
containerd's next garbage collection: a restore on the same daemon right after it
failed 2 of 5 times on Docker 26 / containerd 1.7 (docs/docker26.md). With the nonce
no two restores ever hand containerd the same tar, on any Docker version; CRIU
ignores a file it does not know.

Standard library only (plus criu_images, for CRIU's stats): the receiver ships it.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import threading
import time

from ansible_collections.edgemig.migration.plugins.module_utils.common.timeouts import RESTORE_TIMEOUT_S
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import (
    DockerAPIError,
    already_running_message,
)
from ansible_collections.edgemig.migration.plugins.module_utils.wire.criu_images import ImageError, read_stats
from ansible_collections.edgemig.migration.plugins.module_utils.wire.dump_layout import is_pages_name

CHECKPOINTS = "checkpoints"


def checkpoints_dir(data_root: str, container_id: str) -> str:
    """Where Docker 20.10 looks for a container's checkpoints on ``start --checkpoint``."""
    return os.path.join(data_root, "containers", container_id, CHECKPOINTS)


def restore_parent(dump_dir: str, name: str) -> str:
    """Where a target keeps the checkpoint of ``name`` it receives: ``<dump_dir>/<name>.restore/<checkpoint>``."""
    return os.path.join(dump_dir, f"{name}.restore")


def holds_images(path: str | None) -> bool:
    """Whether ``path`` is a checkpoint directory with images in it."""
    try:
        return bool(path) and os.path.isdir(path) and bool(os.listdir(path))
    except OSError:
        return False


def point_checkpoints_at(data_root: str, container_id: str, parent: str) -> str:
    """Make the container's ``checkpoints`` dir a symlink to ``parent``; returns the link.

    A real ``checkpoints`` directory (the user's own ``docker checkpoint create``
    without a custom dir) is kept, renamed aside, never deleted.
    """
    link = checkpoints_dir(data_root, container_id)
    if os.path.islink(link):
        os.unlink(link)
    elif os.path.isdir(link):
        try:
            os.rmdir(link)
        except OSError:  # not empty
            os.rename(link, f"{link}.before-edgemig-{int(time.time())}")
    os.symlink(parent, link)
    return link


def pages_aside_dir(path: str) -> str:
    """Where :func:`set_pages_aside` keeps the pages of the checkpoint at ``path``."""
    return os.path.abspath(path.rstrip("/")) + ".pages"


# More ``..`` than any directory containerd unpacks into is deep (the kernel allows 40 links
# in a path walk, not 40 components; a link target may be 4095 bytes).
CLIMB = "../" * 64


def climbing_link(target: str) -> str:
    """A relative symlink target that reaches the absolute ``target`` from any directory of its mount tree."""
    return CLIMB + os.path.abspath(target).lstrip("/")


class UnsafeCheckpoint(OSError):
    """The checkpoint directory holds something a restore must not be pointed at.

    An OSError, so every caller that handles a restore failing on the file system
    (keep the images, fall back, fence) handles this one too."""


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return kind
    return f"of unknown type {stat.S_IFMT(mode):o}"


def _plain_file(path: str, st: os.stat_result) -> None:
    """Refuse anything at ``path`` but a regular file with one link."""
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeCheckpoint(f"checkpoint refused: {path} is {_kind(st.st_mode)}, not a regular file")
    if st.st_nlink > 1:
        # A hard link shares its inode with a file elsewhere: its contents are not ours to hand to CRIU.
        raise UnsafeCheckpoint(f"checkpoint refused: {path} is hard-linked ({st.st_nlink} links)")


def _check_dir(path: str) -> None:
    """Refuse a checkpoint directory that is not a directory itself (a symlink to one leads anywhere)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCheckpoint(f"checkpoint refused: {path} is {_kind(st.st_mode)}, not a directory")


def _check_aside(aside: str) -> None:
    """Refuse a :func:`pages_aside_dir` that exists as anything but a real directory.

    A symlink there (``<checkpoint>.pages -> /etc``) would make each page link lead
    wherever it points, past every check of the link itself."""
    try:
        st = os.lstat(aside)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeCheckpoint(f"checkpoint refused: {aside} is {_kind(st.st_mode)}, not the pages' directory")


def _own_link(link: str, aside: str, name: str) -> bool:
    """Whether ``link`` is exactly the link to our set-aside ``name`` (a retried restore's)."""
    try:
        if os.readlink(link) != climbing_link(os.path.join(aside, name)):
            return False
        _plain_file(os.path.join(aside, name), os.lstat(os.path.join(aside, name)))
    except (OSError, ValueError):
        return False
    return True


def set_pages_aside(path: str, links: set[str] | None = None) -> int:
    """Move each ``pages-<id>.img`` of the checkpoint at ``path`` into :func:`pages_aside_dir`,
    leaving a :func:`climbing_link` to it in its place; returns the bytes set aside.

    Only renames: the aside directory is a sibling, so a page file that moves stays on the same
    mount (the dump tmpfs). One that cannot move (``path`` is a mount point of its own: EXDEV)
    stays where it is and makes the trip through containerd as before: slower, never a failure.
    Idempotent (a retried restore finds the links already there).

    ``links`` receives the names of the page links made by this call, the only links
    :func:`check_images` lets through. A page file that is not a regular file with one link
    is refused (UnsafeCheckpoint) before anything moves; a link found in its place is
    replaced only when it is exactly the link an earlier call made to a file it set aside,
    never taken as it is (a sender could have sent ``pages-1.img -> /etc/shadow``).
    """
    made = set() if links is None else links
    _check_dir(path)
    aside = pages_aside_dir(path)
    _check_aside(aside)
    pages = {}
    for entry in os.scandir(path):
        if is_pages_name(entry.name):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode) and _own_link(entry.path, aside, entry.name):
                os.unlink(entry.path)  # made again below, by this call
                continue
            _plain_file(entry.path, st)
            pages[entry.name] = entry.path
    os.makedirs(aside, mode=0o700, exist_ok=True)
    _check_aside(aside)  # made by someone else between the check and here
    moved = 0
    for name, full in sorted(pages.items()):
        kept = os.path.join(aside, name)
        try:
            os.rename(full, kept)
        except OSError:
            continue
        os.symlink(climbing_link(kept), full)
        made.add(name)
        moved += os.lstat(kept).st_size
    for name in os.listdir(aside):  # moved by an attempt that stopped before its link, or linked by one
        link = os.path.join(path, name)
        if is_pages_name(name) and not os.path.lexists(link):
            _plain_file(os.path.join(aside, name), os.lstat(os.path.join(aside, name)))
            os.symlink(climbing_link(os.path.join(aside, name)), link)
            made.add(name)
    try:
        os.rmdir(aside)  # nothing moved: no empty directory left behind
    except OSError:
        pass
    return moved


def check_images(path: str, links: set[str]) -> None:
    """Refuse (UnsafeCheckpoint, naming it) anything under ``path`` that is not a directory or a
    regular file with one link, but for the page links in ``links`` (made by
    :func:`set_pages_aside` in this call, and still pointing where it pointed them).

    Walked with lstat, never following a link: CRIU would follow one as root.
    """
    _check_dir(path)
    aside = pages_aside_dir(path)
    pending = [path]
    while pending:
        top = pending.pop()
        for entry in os.scandir(top):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                pending.append(entry.path)
            elif stat.S_ISLNK(st.st_mode):
                ours = top == path and entry.name in links \
                    and os.readlink(entry.path) == climbing_link(os.path.join(aside, entry.name))
                if not ours:
                    raise UnsafeCheckpoint(f"checkpoint refused: {entry.path} is a symlink "
                                           f"(to {os.readlink(entry.path)!r}) this restore did not make")
            else:
                _plain_file(entry.path, st)


# Not a CRIU image: makes each restore's tar (and so its digest in containerd) unique.
RESTORE_NONCE = "edgemig-restore.nonce"


def write_nonce(path: str) -> str:
    """Write a fresh :data:`RESTORE_NONCE` into the checkpoint at ``path``; returns its contents.

    Whatever is there under that name (a retry's nonce, or anything a sender put there,
    a symlink included) is unlinked first, never followed; the new file is created
    exclusively, a regular file with one link that :func:`check_images` lets through.
    """
    nonce = f"{time.time_ns()} {os.getpid()} {os.urandom(16).hex()}\n"
    target = os.path.join(path, RESTORE_NONCE)
    if os.path.lexists(target):
        if os.path.isdir(target) and not os.path.islink(target):
            raise UnsafeCheckpoint(f"checkpoint refused: {target} is a directory")
        os.unlink(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, nonce.encode())
    finally:
        os.close(fd)
    return nonce


def discard(path: str | None) -> None:
    """Delete a checkpoint's images (a directory on the dump tmpfs, and the pages set aside
    beside it), and its parent once empty."""
    if path:
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(pages_aside_dir(path), ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(os.path.abspath(path)))
        except OSError:
            pass  # not empty (a source's dump dir: the driver removes it) or gone


def start_from_checkpoint(api, name: str, path: str, timeout: float = RESTORE_TIMEOUT_S, inspect: dict | None = None,
                          docker_root: str | None = None) -> dict | None:
    """``docker start --checkpoint`` of ``name`` from the images in ``path`` (``<dir>/<checkpoint>``).

    Raises DockerAPIError (or OSError) when Docker refuses or CRIU fails; the
    images are then kept, the caller decides (retry, fresh start, discard). A container
    that already runs is a failed restore (DockerAPIError 304), found from its inspect
    before anything is touched, or from Docker's answer to the start. A checkpoint
    directory holding anything but directories, regular files and our own page links
    is refused (UnsafeCheckpoint, an OSError) before Docker hears of it.
    Returns CRIU's own account of the restore (:func:`criu_restore_stats`), None when not found.
    ``inspect`` (of ``name``, just taken) and ``docker_root`` (Docker's data root) spare a call to
    Docker each, on the downtime path, when the caller has them.
    """
    path = os.path.abspath(path.rstrip("/"))
    parent, checkpoint = os.path.split(path)
    if inspect is None:
        inspect = api.inspect_container(name)
    if inspect is None:
        raise OSError(f"container {name!r} does not exist here")
    if (inspect.get("State") or {}).get("Running"):
        # Docker would answer 304 and restore nothing; refused before anything moves.
        raise DockerAPIError(304, already_running_message(name, checkpoint))
    if not os.path.lexists(path):
        raise OSError(f"no checkpoint at {path}")
    links: set[str] = set()
    set_pages_aside(path, links)
    check_images(path, links)
    write_nonce(path)
    images = image_sizes(path)
    since = time.time()
    docker_root = docker_root or api.info()["DockerRootDir"]
    link = point_checkpoints_at(docker_root, inspect["Id"], parent)
    held_log = RestoreLogHold(docker_root, inspect["Id"], since)
    try:
        with held_log:
            api.start_container(inspect["Id"], checkpoint=checkpoint, timeout=timeout)
    except DockerAPIError as exc:
        if exc.status != 304:
            said = restore_log_errors(exc.message, docker_root, inspect["Id"], since) or held_log.errors()
            if not said:
                raise
            raise DockerAPIError(exc.status, f"{exc.message}; CRIU says: {said}") from None
        # Started behind our back since the inspect (a restart policy, anyone): a cold copy, not ours.
        raise DockerAPIError(304, already_running_message(name, checkpoint)) from None
    finally:
        if os.path.islink(link):
            os.unlink(link)
        # containerd unpacks a fresh copy for every attempt and keeps none: a failed one's goes too.
        discard_containerd_copy(images, since)
    discard(path)
    return criu_restore_stats(docker_root, inspect["Id"], since)


# Where runc and containerd name CRIU's log in their error: runc 1.1 "criu failed: type NOTIFY errno 0
# log file: <work>/restore.log", containerd's dump "criu failed: type DUMP errno 0 path= <bundle>/criu-dump.log".
LOG_IN_MESSAGE = re.compile(r"(?:path=|log file:)\s*(\S+\.log)")


def error_lines(text: str, lines: int = 8) -> str:
    """The last ``lines`` ``Error`` lines of a CRIU log's text."""
    return "\n".join([line.rstrip() for line in text.splitlines() if "Error" in line][-lines:])


def criu_log_errors(message: str, candidates: list[str], lines: int = 8) -> str:
    """The last ``Error`` lines of the first CRIU log found: the one ``message`` names, else ``candidates``.

    "criu failed: type NOTIFY" says only that CRIU failed; its log says why
    (e.g. "Error (criu/sk-unix.c:...): External socket is used")."""
    for log in LOG_IN_MESSAGE.findall(message or "") + candidates:
        if os.path.isfile(log):
            with open(log, errors="replace") as fh:
                return error_lines(fh.read(), lines)
    return ""


class RestoreLogHold:
    """CRIU's restore.log held open from the moment runc creates it, for as long as the restore call runs.

    When a restore fails, containerd deletes the task's directories, restore.log with them, before
    Docker answers: runc's message names a log that is gone. A file held open stays readable after it is
    unlinked, so a thread looks for the task's fresh restore.log (every ``interval`` s, two opens a look)
    until it holds it or the call returns; :meth:`errors` reads CRIU's ``Error`` lines from it. A
    restore that fails within one interval of CRIU's start can still be missed: then the message is
    runc's alone, as before."""

    TAIL = 256 * 1024  # bytes of the log's end read after a failure (runc's level-4 logs run to megabytes)

    def __init__(self, docker_root: str, container_id: str, since: float, task_dirs=None, interval: float = 0.01):
        self.since = since  # a log older than the call is an earlier restore's (as restore_log_errors says)
        self.paths = [os.path.join(p.format(docker_root=docker_root, id=container_id), "restore.log")
                      for p in task_dirs or TASK_DIRS]
        self.interval = interval
        self.stop = threading.Event()
        self.file = None
        self.text = ""
        self.looks = 0
        self.thread = threading.Thread(target=self._look, name="restore-log-hold", daemon=True)

    def _look(self) -> None:
        while self.file is None and not self.stop.is_set():
            self.looks += 1
            for path in self.paths:
                try:
                    fh = open(path, "rb")
                except OSError:
                    continue
                if os.fstat(fh.fileno()).st_mtime >= self.since - 1:
                    self.file = fh
                    break
                fh.close()
            self.stop.wait(self.interval)

    def __enter__(self) -> RestoreLogHold:
        self.thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop.set()
        self.thread.join()
        if self.file is None:
            return
        try:
            # Read only for Docker's refusal of the restore (a restore that worked keeps its log in place;
            # a timeout says nothing CRIU wrote), and only the log's end: its errors are its last lines.
            if exc_type is not None and issubclass(exc_type, DockerAPIError):
                size = os.fstat(self.file.fileno()).st_size
                self.file.seek(max(0, size - self.TAIL))
                self.text = self.file.read().decode(errors="replace")
        except OSError:
            self.text = ""  # never in the way of the error being raised
        finally:
            self.file.close()

    def errors(self, lines: int = 8) -> str:
        return error_lines(self.text, lines)


def restore_log_errors(message: str, docker_root: str, container_id: str, since: float,
                       task_dirs=None) -> str:
    """:func:`criu_log_errors` of a failed restore: the log runc names, else a restore.log written
    since ``since`` in the task's directory (where :func:`criu_restore_stats` finds it)."""
    fresh = []
    for pattern in task_dirs or TASK_DIRS:
        log = os.path.join(pattern.format(docker_root=docker_root, id=container_id), "restore.log")
        try:
            if os.stat(log).st_mtime >= since - 1:
                fresh.append(log)
        except OSError:
            continue
    return criu_log_errors(message, fresh)


# Where containerd's runc shim keeps a task's work files: runc has CRIU write
# restore.log and stats-restore there, and they stay while the container runs.
# Docker's own containerd lives under Docker's data root; a system one under /var/lib.
TASK_DIRS = ("{docker_root}/containerd/daemon/io.containerd.runtime.v2.task/moby/{id}",
             "/var/lib/containerd/io.containerd.runtime.v2.task/moby/{id}")
_LOG_STAMP = re.compile(rb"^\((\d+\.\d+)\)", re.M)


def criu_restore_stats(docker_root: str, container_id: str, since: float, task_dirs=TASK_DIRS) -> dict | None:
    """CRIU's own times for the restore just done: ``stats-restore`` (forking_s, restore_s,
    pages_restored, ...) plus ``total_s``, the last time stamp of its restore.log (CRIU's
    whole run). What the ``docker start`` call took beyond that is Docker's and containerd's
    work (packing the images into the content store and out again). None when there is no
    fresh stats file (another containerd layout): a measurement, never a reason to fail.
    """
    for pattern in task_dirs:
        task = pattern.format(docker_root=docker_root, id=container_id)
        try:
            if os.stat(os.path.join(task, "stats-restore")).st_mtime < since - 1:
                continue
            out = dict(read_stats(os.path.join(task, "stats-restore")).get("restore") or {})
        except (OSError, ImageError):
            continue
        try:
            with open(os.path.join(task, "restore.log"), "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - 8192))
                stamps = _LOG_STAMP.findall(fh.read())
            if stamps:
                out["total_s"] = float(stamps[-1])
        except OSError:
            pass
        return out
    return None


# containerd 1.6 unpacks the checkpoint it is handed for a restore into a fresh
# ``ctrd-checkpoint*`` directory of its temporary directory ($XDG_RUNTIME_DIR, else
# $TMPDIR, else /tmp) for runc, and never deletes it: every restore would leave the
# service's memory there, on disk unless that directory is a tmpfs.
CONTAINERD_COPY = "ctrd-checkpoint"


def image_sizes(path: str) -> dict[str, int]:
    """``{file name: size}`` of a checkpoint directory (flat, as CRIU writes it)."""
    out = {}
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            out[entry.name] = entry.stat(follow_symlinks=False).st_size
    return out


def containerd_temp_dirs(proc: str = "/proc") -> set[str]:
    """The temporary directories of the containerd daemons running here."""
    out = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:
            with open(os.path.join(proc, pid, "comm"), encoding="utf-8") as fh:
                if fh.read().strip() != "containerd":
                    continue
            with open(os.path.join(proc, pid, "environ"), "rb") as fh:
                env = dict(v.split(b"=", 1) for v in fh.read().split(b"\0") if b"=" in v)
        except OSError:
            continue
        temp = env.get(b"XDG_RUNTIME_DIR") or env.get(b"TMPDIR") or b"/tmp"
        out.add(os.fsdecode(temp))
    return out


def discard_containerd_copy(images: dict[str, int], since: float, temp_dirs: set[str] | None = None) -> list[str]:
    """Delete containerd's copy of the checkpoint just restored; returns what was deleted.

    Only a ``ctrd-checkpoint*`` directory made since ``since`` that holds every one of our
    images, same sizes, is ours (CRIU adds its restore stats to it): another restore running
    beside ours is left alone.
    """
    gone = []
    for temp in containerd_temp_dirs() if temp_dirs is None else temp_dirs:
        try:
            candidates = [e for e in os.scandir(temp) if e.name.startswith(CONTAINERD_COPY)
                          and e.is_dir(follow_symlinks=False) and e.stat(follow_symlinks=False).st_ctime >= since - 1]
        except OSError:
            continue
        for entry in candidates:
            try:
                theirs = image_sizes(entry.path)
            except OSError:
                continue
            if images and all(theirs.get(name) == size for name, size in images.items()):
                shutil.rmtree(entry.path, ignore_errors=True)
                gone.append(entry.path)
    return gone
