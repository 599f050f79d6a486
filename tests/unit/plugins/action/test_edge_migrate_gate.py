# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A move parked ahead, the controller's side (issue 26): the action plugin asks the gate once the module
is parked, and only then; only ``{"go": true}`` releases the freeze. The gate is a real HTTP server on
loopback; Ansible's plumbing (the source's shell) is replaced."""
from __future__ import annotations

import http.server
import json
import subprocess
import threading
import types

import pytest
from fakes import bare_action

from ansible_collections.edgemig.migration.plugins.action import edge_migrate as em
from ansible_collections.edgemig.migration.plugins.module_utils.driver.park import GATE_TIMEOUT_S, LEASE_S, PARK_GRACE_S

PARKED = json.dumps({"elapsed_s": 2.0, "phase": "parked (service running, connected, warm)", "refresh_rounds": 0})


class Gate:
    """A gate on 127.0.0.1: each GET gets ``status`` and ``body`` (after ``hold`` is set, if given)."""

    def __init__(self, body: bytes = b'{"go": true}', status: int = 200, headers: dict | None = None,
                 hold: threading.Event | None = None):
        self.body, self.status, self.headers, self.hold = body, status, headers or {}, hold
        self.paths: list[str] = []
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802  (http.server's name)
                gate.paths.append(self.path)
                if gate.hold is not None:
                    gate.hold.wait(30)
                self.send_response(gate.status)
                for k, v in gate.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(gate.body)))
                self.end_headers()
                self.wfile.write(gate.body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gate/plan-1/k3y"

    def close(self):
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gate_server():
    made = []

    def make(**kw):
        made.append(Gate(**kw))
        return made[-1]
    yield make
    for g in made:
        g.close()


# ---------------------------------------------------------------- the answer
@pytest.mark.parametrize("body, status, go", [
    (b'{"go": true, "plan": "plan-1"}', 200, True),
    (b'{"go": false}', 200, False),
    (b'{"go": "true"}', 200, False),
    (b'{"go": 1}', 200, False),
    (b"[]", 200, False),
    (b'[{"go": true}]', 200, False),
    (b"null", 200, False),
    (b"go", 200, False),
    (b"\xff\xfe garbage", 200, False),
    (b"", 200, False),
    (b"[" * 100000, 200, False),                      # nested past the parser's depth: not an answer
    (b'{"go": true}' + b" " * (em.GATE_ANSWER_MAX + 1), 200, False),   # longer than any answer
    (b'{"go": true}', 500, False),                    # an error that says go is still an error
    (b'{"go": true}', 404, False),
])
def test_only_a_json_object_whose_go_is_true_is_a_go(gate_server, body, status, go):
    g = gate_server(body=body, status=status)
    answer, said = em.ask_gate(g.url, 10)
    assert answer is go and isinstance(said, str) and len(g.paths) == 1
    assert (said == "go") is go


def test_a_redirect_is_not_followed(gate_server):
    elsewhere = gate_server(body=b'{"go": true}')
    g = gate_server(status=302, headers={"Location": elsewhere.url}, body=b"")
    assert em.ask_gate(g.url, 10) == (False, "HTTP 302 from the gate") and elsewhere.paths == []


def test_a_gate_that_does_not_answer_in_time_is_a_no_go(gate_server):
    g = gate_server(hold=threading.Event())
    go, said = em.ask_gate(g.url, 0.2)
    assert go is False and said.startswith("no answer from the gate")


def test_a_gate_nobody_listens_on_is_a_no_go(gate_server):
    g = gate_server()
    url = g.url
    g.close()
    go, said = em.ask_gate(url, 5)
    assert go is False and said.startswith("no answer from the gate")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/gate", "gopher://127.0.0.1:70/",
                                 "http://", "http:///gate", "127.0.0.1:5055/gate", "", None, 5055,
                                 "http://127.0.0.1:5055/gate\r\nX-Injected: 1", "http://127.0.0.1:5055/a b",
                                 "http://127.0.0.1:99999/gate", "http://127.0.0.1:port/gate",
                                 "{{ lookup('pipe', 'id') }}"])
def test_only_http_or_https_urls_as_given_are_asked(url):
    assert em.gate_problem(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:5055/gate/plan-1/k3y", "https://handover.example:8443/gate/p/k",
                                 "http://[::1]:5055/gate/p/k"])
def test_a_gate_url_is_accepted(url):
    assert em.gate_problem(url) is None


# ---------------------------------------------------------------- the task
class Source:
    """The source's shell as the action plugin sees it: ``waits`` are the answers to the waits that ask
    for the parked state too, ``later`` those to the others; every command is logged with what the gate
    had been asked by then."""

    def __init__(self, gate, waits: list[str], later: list[str]):
        self.gate, self.waits, self.later = gate, waits, later
        self.log: list[tuple[str, int]] = []
        self.module_args: dict = {}

    def __call__(self, cmd, **kw):
        asked = len(self.gate.paths) if self.gate else 0
        if cmd.startswith("touch ") and "; f=" in cmd:      # a wait that renews the parked module's lease
            renewed, cmd = cmd.split("; ", 1)
            assert renewed.split()[1].endswith("/lease") and kw.get("sudoable") is True
            self.log.append(("renew", asked))
        if cmd.startswith("umask"):
            self.log.append(("start", asked))
            return {"rc": 0, "stdout": "edgemig-started\n"}
        if cmd.startswith("f="):
            parked = "grep -q" in cmd
            self.log.append(("wait-parked" if parked else "wait", asked))
            answers = self.waits if parked else self.later
            return {"rc": 0, "stdout": answers.pop(0) if answers else 'done\n{"changed": true}\n'}
        self.log.append((cmd.split()[0] + " " + cmd.split()[-1].rsplit("/", 1)[-1] if cmd.startswith("touch")
                         else cmd.split()[0], asked))
        assert not cmd.startswith("touch") or kw.get("sudoable") is True
        return {"rc": 0, "stdout": ""}


def run_task(monkeypatch, args: dict, source: Source, pipelining: bool = True):
    act = bare_action(monkeypatch, em, args, pipelining)
    act._low_level_execute_command = source

    def execute_module(module_name=None, module_args=None, task_vars=None, wrap_async=False):
        source.log.append(("module-async" if wrap_async else "module", len(source.gate.paths) if source.gate else 0))
        act.module_args = dict(module_args or {})
        return {"ansible_job_id": "j1", "results_file": "/root/.ansible_async/j1", "started": True}
    act._execute_module = execute_module
    res = act.run(task_vars={"inventory_hostname": "edge1"})
    source.module_args = act.module_args
    return res


def parked_run(released: bool, refresh: int = 2) -> str:
    return "done\n" + json.dumps({"changed": released, "parked": {"released": released, "waited_s": 1.5,
                                                                  "refresh_rounds": refresh,
                                                                  **({} if released else {"why": "no-go at the gate"})}})


def test_the_gate_is_asked_once_the_module_is_parked_and_its_go_released(gate_server, monkeypatch):
    g = gate_server(body=b'{"go": true, "plan": "plan-1"}')
    src = Source(g, waits=["running\n\n" + json.dumps({"phase": "warm round 1 (service running)"}),
                           "parked\n\n" + PARKED],
                 later=["running\n\n" + PARKED,      # still parked in its progress: asked once all the same
                        parked_run(True)])
    res = run_task(monkeypatch, {"name": "apache", "gate": g.url, "gate_timeout": 120}, src)
    assert [e for e, _asked in src.log] == ["start", "wait-parked", "wait-parked", "touch go", "wait", "wait", "rm"]
    assert [asked for e, asked in src.log if e.startswith("wait-parked") or e == "start"] == [0, 0, 0]
    assert g.paths == ["/gate/plan-1/k3y"]                               # once, as given
    park = src.module_args["park"]
    assert park["dir"].startswith("/tmp/edgemig-job-") and park["timeout"] == 120 + PARK_GRACE_S and park["lease_s"] == LEASE_S
    assert "gate" not in src.module_args and "gate_timeout" not in src.module_args
    assert res["parked"] == {"released": True, "waited_s": 1.5, "refresh_rounds": 2, "gate": "go"}


@pytest.mark.parametrize("body, status", [(b'{"go": false}', 200), (b'{"go": "true"}', 200), (b"[]", 200),
                                          (b"<html>", 200), (b'{"go": true}', 503)])
def test_anything_but_go_is_a_nogo_for_the_module(gate_server, monkeypatch, body, status):
    g = gate_server(body=body, status=status)
    src = Source(g, waits=["parked\n\n" + PARKED], later=[parked_run(False)])
    res = run_task(monkeypatch, {"name": "apache", "gate": g.url}, src)
    assert [e for e, _asked in src.log] == ["start", "wait-parked", "touch nogo", "wait", "rm"]
    assert src.module_args["park"]["timeout"] == GATE_TIMEOUT_S + PARK_GRACE_S and len(g.paths) == 1
    assert res["changed"] is False and res["parked"]["released"] is False and res["parked"]["gate"] != "go"


def test_a_module_that_ends_while_the_gate_is_asked_ends_the_task(gate_server, monkeypatch):
    """The gate long-polls; the parked module fails meanwhile (its link dropped): its result is the task's,
    nothing is released."""
    monkeypatch.setattr(em, "PARK_CHECK_S", 0.05)
    g = gate_server(hold=threading.Event())
    failed = 'done\n{"failed": true, "msg": "parked migration failed: link down", "rolled_back": "not_needed"}'
    src = Source(g, waits=["parked\n\n" + PARKED], later=["running\n\n" + PARKED, failed, failed])
    res = run_task(monkeypatch, {"name": "apache", "gate": g.url}, src)
    assert res["failed"] is True and res["rolled_back"] == "not_needed"
    assert not any(e.startswith("touch") for e, _asked in src.log)
    assert ("renew", 1) in src.log    # the parked module's lease was renewed while the gate was asked


def test_without_a_gate_nothing_parks(monkeypatch):
    src = Source(None, waits=[], later=['done\n{"changed": true}'])
    res = run_task(monkeypatch, {"name": "apache"}, src)
    assert res == {"changed": True} and "park" not in src.module_args
    assert [e for e, _asked in src.log] == ["start", "wait", "rm"]


@pytest.mark.parametrize("args, says", [
    ({"gate": "file:///etc/passwd"}, "http or https"),
    ({"gate": "http://127.0.0.1:5055/g", "gate_timeout": 0}, "gate_timeout"),
    ({"gate": "http://127.0.0.1:5055/g", "gate_timeout": "soon"}, "gate_timeout"),
])
def test_a_gate_that_cannot_be_asked_fails_before_anything_starts(monkeypatch, args, says):
    src = Source(None, waits=[], later=[])
    res = run_task(monkeypatch, dict({"name": "apache"}, **args), src)
    assert res["failed"] and says in res["msg"] and "nothing was started" in res["msg"] and src.log == []


def test_without_pipelining_the_gate_is_asked_before_the_module_starts(gate_server, monkeypatch):
    g = gate_server(body=b'{"go": false}')
    src = Source(g, waits=[], later=[])
    res = run_task(monkeypatch, {"name": "apache", "gate": g.url}, src, pipelining=False)
    assert res["changed"] is False and res["parked"]["released"] is False and res["parked"]["gate"] == "no-go"
    assert src.log == [] and len(g.paths) == 1                            # the module never started
    g.body = b'{"go": true}'
    src = Source(g, waits=[], later=['done\n{"changed": true}'])
    res = run_task(monkeypatch, {"name": "apache", "gate": g.url}, src, pipelining=False)
    assert res["changed"] is True and res["parked"] == {"released": True, "gate": "go"}
    assert src.log[0] == ("module-async", 2) and "park" not in src.module_args   # asked before the start


def test_the_parked_wait_ends_when_the_progress_says_parked(tmp_path):
    """The source's side of the wait, run by sh against real files: it returns "parked" at once."""
    results, progress = tmp_path / "result", tmp_path / "p.json"
    results.write_text('{"started": true}')
    progress.write_text(PARKED)
    out = subprocess.run(["sh", "-c", em.wait_command(str(results), str(progress), 20, parked=True)],
                         capture_output=True, text=True, check=True, timeout=15).stdout
    assert em.parse_wait(out) == ("parked", "", json.loads(PARKED))
    progress.write_text(json.dumps({"phase": "warm round 1 (service running)"}))
    out = subprocess.run(["sh", "-c", em.wait_command(str(results), str(progress), 0.2, parked=True)],
                         capture_output=True, text=True, check=True, timeout=15).stdout
    assert em.parse_wait(out)[0] == "running"


def test_the_users_park_settings_stand_but_the_gate_directory_is_the_jobs(gate_server, monkeypatch):
    g = gate_server()
    src = Source(g, waits=["parked\n\n" + PARKED], later=[parked_run(True)])
    run_task(monkeypatch, {"name": "apache", "gate": g.url, "gate_timeout": 30,
                           "park": {"dir": "/elsewhere", "refresh_s": 2.5, "timeout": None}}, src)
    park = src.module_args["park"]
    assert park["dir"].startswith("/tmp/edgemig-job-") and park["refresh_s"] == 2.5 and park["timeout"] == 30 + PARK_GRACE_S
    src = Source(g, waits=[], later=[])
    res = run_task(monkeypatch, {"name": "apache", "gate": g.url, "park": "dir=/x"}, src)
    assert res["failed"] and "park must be a dict" in res["msg"] and src.log == []


def test_a_module_killed_while_the_gate_is_asked_is_not_called_released(gate_server, monkeypatch):
    monkeypatch.setattr(em, "PARK_CHECK_S", 0.05)
    g = gate_server(hold=threading.Event())
    killed = "done\nno output: the module exited with status 137"
    src = Source(g, waits=["parked\n\n" + PARKED], later=[killed, killed, "tail\n"])
    res = run_task(monkeypatch, {"name": "apache", "gate": g.url}, src)
    assert res["failed"] is True and "without a result" in res["msg"] and "parked" not in res


class SshConnection:
    """The ssh connection as AnswerChannel uses it, its ssh run away: the remote command runs here."""
    transport = "ssh"
    become = None

    def __init__(self, **options):
        self.options = {"host": "edge1", "ssh_executable": "ssh", "password": None, "pkcs11_provider": None, **options}
        self._play_context = types.SimpleNamespace(remote_addr="edge1", password=None)
        self.built: list = []

    def get_option(self, name):
        return self.options[name]

    def _build_command(self, binary, subsystem, host, cmd):
        self.built.append((binary, subsystem, host))
        return [b"sh", b"-c", cmd.encode()]


def test_the_answer_channel_writes_only_the_answer_it_is_given(tmp_path):
    conn = SshConnection()
    channel = em.AnswerChannel.open(conn, str(tmp_path))
    assert conn.built == [("ssh", "ssh", "edge1")]
    assert channel.answer("go") is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go"]
    channel.close()
    # Anything else (a path, a second word) writes nothing and says so: the caller falls back.
    for bad in ("../go", "go nogo", "lease"):
        channel = em.AnswerChannel.open(conn, str(tmp_path))
        assert channel.answer(bad) is False
        channel.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go"]


def test_a_channel_closed_without_an_answer_writes_nothing(tmp_path):
    channel = em.AnswerChannel.open(SshConnection(), str(tmp_path / "job dir; touch x"))
    channel.close()
    assert list(tmp_path.iterdir()) == []
    assert channel.answer("go") is False                      # gone: the caller sends it as a command


@pytest.mark.parametrize("conn", [
    types.SimpleNamespace(transport="paramiko_ssh", become=None),
    types.SimpleNamespace(transport="local", become=None),
])
def test_no_channel_but_through_ssh(conn, tmp_path):
    assert em.AnswerChannel.open(conn, str(tmp_path)) is None


def test_no_channel_where_a_prompt_would_wait(tmp_path):
    conn = SshConnection()
    conn.become = object()                                    # sudo may ask for a password
    assert em.AnswerChannel.open(conn, str(tmp_path)) is None
    assert em.AnswerChannel.open(SshConnection(password="secret"), str(tmp_path)) is None
    assert em.AnswerChannel.open(SshConnection(pkcs11_provider="/lib/p11.so"), str(tmp_path)) is None


def test_an_answer_the_channel_could_not_give_goes_as_a_command(monkeypatch, tmp_path):
    act = bare_action(monkeypatch, em)
    sent = []
    act._low_level_execute_command = lambda cmd, **kw: sent.append(cmd) or {"rc": 0}
    channel = em.AnswerChannel.open(SshConnection(), str(tmp_path))
    channel.close()                                           # the channel died before the answer
    act._release(str(tmp_path), "go", channel)
    assert sent == [f"touch {tmp_path}/go"]
    channel = em.AnswerChannel.open(SshConnection(), str(tmp_path))
    act._release(str(tmp_path), "nogo", channel)
    assert sent == [f"touch {tmp_path}/go"] and (tmp_path / "nogo").exists()
