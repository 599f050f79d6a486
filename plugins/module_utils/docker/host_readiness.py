# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Is an edge host ready for live migration? CRIU, Docker, dump tmpfs, runc.conf.

The parsing and the verdict are pure functions (unit-tested); the few probes
that touch the host (run ``criu``, stat a path, read a file) take their
inputs as arguments so that the module stays a thin wrapper.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Callable
from typing import Any

from ansible_collections.edgemig.migration.plugins.module_utils.docker.docker_api import DockerAPIError

# What a ready host has, unless the caller asks otherwise (migration_host_info's options;
# migration_survey takes these as they are): the one home of these defaults.
CRIU_MIN_VERSION = "4.2"
RUNC_CONF_PATH = "/etc/criu/runc.conf"
REQUIRED_RUNC_OPTIONS = ("skip-in-flight",)
STORAGE_DRIVER = "overlay2"

_VERSION_RE = re.compile(r"Version:\s*([0-9]+(?:\.[0-9]+)*)")


def parse_criu_version(text: str) -> str | None:
    """``criu --version`` output -> ``"4.2.1"`` (None if there is no version line)."""
    match = _VERSION_RE.search(text or "")
    return match.group(1) if match else None


def version_tuple(version: str) -> tuple[int, ...]:
    """``"4.2.1"`` -> ``(4, 2, 1)``; non-numeric parts stop the parse."""
    parts = []
    for part in str(version).split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        parts.append(int(match.group(0)))
    return tuple(parts)


def version_at_least(version: str | None, minimum: str) -> bool:
    """True if ``version`` >= ``minimum`` (missing parts count as 0)."""
    if not version:
        return False
    have, want = list(version_tuple(version)), list(version_tuple(minimum))
    width = max(len(have), len(want))
    have += [0] * (width - len(have))
    want += [0] * (width - len(want))
    return have >= want


def read_text(path: str) -> str | None:
    """A small text file (runc.conf, a /proc file), None when it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def parse_runc_conf(text: str) -> list[str]:
    """CRIU config file (one option per line, ``#`` comments) -> option names without dashes.

    ``tcp-close`` / ``--tcp-close`` -> ``tcp-close``; an option with a value
    (``ghost-limit 10M``) keeps it (``ghost-limit 10M``).
    """
    options = []
    for line in (text or "").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        options.append(line.lstrip("-"))
    return options


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """``/proc/self/mountinfo`` -> ``[(mount point, fs type), ...]`` in mount order."""
    mounts = []
    for line in (text or "").splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or not rfields:
            continue
        mounts.append((_unescape_mountinfo(fields[4]), rfields[0]))
    return mounts


def fs_type_of(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """File system type of ``path``: the last-mounted, longest mount point containing it."""
    path = os.path.normpath(path)
    best: tuple[int, str] | None = None
    for mount_point, fs_type in mounts:
        mp = os.path.normpath(mount_point)
        if path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/":
            if best is None or len(mp) >= best[0]:
                best = (len(mp), fs_type)
    return best[1] if best else None


def fs_type(path: str, mountinfo_path: str = "/proc/self/mountinfo") -> str | None:
    """File system type of the mount holding ``path`` on this host (symlinks resolved)."""
    try:
        with open(mountinfo_path, encoding="utf-8") as fh:
            mountinfo = fh.read()
    except OSError:
        return None
    return fs_type_of(os.path.realpath(path), parse_mountinfo(mountinfo))


# x86 flags naming instructions a process may execute. glibc, OpenSSL and JITs pick their code
# paths from CPUID once, at start: a process restored on a CPU without one of these can die with
# SIGILL. The other flags (tsc, apic, hypervisor, ...) are the kernel's business.
_X86_ISA = re.compile(r"^(fpu|cx8|cx16|cmov|mmx\w*|fxsr|sse\w*|ssse3|avx\w*|fma\w*|f16c|bmi\d|adx|aes|vaes|"
                      r"pclmulqdq|vpclmulqdq|gfni|sha_ni|popcnt|abm|lzcnt|movbe|rdrand|rdseed|xsave\w*|amx\w*|"
                      r"clflushopt|clwb|erms|fsrm|movdir\w*|serialize|rdpid|lahf_lm|prefetchw|3dnow\w*|avx512\w*)$")


def cpu_features(cpuinfo: str) -> dict:
    """The instruction-set features a restored process may rely on, from /proc/cpuinfo.

    x86: the ISA flags of the first CPU (``_X86_ISA``); other architectures: the whole
    ``Features`` line (arm64's hwcaps are all user-visible).
    """
    for line in (cpuinfo or "").splitlines():
        key, _sep, value = line.partition(":")
        key = key.strip()
        if key == "flags":
            return {"arch": "x86", "isa": sorted(f for f in value.split() if _X86_ISA.match(f))}
        if key == "Features":
            return {"arch": "other", "isa": sorted(value.split())}
    return {"arch": "unknown", "isa": []}


def docker_facts(info: dict | None, version: dict | None) -> dict:
    """The readiness-relevant parts of ``GET /info`` and ``GET /version``."""
    info = info or {}
    version = version or {}
    return {
        "version": version.get("Version") or info.get("ServerVersion"),
        "api_version": version.get("ApiVersion"),
        "experimental": bool(info.get("ExperimentalBuild", version.get("Experimental", False))),
        "data_root": info.get("DockerRootDir"),
        "storage_driver": info.get("Driver"),
    }


def dump_dir_facts(path: str | None, mountinfo: str = "",
                   stat_fn: Callable[[str], Any] = os.stat,
                   statvfs_fn: Callable[[str], Any] = os.statvfs) -> dict:
    """Existence, fs type, free bytes and mode of the dump directory."""
    facts: dict[str, Any] = {"path": path, "exists": False, "fs_type": None,
                             "free_bytes": None, "mode": None, "is_tmpfs": False}
    if not path:
        return facts
    try:
        st = stat_fn(path)
    except OSError:
        return facts
    if not stat.S_ISDIR(st.st_mode):
        return facts
    facts["exists"] = True
    facts["mode"] = "%04o" % stat.S_IMODE(st.st_mode)
    try:
        vfs = statvfs_fn(path)
        facts["free_bytes"] = vfs.f_bavail * vfs.f_frsize
    except OSError:
        pass
    facts["fs_type"] = fs_type_of(path, parse_mountinfo(mountinfo))
    facts["is_tmpfs"] = facts["fs_type"] == "tmpfs"
    return facts


def problems(criu: dict, docker: dict, dump_dir: dict, runc_conf: dict, *,
             min_version: str, required_runc_options: list[str],
             storage_driver: str = "overlay2", min_free_bytes: int = 0) -> list[str]:
    """The reasons a host is not ready; an empty list means ready."""
    out = []
    if not criu.get("path"):
        out.append("criu: not found on PATH")
    else:
        if criu.get("check_ok") is False:
            last = (criu.get("check_output") or "").strip().splitlines()[-1:] or [""]
            out.append(f"criu: `criu check` fails ({criu.get('path')}): {last[0]}".rstrip(": "))
        if not version_at_least(criu.get("version"), min_version):
            out.append(f"criu: version {criu.get('version') or 'unknown'} is older than {min_version}")
    if docker.get("error"):
        out.append(f"docker: {docker['error']}")
    else:
        if not docker.get("experimental"):
            out.append(f"docker: the experimental API is off at {docker.get('host')} (checkpoint/restore needs it)")
        if storage_driver and docker.get("storage_driver") != storage_driver:
            out.append(f"docker: storage driver is {docker.get('storage_driver')}, not {storage_driver}")
    if dump_dir.get("path"):
        if not dump_dir.get("exists"):
            out.append(f"dump_dir: {dump_dir['path']} does not exist")
        else:
            if not dump_dir.get("is_tmpfs"):
                out.append(f"dump_dir: {dump_dir['path']} is on {dump_dir.get('fs_type')}, not tmpfs")
            if min_free_bytes and (dump_dir.get("free_bytes") or 0) < min_free_bytes:
                out.append(f"dump_dir: {dump_dir['path']} has {dump_dir.get('free_bytes')} bytes free,"
                           f" less than {min_free_bytes}")
    have = {opt.split()[0] for opt in runc_conf.get("options") or []}
    missing = [opt for opt in required_runc_options if opt.lstrip("-") not in have]
    if missing:
        where = runc_conf.get("path") if runc_conf.get("exists") else f"{runc_conf.get('path')} (missing)"
        out.append(f"runc.conf: {where} lacks {', '.join(missing)}")
    return out


def host_report(run_command: Callable[[list[str]], tuple[int, str, str]], api, *, criu_path: str | None = None,
                criu_min_version: str = CRIU_MIN_VERSION, run_criu_check: bool = True, dump_dir: str | None = None,
                min_free_bytes: int = 0, runc_conf: str = RUNC_CONF_PATH,
                required_runc_options=REQUIRED_RUNC_OPTIONS, storage_driver: str = STORAGE_DRIVER) -> dict:
    """The host's readiness as migration_host_info returns it: ready, problems, criu, docker,
    dump_dir, runc_conf, cpu. ``run_command``: AnsibleModule.run_command; ``api``: docker_api."""
    # CRIU: the one runc would find, unless told otherwise.
    criu_path = criu_path or shutil.which("criu")
    criu = {"path": criu_path, "version": None, "min_version": criu_min_version,
            "check_ok": None, "check_output": None}
    if criu_path and not os.access(criu_path, os.X_OK):
        criu.update(path=None)
    elif criu_path:
        _rc, out, err = run_command([criu_path, "--version"])
        criu["version"] = parse_criu_version(out + err)
        if run_criu_check:
            rc, out, err = run_command([criu_path, "check"])
            criu["check_ok"] = rc == 0
            criu["check_output"] = (out + err).strip()

    docker = {"host": api.base_url, "error": None}
    try:
        docker.update(docker_facts(api.info(), api.version()))
    except DockerAPIError as exc:
        docker.update(docker_facts(None, None), experimental=False, error=str(exc))

    dump = dump_dir_facts(dump_dir, read_text("/proc/self/mountinfo") or "")
    conf_text = read_text(runc_conf)
    conf = {"path": runc_conf, "exists": conf_text is not None, "options": parse_runc_conf(conf_text or "")}
    found = problems(criu, docker, dump, conf, min_version=criu_min_version,
                     required_runc_options=list(required_runc_options), storage_driver=storage_driver,
                     min_free_bytes=min_free_bytes)
    return {"ready": not found, "problems": found, "criu": criu, "docker": docker, "dump_dir": dump,
            "runc_conf": conf, "cpu": cpu_features(read_text("/proc/cpuinfo") or "")}
