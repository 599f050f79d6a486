# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The receiver's Docker client is the ticket's, never the sender's (issue 24, the hostile-peer rule).

The ticket's restore part names the target's Docker endpoint and its TLS settings (``docker_host``,
``docker_tls``: options.DockerTLSOptions' fields), as the controller's prepare reached that Docker. A
hostile sender (an edge holding the edge-to-edge key and a ticket) tries to name its own: in the HELLO,
END and COMMIT frames, in camelCase, other case, nested, with extra keys, as a ``tls`` / ``docker_host``
override, with paths that alias (``..``, ``~``, relative), Jinja-looking values, in files it writes into
its roots, and in the forced command's environment. Every client the receiver builds (switchover's
``DockerAPI``, watched here) must carry the ticket's endpoint and settings; an "attacker's Docker" (a
second fake) must hear nothing; and the restore must still happen (the attack reached the place where
the client is made). Then the ticket itself: a docker_tls with wrong types, unknown keys, relative paths
or paths in the stream's own roots (which the sender writes) is refused with a TicketError at the
receiver's start, before anything is frozen or Docker asked; and a ticket not root's is refused.
"""
from __future__ import annotations

import io
import json
import os

import pytest
from fake_docker import FakeDocker
from receiver_harness import launch

from ansible_collections.edgemig.migration.plugins.module_utils.docker import switchover, tmpfs_restore
from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPI, DockerTLS
from ansible_collections.edgemig.migration.plugins.module_utils.receiver import receiver
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.ticket import TicketError, peek
from ansible_collections.edgemig.migration.plugins.module_utils.sender.controller import make_controller
from ansible_collections.edgemig.migration.plugins.module_utils.sender.stream_sender import AckState, StreamSender
from ansible_collections.edgemig.migration.plugins.module_utils.wire import protocol as P

# What the controller's prepare wrote: every field set, none of them enabling TLS (the fake Docker is a
# unix socket, where TLS is refused), so each is seen when it reaches the client and the restore still runs.
TICKET_TLS = {"tls": False, "validate_certs": False, "ca_path": "/etc/edgemig-target/ca.pem",
              "client_cert": "/etc/edgemig-target/cert.pem", "client_key": "/etc/edgemig-target/key.pem",
              "tls_hostname": "docker.target.test", "tcp_without_tls": False}
# What a hostile sender would like the client to use.
HOSTILE_TLS = {"tls": True, "validate_certs": False, "tcp_without_tls": True, "ca_path": "/etc/../root/x",
               "client_cert": "~/.docker/cert.pem", "client_key": "key.pem",
               "tls_hostname": "{{ lookup('pipe', 'id') }}"}


def hostile_forms(attacker_url: str) -> list[dict]:
    """The keys a sender adds to its HELLO, END and COMMIT frames."""
    plain = {k: v for k, v in HOSTILE_TLS.items() if k not in ("tls", "validate_certs")}  # TLS off: unix works
    return [
        {"docker_tls": HOSTILE_TLS},
        {"dockerTls": HOSTILE_TLS, "DockerTLS": HOSTILE_TLS},
        {"DOCKER_TLS": HOSTILE_TLS, "Docker_Tls": HOSTILE_TLS, "docker-tls": HOSTILE_TLS},
        {"docker_tls": {**HOSTILE_TLS, "ssl_version": "SSLv3", "verify": False, "ca_cert": "/tmp/ca.pem"}},
        {"restore": {"docker_tls": HOSTILE_TLS, "docker_host": attacker_url}},
        {"then_restore": {"docker_tls": plain, "docker_host": attacker_url}, "ticket": {"restore": {"docker_tls": plain}}},
        {"spec": {"restore": {"docker_tls": HOSTILE_TLS}}, "options": {"docker_tls": HOSTILE_TLS}},
        {**HOSTILE_TLS, "docker_host": attacker_url},
        {**plain, "docker_host": attacker_url, "DOCKER_HOST": attacker_url, "dockerHost": attacker_url},
        {"tls": True, "TLS": True, "docker_url": attacker_url},
        {"docker_tls": "{{ hostvars['edge1'].edgemig_docker_tls }}",
         "docker_host": "{{ lookup('env', 'DOCKER_HOST') }}"},
    ]


FORM_IDS = ["docker_tls", "camelCase", "other-case", "extra-keys", "nested-restore", "nested-deeper",
            "nested-other", "flat", "docker_host", "tls-override", "jinja"]


@pytest.fixture
def target(host, tmp_path, monkeypatch):
    """``host`` with a ticket whose restore names TICKET_TLS, an attacker's Docker, and a log of every
    Docker client switchover builds (endpoint, TLS settings), failed ones included."""
    inst, tid, docker, _t = host
    tk = peek(inst.dump_dir, tid)
    tid = inst.issue(tk["roots"], clear=tk["clear"], create=tk["create"], service="apache",
                     restore={**tk["restore"], "docker_tls": TICKET_TLS})
    built = []

    class Watched(DockerAPI):
        def __init__(self, base_url, timeout=120.0, tls=None):
            built.append((base_url, tls))
            super().__init__(base_url, timeout=timeout, tls=tls)
    monkeypatch.setattr(switchover, "DockerAPI", Watched)
    # This machine's containerd (if any) is not the test's business (as in test_restore_checks.py).
    monkeypatch.setattr(tmpfs_restore, "containerd_temp_dirs", set)
    with FakeDocker(str(tmp_path / "attacker")) as attacker:
        yield inst, tid, docker, attacker, built, tmp_path


def sender_tree(tmp_path) -> list[tuple[str, str]]:
    """What the sender streams: a checkpoint, and a layer holding files named like TLS settings."""
    ckpt, layer = tmp_path / "src-ckpt", tmp_path / "src-layer"
    ckpt.mkdir()
    (ckpt / "core-1.img").write_bytes(b"c" * 300)
    (ckpt / "pages-1.img").write_bytes(b"p" * 8192)
    (layer / ".docker").mkdir(parents=True)
    (layer / ".docker" / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nforged\n")
    (layer / "docker_tls.json").write_text(json.dumps(HOSTILE_TLS))
    (layer / "receiver.json").write_text(json.dumps({"docker_tls": HOSTILE_TLS}))
    os.symlink("/etc/../root/x", layer / "key.pem")
    return [("checkpoint", str(ckpt)), ("layer", str(layer))]


def hostile_stream(roots: list[tuple[str, str]], extra: dict, migration: str) -> bytes:
    """A real sender's stream with ``extra`` added to its HELLO and END, then a COMMIT carrying it too."""
    frames, acks = [], AckState()
    acks.done.set()
    StreamSender(roots, make_controller("fixed:lz4:1", 1), frames.append, acks, workers=1).run()
    reader, out = P.FrameReader(io.BytesIO(b"".join(frames)).read), []
    while True:
        ftype, payload = reader.next()
        if ftype in (P.T_HELLO, P.T_END):
            out.append(P.json_frame(ftype, {**json.loads(payload), **extra}))
        else:
            out.append(P.frame(ftype, payload))
        if ftype == P.T_END:
            break
    out.append(P.json_frame(P.T_COMMIT, {"migration": migration, **extra}))
    return b"".join(out)


def assert_the_tickets_client_only(docker, attacker, built) -> None:
    """Restored through clients that all carry the ticket's endpoint and TLS; the attacker heard nothing."""
    assert docker.running("apache") and docker.restored_from == [["core-1.img", "pages-1.img"]]
    assert built, "the restore made no Docker client: the attack never reached the place it aims at"
    assert set(built) == {(docker.url, DockerTLS(**TICKET_TLS))}, built
    assert attacker.calls == [], f"the sender's endpoint was asked: {attacker.calls}"


@pytest.mark.parametrize("form", range(len(FORM_IDS)), ids=FORM_IDS)
def test_a_senders_docker_tls_in_the_stream_never_reaches_the_client(target, form):
    inst, tid, docker, attacker, built, tmp_path = target
    extra = hostile_forms(attacker.url)[form]
    out = io.BytesIO()
    rc = receiver.main({"ticket": tid, "commit": True}, {"dump_dir": inst.dump_dir, "allowed_roots": inst.allowed},
                       stdin=io.BytesIO(hostile_stream(sender_tree(tmp_path), extra, tid)), stdout=out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert rc == 0 and replies[-1].get("ok"), replies[-1]
    assert_the_tickets_client_only(docker, attacker, built)


def test_the_fence_after_a_failed_restore_uses_the_tickets_client_too(target, monkeypatch):
    """Past COMMIT a failed restore fences with a fresh client: the ticket's as well."""
    inst, tid, docker, attacker, built, tmp_path = target
    monkeypatch.setattr(switchover, "wait_healthy", lambda *_a: (False, 0.0, "forced unhealthy"))
    out = io.BytesIO()
    rc = receiver.main({"ticket": tid, "commit": True}, {"dump_dir": inst.dump_dir, "allowed_roots": inst.allowed},
                       stdin=io.BytesIO(hostile_stream(sender_tree(tmp_path), hostile_forms(attacker.url)[4], tid)),
                       stdout=out)
    final = json.loads(out.getvalue().splitlines()[-1])
    assert rc == 1 and final["fenced"] is True and "forced unhealthy" in final["error"]
    assert docker.calls_to("DELETE"), "the fence removed nothing"
    assert len(built) >= 2 and set(built) == {(docker.url, DockerTLS(**TICKET_TLS))}, built
    assert attacker.calls == []


def test_the_forced_commands_environment_does_not_choose_the_docker_client(target):
    """The installed launcher as sshd starts it, with Docker's and OpenSSL's variables set to the sender's
    choice (sshd passes none of them; were one accepted, it must still change nothing)."""
    inst, tid, docker, attacker, _built, tmp_path = target
    env = {"DOCKER_HOST": attacker.url, "DOCKER_TLS": "1", "DOCKER_TLS_VERIFY": "1",
           "DOCKER_CERT_PATH": str(tmp_path), "DOCKER_TLS_HOSTNAME": "attacker", "SSL_CERT_FILE": "/etc/../root/x"}
    proc = launch(inst, inst.request(tid, commit=True), hostile_stream(sender_tree(tmp_path), {}, tid), env=env)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert docker.running("apache") and attacker.calls == []


# ---------------------------------------------------------------- the ticket's docker_tls, checked
def ticket_with(host, docker_tls) -> dict:
    inst, tid, _d, _t = host
    tk = peek(inst.dump_dir, tid)
    return dict(tk, restore={**tk["restore"], "docker_tls": docker_tls})


def session(host, tk):
    inst = host[0]
    return receiver.session_from_ticket(tk, {"dump_dir": inst.dump_dir, "allowed_roots": inst.allowed}, commit=True)


@pytest.mark.parametrize("docker_tls, words", [
    (["tls"], "object"),
    ('{"tls": true}', "object"),
    (True, "object"),
    ({"ca_path": ["/x"]}, "ca_path"),
    ({"ca_path": {"path": "/x"}}, "ca_path"),
    ({"ca_path": True}, "ca_path"),
    ({"tls_hostname": 5}, "tls_hostname"),
    ({"validate_certs": 1}, "validate_certs"),
    ({"validate_certs": "false"}, "validate_certs"),
    ({"tcp_without_tls": "no"}, "tcp_without_tls"),       # a non-empty string is true: plain HTTP to tcp://
    ({"tls": {"validate_certs": True}}, "tls"),
    ({"verify": False}, "verify"),
    ({"ca_cert": "/etc/docker/ca.pem"}, "ca_cert"),         # a module alias: the ticket holds the option's name
    ({"validateCerts": True}, "validateCerts"),
    ({"VALIDATE_CERTS": True}, "VALIDATE_CERTS"),
    ({"docker_host": "tcp://127.0.0.1:9"}, "docker_host"),
    ({"dockerTls": {"tls": True}}, "dockerTls"),
    ({"ca_path": "certs/ca.pem"}, "absolute"),
    ({"client_cert": "~/.docker/cert.pem"}, "absolute"),
    ({"client_key": "~root/key.pem"}, "absolute"),
    ({"ca_path": ""}, "absolute"),
    ({"ca_path": "{{ lookup('file', '/etc/shadow') }}"}, "absolute"),
    ({"ca_path": "/etc/docker/ca.pem\0/x"}, "NUL"),
    ({"tls_hostname": "docker\0.evil"}, "NUL"),
])
def test_a_ticket_whose_docker_tls_is_not_the_options_is_refused(host, docker_tls, words):
    with pytest.raises(TicketError, match="docker_tls") as exc:
        session(host, ticket_with(host, docker_tls))
    assert words in str(exc.value)


@pytest.mark.parametrize("where", ["layer", "checkpoint", "volume", "dotdot", "symlink", "other-service"])
def test_a_ticket_whose_tls_files_lie_where_streams_write_is_refused(host, where):
    """Senders write there (this ticket's roots, or another service's under receiver.json's allowed_roots):
    a certificate there would be a sender's to choose."""
    inst, tid, docker, tmp_path = host
    roots = peek(inst.dump_dir, tid)["roots"]
    link = tmp_path / "certs-link"
    link.symlink_to(roots["layer"])
    path = {"layer": os.path.join(roots["layer"], "etc", "ca.pem"),
            "checkpoint": os.path.join(roots["checkpoint"], "ca.pem"),
            "volume": os.path.join(roots["volume/data"], "certs", "ca.pem"),
            "dotdot": os.path.join(inst.dump_dir, "..", "dumps", "apache.restore", "edgemig", "ca.pem"),
            "symlink": os.path.join(str(link), "ca.pem"),
            "other-service": os.path.join(docker.data_root, "volumes", "certs", "_data", "ca.pem")}[where]
    with pytest.raises(TicketError, match="docker_tls ca_path .* lies under .*, which streams write"):
        session(host, ticket_with(host, {"validate_certs": True, "ca_path": path}))


@pytest.mark.parametrize("docker_tls", [
    None, {}, TICKET_TLS, {k: None for k in TICKET_TLS},
    {"validate_certs": True, "ca_path": "/etc/../etc/docker/ca.pem"},  # aliases, but stays out of the roots
])
def test_a_ticket_with_the_prepares_docker_tls_is_taken_as_written(host, docker_tls):
    spec = session(host, ticket_with(host, docker_tls)).then_restore
    assert spec["docker_tls"] == docker_tls
    assert DockerTLS.from_dict(spec["docker_tls"]) == DockerTLS.from_dict(docker_tls)


def test_a_forged_docker_tls_is_refused_at_the_start_before_docker_is_asked(host):
    """Through the receiver's entry: an error line, exit 3, no Docker call, nothing restored."""
    inst, tid, docker, _t = host
    tk = ticket_with(host, {"tcp_without_tls": "false"})   # before the check: plain HTTP to that tcp:// port
    forged = inst.issue(tk["roots"], clear=tk["clear"], create=tk["create"], service="apache",
                        restore={**tk["restore"], "docker_host": "tcp://127.0.0.1:9"})
    out = io.BytesIO()
    rc = receiver.main({"ticket": forged, "commit": True}, {"dump_dir": inst.dump_dir, "allowed_roots": inst.allowed},
                       stdin=io.BytesIO(b""), stdout=out)
    err = json.loads(out.getvalue().splitlines()[-1])["error"]
    assert rc == 3 and "docker_tls" in err and "tcp_without_tls" in err
    assert docker.calls == [] and not docker.running("apache")


# ---------------------------------------------------------------- who wrote the ticket
@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
@pytest.mark.parametrize("uid, gid", [(65534, 0), (1000, 1000)])
def test_a_ticket_not_roots_is_refused(host, uid, gid):
    """The receiver runs as root: only root's tickets are taken (ticket._read), whatever their mode."""
    inst, tid, docker, _t = host
    os.chown(inst.ticket_path(tid), uid, gid)
    with pytest.raises(TicketError, match="not owned by root"):
        peek(inst.dump_dir, tid)
    proc = launch(inst, inst.request(tid, commit=True), b"")
    assert proc.returncode == 3 and "not owned by root" in json.loads(proc.stdout.splitlines()[-1])["error"]
    assert os.path.exists(inst.ticket_path(tid)) and docker.calls == []
