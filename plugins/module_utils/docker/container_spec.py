# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Container create bodies: from a catalog entry (deploy) or from a source
container's inspect output (the migration target must match the source).
"""
from __future__ import annotations

import hashlib
import json

LABEL_SERVICE = "edgemig.service"
LABEL_SPEC = "edgemig.spec-hash"

# HostConfig keys carried from source to target. Anything host-specific
# (cgroup parents, device paths, log paths) is left to the target daemon.
HOSTCONFIG_KEYS = (
    "Binds", "PortBindings", "Mounts", "RestartPolicy", "CapAdd", "CapDrop", "Privileged",
    "Memory", "MemorySwap", "NanoCpus", "CpuShares", "PidsLimit", "ShmSize", "Tmpfs", "Sysctls",
    "SecurityOpt", "Ulimits", "ReadonlyRootfs", "ExtraHosts", "Dns", "Init", "NetworkMode",
    "IpcMode", "PidMode", "UTSMode",
)
CONFIG_KEYS = (
    "Hostname", "Domainname", "User", "Env", "Cmd", "Entrypoint", "WorkingDir", "ExposedPorts",
    "Labels", "StopSignal", "StopTimeout", "Tty", "OpenStdin",
)


# Every field a catalog entry may have (inventory/example/group_vars/all/catalog.yml
# documents them); anything else is a typo worth an error, not a silent no-op.
CATALOG_FIELDS = frozenset((
    "image", "build", "archive", "command", "entrypoint", "env", "ports", "volumes", "address",
    "health", "uptime_probe", "url", "hostname",
    # evacuate.yml's planner only (evacuation_plan.py): where its users are, whether it faces them,
    # whether a neighbour without its image may pull it
    "near", "user_facing", "pullable",
))


def spec_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def from_catalog(service: str, spec: dict) -> dict:
    """Create body for a catalog service (see docs/design.md for the shape)."""
    if not spec.get("image"):
        raise ValueError(f"service {service!r}: catalog entry has no image")
    unknown = sorted(set(spec) - CATALOG_FIELDS)
    if unknown:
        raise ValueError(f"service {service!r}: unknown catalog field(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(CATALOG_FIELDS))})")
    exposed, bindings = {}, {}
    for port in spec.get("ports") or []:
        key = f"{int(port['container'])}/{port.get('proto', 'tcp')}"
        exposed[key] = {}
        if port.get("host"):
            bindings[key] = [{"HostIp": port.get("host_ip", ""), "HostPort": str(port["host"])}]
    mounts = [{"Type": "volume", "Source": v["name"], "Target": v["path"]}
              for v in spec.get("volumes") or []]
    body = {
        "Image": spec["image"],
        "Hostname": spec.get("hostname", service),
        "Env": [f"{k}={v}" for k, v in sorted((spec.get("env") or {}).items())],
        "ExposedPorts": exposed,
        "Labels": {LABEL_SERVICE: service, LABEL_SPEC: spec_hash(spec)},
        "HostConfig": {"PortBindings": bindings, "Mounts": mounts,
                       "RestartPolicy": {"Name": "no"}},
    }
    # As in a Dockerfile: a list is the exec form, a string the shell form.
    for field, key in (("entrypoint", "Entrypoint"), ("command", "Cmd")):
        if spec.get(field):
            value = spec[field]
            body[key] = ["/bin/sh", "-c", value] if isinstance(value, str) else [str(v) for v in value]
    return body


def from_inspect(inspect: dict) -> dict:
    """Create body reproducing an existing container on another daemon.

    The image is referenced by ID: the target must hold the very same base
    image (the paper's shared base image), not just one with the same tag.
    """
    config = inspect.get("Config") or {}
    host = inspect.get("HostConfig") or {}
    body = {k: config[k] for k in CONFIG_KEYS if config.get(k) is not None}
    body["Image"] = inspect["Image"]
    hc = {k: host[k] for k in HOSTCONFIG_KEYS if host.get(k) not in (None, "", [], {})}
    # Named volumes are re-created by name; bind mounts stay as the user wrote them.
    mounts = []
    for m in inspect.get("Mounts") or []:
        if m.get("Type") == "volume" and m.get("Name"):
            mounts.append({"Type": "volume", "Source": m["Name"], "Target": m["Destination"]})
    if mounts:
        hc["Mounts"] = mounts
    # Binds of named volumes (``-v name:/path``) are covered by Mounts above.
    binds = [b for b in hc.pop("Binds", None) or [] if b.startswith("/")]
    if binds:
        hc["Binds"] = binds
    body["HostConfig"] = hc
    return body


def upper_dir(inspect: dict) -> str | None:
    """The overlay2 writable layer (UpperDir) of a container."""
    gd = inspect.get("GraphDriver") or {}
    if gd.get("Name") != "overlay2":
        return None
    return (gd.get("Data") or {}).get("UpperDir")


def volumes(inspect: dict) -> list[dict]:
    return [{"name": m["Name"], "path": m.get("Source"), "destination": m["Destination"]}
            for m in inspect.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Name")]


def pair_volumes(source: list[dict], target: list[dict]) -> list[tuple[str, str, str]]:
    """(name, source path, target path) of every source volume; ValueError naming one the target lacks."""
    target_paths = {v.get("name"): v.get("path") for v in target or []}
    out = []
    for vol in source or []:
        if vol.get("name") not in target_paths:
            raise ValueError(f"volume {vol.get('name')!r} has no counterpart on the target "
                             f"(target volumes: {sorted(n for n in target_paths if n)})")
        out.append((vol["name"], vol.get("path"), target_paths[vol["name"]]))
    return out


def summary(inspect: dict | None) -> dict:
    if inspect is None:
        return {"exists": False, "running": False}
    state = inspect.get("State") or {}
    return {
        "exists": True,
        "running": bool(state.get("Running")),
        "status": state.get("Status"),
        "id": inspect.get("Id"),
        "name": (inspect.get("Name") or "").lstrip("/"),
        "image_id": inspect.get("Image"),
        "image": (inspect.get("Config") or {}).get("Image"),
        "started_at": state.get("StartedAt"),
        "labels": (inspect.get("Config") or {}).get("Labels") or {},
        "upper_dir": upper_dir(inspect),
        "volumes": volumes(inspect),
        "ip_address": (inspect.get("NetworkSettings") or {}).get("IPAddress"),
    }
