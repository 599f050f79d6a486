# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What runs on the controller (action and filter plugins, and the module_utils they import) needs nothing
but Python's standard library, ansible-core and the collection: the execution environment
(meta/execution-environment.yml) and a bare controller can run every playbook (docs/evacuation.md)."""
from __future__ import annotations

import ast
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PKG = "ansible_collections.edgemig.migration."


def guarded(tree: ast.AST) -> set[int]:
    """Imports inside ``try: ... except ImportError``: optional, the code runs without them."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in node.handlers):
            out.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return out


def imports(path: str) -> set[str]:
    """The modules ``path`` needs (optional imports left out)."""
    with open(path) as fh:
        tree = ast.parse(fh.read(), path)
    optional = guarded(tree)
    out = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
    return out


def collection_file(module: str) -> str | None:
    rel = module[len(PKG):].replace(".", os.sep)
    for candidate in (os.path.join(ROOT, rel + ".py"), os.path.join(ROOT, rel, "__init__.py")):
        if os.path.exists(candidate):
            return candidate
    return None


def controller_side() -> list[str]:
    return [os.path.join(ROOT, "plugins", kind, name) for kind in ("action", "filter")
            for name in sorted(os.listdir(os.path.join(ROOT, "plugins", kind))) if name.endswith(".py")]


def test_controller_side_imports_only_the_standard_library_ansible_and_the_collection():
    seen, todo, outside = set(), controller_side(), {}
    assert todo, "no controller-side plugins found"
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imports(path):
            top = module.split(".")[0]
            if module.startswith(PKG):
                found = collection_file(module)
                assert found, f"{path}: {module} is not a file of the collection"
                todo.append(found)
            elif top not in sys.stdlib_module_names and top != "ansible":
                outside.setdefault(module, []).append(os.path.relpath(path, ROOT))
    assert any("planning" in p for p in seen), "the evacuation planner was not reached"
    assert outside == {}, outside
