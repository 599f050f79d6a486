# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Minimal clients of the catalog's edge services, for the lab's tests and benchmarks.

Just enough of each protocol to write with an acknowledgement and read state:
Redis (RESP2 over a socket), MQTT 3.1.1 (CONNECT, PUBLISH/SUBSCRIBE at QoS 1,
PUBACK) and PostgreSQL through psycopg. Every call has a timeout; a reset
connection raises OSError and the caller reconnects (a migration resets open
client connections, issue 25). Pure stdlib except psycopg (requirements-dev).
"""
from __future__ import annotations

import socket
import struct


class RedisError(Exception):
    """The server answered with an error reply (-ERR ...)."""


class Redis:
    def __init__(self, host: str, port: int, timeout: float = 3.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = self.sock.makefile("rb")

    def close(self) -> None:
        try:
            self.buf.close()
        finally:
            self.sock.close()

    def __enter__(self) -> Redis:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, *args: str | bytes | int):
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        out = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        self.sock.sendall(out)
        return self._reply()

    def _reply(self):
        line = self.buf.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionResetError("redis: connection closed mid-reply")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.buf.read(n + 2)
            if len(data) != n + 2:
                raise ConnectionResetError("redis: connection closed mid-reply")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _unused in range(n)]
        raise RedisError(f"bad reply {line[:40]!r}")

    def info(self, section: str = "server") -> dict[str, str]:
        text = self.call("INFO", section).decode()
        return dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln and not ln.startswith("#"))


# ----------------------------------------------------------------------------- MQTT 3.1.1

def _mqtt_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _mqtt_len(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class MQTT:
    """One MQTT 3.1.1 connection. ``clean=False`` keeps the session (subscriptions and
    queued QoS 1 messages) on the broker across disconnects."""

    def __init__(self, host: str, port: int, client_id: str, clean: bool = True, keepalive: int = 30,
                 timeout: float = 3.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.next_id = 1
        self.pending: list[tuple[str, bytes, bool]] = []   # PUBLISHes that came while waiting for an ack
        flags = 0x02 if clean else 0x00
        var = _mqtt_str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
        self._send(0x10, var + _mqtt_str(client_id))
        kind, body = self.read_packet()
        if kind != 0x20 or len(body) != 2 or body[1] != 0:
            raise ConnectionError(f"mqtt: CONNACK refused ({kind:#x} {body!r})")
        self.session_present = bool(body[0] & 1)

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        except OSError:
            pass
        self.sock.close()

    def _send(self, header: int, body: bytes) -> None:
        self.sock.sendall(bytes([header]) + _mqtt_len(len(body)) + body)

    def _recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionResetError("mqtt: connection closed")
            data += chunk
        return data

    def read_packet(self) -> tuple[int, bytes]:
        """(packet type with flags, body); raises socket.timeout when nothing came."""
        header = self._recv_exact(1)[0]
        n, mult = 0, 1
        for _unused in range(4):
            byte = self._recv_exact(1)[0]
            n += (byte & 0x7F) * mult
            mult *= 128
            if not byte & 0x80:
                break
        return header, self._recv_exact(n) if n else b""

    def _pid(self) -> int:
        pid = self.next_id
        self.next_id = self.next_id % 65535 + 1
        return pid

    def subscribe(self, topic: str, qos: int = 1) -> None:
        pid = self._pid()
        self._send(0x82, struct.pack("!H", pid) + _mqtt_str(topic) + bytes([qos]))
        while True:
            kind, body = self.read_packet()
            if kind == 0x90 and body[:2] == struct.pack("!H", pid):
                if body[2] == 0x80:
                    raise ConnectionError(f"mqtt: subscription to {topic} refused")
                return
            self._on_other(kind, body)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """At QoS 1 returns only when the broker sent PUBACK (the acknowledgement)."""
        header = 0x30 | (qos << 1) | (1 if retain else 0)
        if qos == 0:
            self._send(header, _mqtt_str(topic) + payload)
            return
        pid = self._pid()
        self._send(header, _mqtt_str(topic) + struct.pack("!H", pid) + payload)
        while True:
            kind, body = self.read_packet()
            if kind == 0x40 and body == struct.pack("!H", pid):
                return
            self._on_other(kind, body)

    def receive(self) -> tuple[str, bytes, bool] | None:
        """The next PUBLISH (topic, payload, retained), acknowledged at QoS 1; None for other packets."""
        if self.pending:
            return self.pending.pop(0)
        kind, body = self.read_packet()
        got = self._on_other(kind, body)
        return self.pending.pop(0) if got else None

    def _on_other(self, kind: int, body: bytes) -> bool:
        """Acknowledge and keep a PUBLISH (for receive); ignore anything else."""
        if kind >> 4 != 3:
            return False
        qos = (kind >> 1) & 3
        n = struct.unpack("!H", body[:2])[0]
        topic = body[2:2 + n].decode()
        rest = body[2 + n:]
        if qos:
            self._send(0x40, rest[:2])  # PUBACK
            rest = rest[2:]
        self.pending.append((topic, rest, bool(kind & 1)))
        return True

    def ping(self) -> None:
        self.sock.sendall(b"\xc0\x00")


def mqtt_sys_uptime(host: str, port: int, client_id: str = "edgemig-probe", timeout: float = 5.0) -> float:
    """The broker's own uptime in seconds ($SYS/broker/uptime, "<n> seconds")."""
    c = MQTT(host, port, client_id, clean=True, timeout=timeout)
    try:
        c.subscribe("$SYS/broker/uptime", qos=0)
        while True:
            got = c.receive()
            if got and got[0] == "$SYS/broker/uptime":
                return float(got[1].split()[0])
    finally:
        c.close()


# ----------------------------------------------------------------------------- PostgreSQL

def pg_connect(spec: dict, host: str | None = None, timeout: int = 3):
    import psycopg
    probe = spec["uptime_probe"]
    return psycopg.connect(host=host or spec["address"], port=probe["port"], user=probe["user"],
                           password=probe["password"], dbname=probe.get("database", "postgres"),
                           connect_timeout=timeout, autocommit=False)
