# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A hostile sender edge against the real launcher and receiver (issue 23, findings 1-3).

The receiver is installed as provisioning installs it and started as sshd starts the forced
command of a migration key (SSH_ORIGINAL_COMMAND, no collection importable); Docker is the
fake Engine API of fake_docker.py, which logs every call. A valid ticket for the service
exists in every case, so a refusal is the request's or the ticket's fault, never a missing
ticket's. Every case asserts: refused (exit 3, an error line), nothing written anywhere
outside the ticket store (a snapshot of the whole tree, a canary directory included), the
ticket still unused, and no Docker call at all.
"""
from __future__ import annotations

import json
import os
import shlex
import time

import pytest
from receiver_harness import launch

from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver_install
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.receiver import (
    RequestError,
    Session,
    parse_request,
    session_from_ticket,
)
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.ticket import (
    TicketError,
    check_roots,
    claim,
    peek,
)

VERSION = receiver_install.receiver_version()


def tree(root) -> dict:
    """Every path under ``root`` with its type, size and mtime (the ticket store left out)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "tickets"]
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[path] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def refused(host, command, stdin: bytes = b"") -> str:
    inst, tid, docker, tmp_path = host
    before = tree(tmp_path)
    proc = launch(inst, command, stdin)
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    err = json.loads(proc.stdout.splitlines()[-1])["error"]
    assert tree(tmp_path) == before, "a refused request changed files"
    assert os.path.exists(inst.ticket_path(tid)), "a refused request used the ticket"
    assert docker.calls == [], f"a refused request reached Docker: {docker.calls}"
    assert (tmp_path / "outside" / "keep").read_text() == "secret"
    return err


# ---------------------------------------------------------------- finding 1: other spellings of options
# Every option the receiver ever had, and the ones it has now, in the forms argparse would take.
OLD_OPTIONS = {"--root": "x=/outside", "--clear": "layer", "--create": "x", "--workers": "4",
               "--fault-corrupt-every": "3", "--then-restore": '{"name":"x"}', "--tag": "edgemig-receiver:x",
               "--stall-timeout": "0", "--commit-timeout": "0", "--hello-timeout": "0"}


# The Docker client's endpoint and TLS settings are the ticket's (issue 24): a sender naming its own, in any
# spelling, is refused like any other option (tests/security/test_docker_tls_ticket.py: in the stream).
TLS_OPTIONS = {"--docker-tls": '{"validate_certs":false,"tcp_without_tls":true}', "--docker_tls": '{"tls":true}',
               "--dockerTls": '{"tls":true}', "--DOCKER-TLS": '{"tls":true}', "--tls": "true",
               "--docker-host": "tcp://127.0.0.1:9", "--validate-certs": "false", "--tls-verify": "0",
               "--ca-path": "/etc/../root/x", "--client-cert": "~/cert.pem", "--client-key": "key.pem",
               "--tls-hostname": "{{ lookup('pipe','id') }}", "--tcp-without-tls": "true"}


def variants(opt: str, value: str) -> list[str]:
    return [f"{opt}={value}", f"{opt[:4]} {shlex.quote(value)}", f"{opt[:-1]} {shlex.quote(value)}",
            f"{opt} {shlex.quote(value)}"]


ADDED = [(f"{form}", opt) for opt, value in {**OLD_OPTIONS, **TLS_OPTIONS}.items() for form in variants(opt, value)]


@pytest.mark.parametrize("extra, _opt", ADDED, ids=[a for a, _opt in ADDED])
def test_no_other_option_in_any_spelling(host, extra, _opt):
    inst, tid, _d, _t = host
    err = refused(host, f"{inst.request(tid)} {extra}")
    assert "unknown receiver option" in err or "given twice" in err or "needs a value" in err


@pytest.mark.parametrize("build", [
    lambda i, t: f"{i.launcher} --expect-version={VERSION} --ticket {t}",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket={t}",
    lambda i, t: f"{i.launcher} --expect-vers {VERSION} --ticket {t}",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --tick {t}",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket {t} --ticket {t}",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --expect-version {VERSION} --ticket {t}",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket {t} --commit --commit",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket {t} --commit=1",
    lambda i, t: f"{i.launcher} -- --expect-version {VERSION} --ticket {t}",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket {t} --",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} -- --ticket {t}",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket {t.upper()}",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket ../{t}",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket '{t} '",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket '{t}\n--root x=/outside'",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket {t}; id",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket $(id)",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket {t} --tag edgemig-receiver:apache",
    lambda i, t: f"{i.launcher} --expect-version {VERSION}",
    lambda i, t: f"{i.launcher} --ticket {t}",
    lambda i, t: f"{i.launcher} --expect-version 0000000000000000 --ticket {t}",
    lambda i, t: f"{i.launcher} --expect-version {VERSION} --ticket {t} '",
    lambda i, t: f"{i.launcher} -e {VERSION} -t {t}",
    lambda i, t: f"/bin/sh -c 'id' --ticket {t}",
    lambda i, t: "id",
    lambda i, t: "",
])
def test_malformed_requests_are_refused(host, build):
    inst, tid, _d, _t = host
    refused(host, build(inst, tid))


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"edgemig-receiver --ticket \xff" + b"a" * 31,
                                 b"edgemig-receiver --expect-version " + VERSION.encode() + b" --ticket \xc3\xa9" * 2])
def test_non_utf8_requests_are_refused(host, raw):
    refused(host, raw)


# ---------------------------------------------------------------- tickets: reused, expired, unknown, forged
def test_a_ticket_serves_once(host):
    inst, tid, docker, tmp_path = host
    first = launch(inst, inst.request(tid), b"")        # claims it, then fails on the empty stream
    assert os.path.exists(inst.ticket_path(tid, ".used")) and not os.path.exists(inst.ticket_path(tid))
    assert first.returncode != 0
    second = launch(inst, inst.request(tid), b"")
    assert second.returncode == 3 and "no ticket" in json.loads(second.stdout.splitlines()[-1])["error"]


def test_an_expired_or_unknown_ticket_is_refused(host):
    inst, tid, docker, tmp_path = host
    old = inst.issue({"layer": os.path.join(docker.data_root, "overlay2", "apache", "diff")}, service="apache",
                     ttl=1, now=time.time() - 10)
    err = refused(host, inst.request(old))
    assert "expired" in err
    err = refused(host, inst.request("0" * 32))
    assert "no ticket" in err


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o602])
def test_a_ticket_others_could_have_written_is_refused(host, mode):
    inst, tid, _d, _t = host
    os.chmod(inst.ticket_path(tid), mode)
    assert "readable or writable by others" in refused(host, inst.request(tid))


def test_a_ticket_that_is_a_symlink_is_refused(host, tmp_path):
    inst, tid, _d, _t = host
    real = tmp_path / "forged.json"
    os.rename(inst.ticket_path(tid), real)
    os.symlink(real, inst.ticket_path(tid))
    assert "cannot be read" in refused(host, inst.request(tid))


# ---------------------------------------------------------------- finding 3: roots that alias
@pytest.mark.parametrize("make", [
    lambda b, o: {"layer": o},                                           # outside every allowed dir
    lambda b, o: {"layer": os.path.join(b, "..", "outside")},            # .. that leaves
    lambda b, o: {"layer": "relative/dir"},                              # relative
    lambda b, o: {"layer": os.path.join(b, "x") + "\0/etc"},             # NUL
    lambda b, o: {"layer": b},                                           # an allowed dir itself
    lambda b, o: {"checkpoint": os.path.join(b, "d"), "layer": os.path.join(b, "d")},          # one dir, two names
    lambda b, o: {"checkpoint": os.path.join(b, "d"), "layer": os.path.join(b, "d", "sub")},   # nested
    lambda b, o: {"checkpoint": os.path.join(b, "d", "sub"), "layer": os.path.join(b, "d")},   # nested, other way
    lambda b, o: {"checkpoint": os.path.join(b, "d"), "layer": os.path.join(b, "alias")},      # symlink alias
    lambda b, o: {"layer": os.path.join(b, "escape")},                   # symlink leaving the allowed dir
    lambda b, o: {"../layer": os.path.join(b, "d")},                     # a root name that is a path
    lambda b, o: {"volume/../../etc": os.path.join(b, "d")},
    lambda b, o: {"": os.path.join(b, "d")},
])
def test_roots_that_alias_or_leave_are_refused(tmp_path, make):
    base = tmp_path / "allowed"
    (base / "d" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (base / "alias").symlink_to(base / "d")
    (base / "escape").symlink_to(tmp_path / "outside")
    with pytest.raises(TicketError):
        check_roots(make(str(base), str(tmp_path / "outside")), [str(base)])


def test_the_ticket_store_and_the_receiver_are_never_roots(host):
    inst, _tid, docker, _t = host
    config = {"dump_dir": inst.dump_dir, "allowed_roots": inst.allowed}
    for path in (os.path.join(inst.dump_dir, "tickets"), os.path.join(inst.dump_dir, "tickets", "x")):
        with pytest.raises(TicketError, match="no stream may write"):
            session_from_ticket({"roots": {"layer": path}}, config, commit=False)
    # Defence in depth: a ticket naming a root outside receiver.json's allowed dirs is refused too.
    with pytest.raises(TicketError, match="outside"):
        session_from_ticket({"roots": {"layer": "/etc"}}, config, commit=False)


# ---------------------------------------------------------------- finding 2: the target decides the restore
def test_the_restore_comes_from_the_ticket_and_checks_it(host):
    inst, tid, docker, _t = host
    config = {"dump_dir": inst.dump_dir, "allowed_roots": inst.allowed}
    tk = peek(inst.dump_dir, tid)
    s = session_from_ticket(tk, config, commit=True)
    assert s.then_restore["container_id"] == docker.containers["apache"]["Id"]
    assert s.then_restore["state_dir"] == os.path.realpath(inst.dump_dir)
    assert s.then_restore["checkpoint_dir"] == os.path.realpath(os.path.join(inst.dump_dir, "apache.restore", "edgemig"))
    for bad in ({"container_id": "apache"}, {"container_id": "../x"}, {"name": "a b"}, {"name": "{{ x }}"},
                {"health": "cmd"}, {"address": ["1.2.3.4"]}):
        with pytest.raises(TicketError):
            session_from_ticket(dict(tk, restore={**tk["restore"], **bad}), config, commit=True)
    # A checkpoint root that is not where prepare puts this service's: refused.
    other = dict(tk, roots={**tk["roots"], "checkpoint": os.path.join(inst.dump_dir, "other.restore", "edgemig")})
    with pytest.raises(TicketError, match="where the target's prepare puts it"):
        session_from_ticket(other, config, commit=True)
    # --commit on a ticket without a restore part: refused.
    with pytest.raises(TicketError, match="without a restore"):
        session_from_ticket(dict(tk, restore=None), config, commit=True)


def test_target_faults_come_only_from_the_ticket(host):
    inst, tid, docker, _t = host
    config = {"dump_dir": inst.dump_dir, "allowed_roots": inst.allowed}
    tk = dict(peek(inst.dump_dir, tid), faults={"health": True, "pause_restore": 4, "corrupt_every": 3})
    s = session_from_ticket(tk, config, commit=True)
    assert s.then_restore["health"]["command"] == ["/bin/false"] and s.then_restore["faults"] == {"pause_restore": 4.0}
    assert s.corrupt_every == 3
    # The installed receiver has no fault option: the launcher and the request know none.
    from ansible_collections.edgemig.migration.plugins.module_utils.receiver.receiver import REQUEST_OPTIONS
    with open(inst.launcher) as fh:
        assert "fault" not in fh.read()
    assert not [o for o in REQUEST_OPTIONS if "fault" in o]


def test_restoring_a_running_container_fails_and_keeps_the_checkpoint(host):
    """Docker answers 304 to starting a running container: never a restore."""
    inst, tid, docker, _t = host
    from ansible_collections.edgemig.migration.plugins.module_utils.docker.switchover import (
        SwitchoverError,
        restore_and_switch,
    )
    docker.containers["apache"]["State"]["Running"] = True
    tk = claim(inst.dump_dir, tid)
    s = session_from_ticket(tk, {"dump_dir": inst.dump_dir, "allowed_roots": inst.allowed}, commit=True)
    with open(os.path.join(s.then_restore["checkpoint_dir"], "inventory.img"), "wb") as fh:
        fh.write(b"x")
    with pytest.raises(SwitchoverError, match="already runs"):
        restore_and_switch(s.then_restore)
    assert [c for c in docker.calls if c[0] != "GET"] == [], "no start, no exec, nothing else"
    assert os.listdir(s.then_restore["checkpoint_dir"]) == ["inventory.img"]


def test_a_container_of_another_name_is_never_restored(host):
    inst, tid, docker, _t = host
    from ansible_collections.edgemig.migration.plugins.module_utils.docker.switchover import (
        SwitchoverError,
        restore_and_switch,
    )
    other = docker.add_container("mysql")
    tk = claim(inst.dump_dir, tid)
    spec = session_from_ticket(tk, {"dump_dir": inst.dump_dir, "allowed_roots": inst.allowed},
                               commit=True).then_restore
    with pytest.raises(SwitchoverError, match="is not 'apache'"):
        restore_and_switch(dict(spec, container_id=other["Id"]))
    assert [c for c in docker.calls if c[0] != "GET"] == []


# ---------------------------------------------------------------- the parser alone
@pytest.mark.parametrize("argv", [
    ["--expect-version", VERSION, "--ticket", "a" * 32, "--tag", "edgemig-receiver:apache"],
    ["--expect-version", VERSION],
    ["--ticket", "a" * 32, "--expect-version", VERSION, "--workers", "2"],
])
def test_parse_request_forced(argv):
    with pytest.raises(RequestError):
        parse_request(argv, forced=True)


def test_parse_request_accepts_the_one_form():
    assert parse_request(["--ticket", "a" * 32, "--expect-version", VERSION, "--commit"]) == {
        "ticket": "a" * 32, "expect_version": VERSION, "commit": True}
    assert parse_request(["--expect-version", VERSION, "--ticket", "a" * 32, "--tag", "edgemig-receiver:x"],
                         forced=False)["tag"] == "edgemig-receiver:x"


def test_a_valid_request_streams_where_the_ticket_says(host):
    """The positive control: the same launcher, the same ticket, a real stream: accepted."""
    from ansible_collections.edgemig.migration.plugins.module_utils.sender.controller import make_controller
    from ansible_collections.edgemig.migration.plugins.module_utils.sender.stream_sender import AckState, StreamSender
    inst, tid, docker, tmp_path = host
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"edgemig" * 100)
    frames, acks = [], AckState()
    acks.done.set()
    StreamSender([("layer", str(src))], make_controller("fixed:lz4:1", 1), frames.append, acks, workers=1).run()
    proc = launch(inst, inst.request(tid), b"".join(frames))
    assert proc.returncode == 0, proc.stdout
    upper = os.path.join(docker.data_root, "overlay2", "apache", "diff")
    assert open(os.path.join(upper, "f"), "rb").read() == b"edgemig" * 100
    assert not os.path.exists(os.path.join(inst.dump_dir, "apache.warm")), "warm pages go with the receiver"
    assert Session  # the in-process form of the same session (tests/unit) is the same dataclass
