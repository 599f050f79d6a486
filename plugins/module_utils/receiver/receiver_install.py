# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pinned receiver: its bundle of sources, its launcher, and their installation on an edge.

Provisioning (the migration_trust role, module migration_receiver) installs on every
edge the edgemig-receiver launcher with the receiver's sources beside it. The edges'
migration keys are authorised with that launcher as their forced command, so a
sender's request only names a ticket (receiver.py): no code travels from the sender.
The receiver's version is a digest of its sources: a sender names the version it was
built with, and a target whose receiver differs refuses before anything is frozen.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import json
import os
from functools import cache, lru_cache

# Ansible packs a module's module_utils by following its imports: this one makes it
# pack the receiver (and what it imports) with every module that installs or names
# the receiver, so receiver_bundle finds their sources.
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.receiver import (  # noqa: F401
    CONFIG_NAME,
    LAUNCHER_NAME,
    launch as _receiver_launch,
)

PKG = "ansible_collections.edgemig.migration.plugins.module_utils"
# The receiver bundle is this module and every module_utils module it imports,
# transitively (receiver_modules), with the __init__ of each package they sit in:
# what the target runs, and nothing more.
RECEIVER_ENTRY = f"{PKG}.receiver.receiver"
# Where provisioning installs the receiver on an edge (edgemig_receiver_dir).
RECEIVER_DIR = "/usr/local/lib/edgemig/receiver"
BUNDLE_NAME = "receiver-bundle.json"

# The pinned receiver's launcher, installed on every edge and the forced command of the
# other edges' migration keys. It only loads the installed sources (never anything sent)
# and hands over to receiver.launch, which parses the request with the receiver's own
# parser and checks it. ``-I``: Python ignores PYTHON* variables and the user's site.
LAUNCHER = r'''#!{python} -I
# edgemig receiver launcher, installed by edgemig.migration (migration_trust role).
import importlib.abc, importlib.util, json, os, sys
here = os.path.dirname(os.path.realpath(__file__))
with open(os.path.join(here, {bundle!r})) as fh:
    bundle = json.load(fh)
class _Edgemig(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        package = any(k.startswith(name + ".") for k in bundle)
        if name in bundle or package:
            return importlib.util.spec_from_loader(name, self, is_package=package)
        return None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        src = bundle.get(module.__name__)
        if src is not None:
            exec(compile(src, "edgemig:" + module.__name__, "exec"), module.__dict__)
sys.meta_path.insert(0, _Edgemig())
from ansible_collections.edgemig.migration.plugins.module_utils.receiver.receiver import launch
sys.exit(launch(here, os.path.realpath(__file__), dict(os.environ), sys.argv[1:]))
'''


def module_source(name: str) -> str:
    """Source text of a module_utils module, also when Ansible runs us from a zip."""
    mod = importlib.import_module(name)
    src = None
    loader = getattr(mod, "__loader__", None)
    if loader is not None and hasattr(loader, "get_source"):
        src = loader.get_source(name)
    if src is None:
        with open(mod.__file__, encoding="utf-8") as fh:
            src = fh.read()
    return src


@cache
def _landing(name: str) -> str:
    """The module_utils module or package an import of ``name`` loads: ``PKG.wire.protocol.T_END`` ->
    ``PKG.wire.protocol`` (a module: what follows is a member of it), ``PKG.wire`` -> the package.

    Walks down the packages (module_utils is in sub-packages, docs/design.md) with the import
    system's own finder, so it holds in a checkout and in the zip Ansible runs a module from.
    """
    found = PKG
    for part in name[len(PKG) + 1:].split("."):
        try:
            spec = importlib.util.find_spec(f"{found}.{part}")
        except (ImportError, ValueError):
            spec = None
        if spec is None:  # a member of the package ``found``, not a module of its own
            break
        found = f"{found}.{part}"
        if spec.submodule_search_locations is None:
            break
    return found


def module_utils_imports(source: str, importer: str = RECEIVER_ENTRY) -> set[str]:
    """Full names of the module_utils modules (and packages) that ``source`` imports.

    Every import statement counts, also one inside a function: a lazy import
    still runs on the target. Understood forms: ``from PKG.P.X import y``,
    ``from PKG.P import X``, ``import PKG.P.X`` and the relative ``from .X import
    y`` / ``from ..P.X import y`` (resolved against ``importer``). A name that
    is a package (``from PKG.P import y`` with ``y`` a member of ``P``'s
    ``__init__``) is returned as the package.
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = importer.rsplit(".", node.level)[0]
                base = f"{package}.{base}" if base else package
            # ``from PKG.P import X`` names a module; ``from PKG.P.X import y`` a member of one.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith(PKG + "."):
                found.add(_landing(name))
    return found - {PKG}


def packages_of(name: str) -> list[str]:
    """The module_utils packages ``name`` sits in, outermost first (module_utils itself is not one)."""
    parts = name[len(PKG) + 1:].split(".")[:-1]
    return [".".join([PKG, *parts[:i]]) for i in range(1, len(parts) + 1)]


@lru_cache(maxsize=1)
def receiver_modules() -> tuple[str, ...]:
    """The receiver entry point and everything it imports from module_utils, with the packages
    they sit in (their ``__init__`` runs first on the target too), sorted."""
    todo, seen = [RECEIVER_ENTRY], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(module_utils_imports(module_source(name), name) - seen)
        todo.extend(set(packages_of(name)) - seen)
    return tuple(sorted(seen))


@lru_cache(maxsize=1)
def receiver_bundle() -> bytes:
    """JSON ``{module or package name: source}`` of receiver_modules(): what the launcher imports
    (a package's source is its ``__init__.py``)."""
    return json.dumps({name: module_source(name) for name in receiver_modules()}, sort_keys=True).encode()


def receiver_version() -> str:
    """The receiver's version: a digest of its sources (what sender and receiver must agree on)."""
    return hashlib.sha256(receiver_bundle()).hexdigest()[:16]


def install_receiver(directory: str, python: str, allowed_roots: list[str], dump_dir: str,
                     check_mode: bool = False) -> bool:
    """Install the pinned receiver (launcher, sources, config) into ``directory``; True if anything changed.

    ``dump_dir``: this edge's dump tmpfs, where the tickets are (ticket.ticket_dir).
    """
    files = {
        BUNDLE_NAME: (receiver_bundle(), 0o644),
        CONFIG_NAME: (json.dumps({"version": receiver_version(),
                                  "allowed_roots": sorted(os.path.realpath(a) for a in allowed_roots),
                                  "dump_dir": os.path.realpath(dump_dir)},
                                 indent=1, sort_keys=True).encode(), 0o644),
        LAUNCHER_NAME: (LAUNCHER.format(python=python, bundle=BUNDLE_NAME).encode(), 0o755),
    }
    changed = False
    for name, (data, mode) in files.items():
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as fh:
                same = fh.read() == data and (os.stat(path).st_mode & 0o7777) == mode
        except OSError:
            same = False
        if same:
            continue
        changed = True
        if check_mode:
            continue
        os.makedirs(directory, mode=0o755, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    return changed
