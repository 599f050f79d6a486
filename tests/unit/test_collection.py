# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection builds and every module's documentation renders."""
from __future__ import annotations

import os
import re
import subprocess
import tarfile

import pytest
from collection_path import COLLECTIONS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "plugins", "modules")) if f.endswith(".py"))
ENV = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
           ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))


def test_galaxy_build(collection_tarball):
    tarball = collection_tarball
    assert os.path.basename(tarball) == "edgemig-migration-0.1.0.tar.gz"
    # What a user installs: the collection, not this checkout's lab, benchmarks, caches or reports.
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    for must in ("MANIFEST.json", "plugins/modules/edge_migrate.py", "playbooks/migrate.yml",
                 "roles/base_images/tasks/main.yml", "plugins/filter/literal.py", "plugins/action/edge_migrate.py"):
        assert must in names, must
    for name in names:
        top = name.split("/", 1)[0]
        assert top not in ("bench", "lab", "reports", ".cache", ".hypothesis", ".benchmarks", ".ansible", ".git",
                           "Makefile", "ansible.cfg"), name
        assert "__pycache__" not in name and not (name.startswith("docs/") and name.endswith(".json")), name
        # issue 24: no tests that import the unshipped bench/ and lab/, no bench pictures, no lab inventory
        assert not name.startswith(("tests/unit", "tests/integration", "tests/security", "docs/img")), name
        assert not name.startswith("inventory/lab/") and name != "requirements-dev.txt", name
    # The real-host example ships with a catalog of its own (documentation addresses, not the lab's).
    assert "inventory/example/hosts.yml" in names and "inventory/example/group_vars/all/catalog.yml" in names
    for role in sorted(os.listdir(os.path.join(ROOT, "roles"))):
        assert f"roles/{role}/README.md" in names, f"role {role} has no README.md (galaxy-importer refuses it)"
    assert "requirements.yml" in names and "tests/sanity/ignore-2.19.txt" in names


# Markdown links: inline [text](target "title") and ![alt](target), reference definitions [x]: target,
# and HTML href/src; fenced code blocks are not text.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)"
                  r"|(?:href|src)=\"([^\"]+)\"", re.M)
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)


def relative_links(markdown: str) -> list[str]:
    """The relative link targets of a Markdown text, without #fragments; external and in-page links left out."""
    found = []
    for m in LINK.finditer(FENCE.sub("", markdown)):
        target = next(g for g in m.groups() if g)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith(("#", "//")):
            continue
        found.append(target.split("#", 1)[0])
    return found


def test_relative_links_are_found():
    text = ("[a](docs/design.md#commit-point) ![b](img/x.png \"t\") [c](https://example.org/) [d](#here)\n"
            "[e]: ../roles/criu/README.md\n<img src=\"img/y.png\">\n```\n[f](not/a/link.md)\n```\n")
    assert relative_links(text) == ["docs/design.md", "img/x.png", "../roles/criu/README.md", "img/y.png"]


def test_shipped_docs_link_only_to_what_the_tarball_ships(collection_tarball):
    """Issue 24: README.md, docs/*.md and the roles' READMEs as installed: every relative link resolves to a
    file (or directory) of the tarball; something deliberately not shipped is named as text instead."""
    with tarfile.open(collection_tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
        docs = [n for n in members if members[n].isfile() and (
            n == "README.md" or re.fullmatch(r"docs/[^/]+\.md", n) or re.fullmatch(r"roles/[^/]+/README\.md", n))]
        assert "README.md" in docs and "docs/design.md" in docs and "roles/criu/README.md" in docs, docs
        broken = []
        for name in sorted(docs):
            text = tar.extractfile(members[name]).read().decode("utf-8")
            for target in relative_links(text):
                path = os.path.normpath(os.path.join(os.path.dirname(name), target))
                if not target or path.startswith("..") or path not in members and not any(
                        n.startswith(path + "/") for n in members):
                    broken.append(f"{name}: {target}")
    assert not broken, broken


def test_declared_dependencies_match_the_collections_the_roles_use():
    import re

    import yaml
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as fh:
        declared = set(yaml.safe_load(fh)["dependencies"])
    used = set()
    for top in ("roles", "playbooks"):
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".yml", ".yaml")):
                    with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                        used |= {m.group(1) for m in re.finditer(r"^\s*-?\s*([a-z_]+\.[a-z_]+)\.[a-z_]+:", fh.read(), re.M)}
    used -= {"ansible.builtin", "edgemig.migration"}
    assert used == declared
    with open(os.path.join(ROOT, "requirements.yml"), encoding="utf-8") as fh:
        assert {c["name"] for c in yaml.safe_load(fh)["collections"]} == declared


def test_version_added_never_after_the_collections_version():
    import yaml
    with open(os.path.join(ROOT, "galaxy.yml"), encoding="utf-8") as fh:
        version = tuple(int(p) for p in yaml.safe_load(fh)["version"].split("."))
    for top in ("plugins", "roles"):
        for dirpath, _dirs, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                with open(os.path.join(dirpath, f), encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        if line.strip().startswith("version_added:"):
                            added = line.split(":", 1)[1].strip().strip("'\"")
                            assert tuple(int(p) for p in added.split(".")) <= version, (f, added)


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    proc = subprocess.run(["ansible-doc", f"edgemig.migration.{module}"], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    for section in ("OPTIONS", "EXAMPLES", "RETURN"):
        assert section in proc.stdout or section == "RETURN" and "RETURN VALUES" in proc.stdout, section
