# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""daemon.json merged, not replaced (issue 24): a user's keys stay, only needed keys change, no driver switch over images."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.edgemig.migration.plugins.module_utils.docker import daemon_config as dc

WANTED = {"experimental": True, "storage-driver": "overlay2"}
USERS = {"log-driver": "journald", "log-opts": {"tag": "{{.Name}}"},
         "registry-mirrors": ["https://mirror.example"],
         "default-address-pools": [{"base": "10.99.0.0/16", "size": 24}], "data-root": "/srv/docker"}
DAEMON_20_10 = {"Driver": "overlay2", "ExperimentalBuild": False, "Images": 4, "DockerRootDir": "/var/lib/docker"}


def test_a_users_keys_stay_with_their_values_and_order_and_ours_come_after():
    out = dc.plan(dict(USERS), WANTED, running=DAEMON_20_10)
    assert list(out["config"])[:len(USERS)] == list(USERS)
    assert {k: out["config"][k] for k in USERS} == USERS
    assert out["config"]["experimental"] is True
    assert "storage-driver" not in out["config"]            # the daemon runs overlay2 already: no key, no restart
    assert out["changes"] == [{"key": "experimental", "before": False, "after": True}]
    again = dc.plan(out["config"], WANTED, running=dict(DAEMON_20_10, ExperimentalBuild=True))
    assert again == {"config": out["config"], "changes": []}


def test_nothing_needed_leaves_the_very_same_dict():
    current = dict(USERS, experimental=True)
    out = dc.plan(current, WANTED, running=DAEMON_20_10)
    assert out["changes"] == [] and out["config"] is current


def test_experimental_on_by_a_flag_gets_no_key():
    # dockerd --experimental (a unit drop-in): writing the key too would stop dockerd from starting.
    out = dc.plan({}, WANTED, running=dict(DAEMON_20_10, ExperimentalBuild=True))
    assert out == {"config": {}, "changes": []}


def test_the_files_value_wins_over_what_the_daemon_reports():
    out = dc.plan({"experimental": False}, WANTED, running=dict(DAEMON_20_10, ExperimentalBuild=True))
    assert out["changes"] == [{"key": "experimental", "before": False, "after": True}]


def test_no_daemon_to_ask_writes_both_keys_as_a_fresh_install_needs():
    out = dc.plan({"log-driver": "local"}, WANTED, running=None, disk_images={})
    assert out["config"] == {"log-driver": "local", "experimental": True, "storage-driver": "overlay2"}
    assert [c["before"] for c in out["changes"]] == [None, None]


@pytest.mark.parametrize(("current", "running", "disk", "words"), [
    ({"storage-driver": "vfs"}, None, {"vfs": 3}, ["storage driver vfs", "3 under vfs"]),
    ({}, dict(DAEMON_20_10, Driver="btrfs", Images=2), {}, ["storage driver btrfs", "2 under btrfs"]),
    ({}, dict(DAEMON_20_10, Driver="overlayfs", Images=7), {}, ["7 under overlayfs"]),   # containerd image store
    ({"storage-driver": "devicemapper"}, dict(DAEMON_20_10, Driver="devicemapper", Images=1), {"devicemapper": 5},
     ["5 under devicemapper"]),
])
def test_no_driver_switch_over_images(current, running, disk, words):
    with pytest.raises(dc.ConfigProblem) as exc:
        dc.plan(dict(current), WANTED, running=running, disk_images=disk, path="/etc/docker/daemon.json")
    msg = str(exc.value)
    assert all(w in msg for w in words), msg
    assert "would hide them" in msg and "Nothing was changed" in msg and "docker save" in msg


def test_a_driver_switch_on_a_host_without_images_is_allowed():
    out = dc.plan({"storage-driver": "vfs"}, WANTED, running=dict(DAEMON_20_10, Driver="vfs", Images=0), disk_images={})
    assert out["config"]["storage-driver"] == "overlay2"
    assert {"key": "storage-driver", "before": "vfs", "after": "overlay2"} in out["changes"]


def test_images_under_the_wanted_driver_do_not_stop_anything():
    out = dc.plan({}, WANTED, running=None, disk_images={"overlay2": 12})
    assert out["config"]["storage-driver"] == "overlay2"


def test_user_options_are_compared_with_the_file_only():
    wanted = dict(WANTED, **{"log-level": "warn", "registry-mirrors": ["https://mirror.example"]})
    out = dc.plan(dict(USERS, experimental=True), wanted, running=DAEMON_20_10)
    assert out["changes"] == [{"key": "log-level", "before": None, "after": "warn"}]


@pytest.mark.parametrize(("text", "words"), [("{", "not valid JSON"), ("[1]", "JSON list, not an object"),
                                             ('"x"', "JSON str")])
def test_a_file_we_cannot_read_is_an_error_not_overwritten(text, words):
    with pytest.raises(dc.ConfigProblem, match=words):
        dc.parse(text, "/etc/docker/daemon.json")


def test_parse_and_render_round_trip():
    assert dc.parse(None) == {} and dc.parse("  \n") == {}
    assert dc.parse(dc.render(USERS)) == USERS and dc.render({}).endswith("\n")


def test_images_on_disk_counts_per_driver(tmp_path):
    for driver, n in (("overlay2", 2), ("vfs", 1), ("btrfs", 0)):
        d = tmp_path / "image" / driver / "imagedb" / "content" / "sha256"
        d.mkdir(parents=True)
        for i in range(n):
            (d / f"{i:064x}").write_text("{}")
    (tmp_path / "image" / "stray").mkdir()
    assert dc.images_on_disk(str(tmp_path)) == {"overlay2": 2, "vfs": 1}
    assert dc.images_on_disk(str(tmp_path / "nothing")) == {}


def test_data_root_from_the_file_then_the_daemon():
    assert dc.data_root({"data-root": "/srv/d"}, DAEMON_20_10) == "/srv/d"
    assert dc.data_root({}, {"DockerRootDir": "/x"}) == "/x" and dc.data_root({}, None) == "/var/lib/docker"


def test_describe():
    assert dc.describe([{"key": "experimental", "before": None, "after": True},
                        {"key": "storage-driver", "before": "vfs", "after": "overlay2"}]) == \
        'experimental: (absent) -> true, storage-driver: "vfs" -> "overlay2"'


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(current=st.dictionaries(st.text(max_size=12), json_values, max_size=6),
       experimental=st.none() | st.booleans(), driver=st.none() | st.sampled_from(["overlay2", "vfs"]))
def test_any_file_keeps_every_other_key_and_a_second_plan_changes_nothing(current, experimental, driver):
    running = None if experimental is None else {"ExperimentalBuild": experimental, "Driver": driver, "Images": 0}
    current = json.loads(json.dumps(current))
    out = dc.plan(current, WANTED, running=running, disk_images={})
    for key, value in current.items():
        if key not in WANTED:
            assert out["config"][key] == value
    assert set(out["config"]) - set(current) <= set(WANTED)
    assert {c["key"] for c in out["changes"]} == {k for k in out["config"] if out["config"].get(k) != current.get(k)}
    after_restart = None if running is None else dict(running, ExperimentalBuild=True, Driver="overlay2")
    assert dc.plan(dc.parse(dc.render(out["config"])), WANTED, running=after_restart, disk_images={})["changes"] == []


@pytest.mark.parametrize("indent", ["    ", "\t", "  "])
def test_render_keeps_the_files_indentation(indent):
    old = json.dumps(USERS, indent=indent) + "\n"
    new = dc.render(dict(USERS, experimental=True), like=old)
    assert new.startswith(old.rstrip("}\n")) and new.endswith(f',\n{indent}"experimental": true\n}}\n')
    assert dc.render({"a": 1}, like='{"compact": 1}') == '{\n  "a": 1\n}\n'
