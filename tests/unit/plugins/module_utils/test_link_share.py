# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""link_share (options.MigrationOptions): a migration told its share of the link starts its controller's
rate model from that share of the probed link, not from the whole link; out of (0, 1] it is refused
before anything is frozen."""
from __future__ import annotations

import pytest

from ansible_collections.edgemig.migration.plugins.module_utils.common.options import MigrationOptions
from ansible_collections.edgemig.migration.plugins.module_utils.driver import migration_driver
from ansible_collections.edgemig.migration.plugins.module_utils.sender import ssh_stream
from ansible_collections.edgemig.migration.plugins.module_utils.sender.controller import make_controller


class Seeded(Exception):
    pass


@pytest.mark.parametrize("share,seed", [(1.0, 12.5e6), (0.5, 6.25e6), (0.25, 3.125e6)])
def test_the_controller_starts_from_the_share_of_the_probed_link(monkeypatch, share, seed):
    seen = {}

    def controller(policy, cores):
        ctl = make_controller(policy, cores)

        def seed_network(rate):
            seen["rate"] = rate
            raise Seeded
        ctl.seed_network = seed_network
        return ctl
    monkeypatch.setattr(ssh_stream, "make_controller", controller)
    conn = ssh_stream.SshStream("0" * 32, host="192.0.2.1", key_file="k", known_hosts="kh", link_share=share)
    conn.probe = {"rate_Bps": 12.5e6, "rtt_s": 0.001}
    with pytest.raises(Seeded):
        conn.stream([])
    assert seen["rate"] == pytest.approx(seed)


def test_the_default_is_the_whole_link_declared_once():
    assert MigrationOptions().link_share == 1.0
    assert ssh_stream.SshStream("0" * 32, host="192.0.2.1", key_file="k", known_hosts="kh").link_share == 1.0


@pytest.mark.parametrize("share", [0, -0.5, 1.5])
def test_a_share_out_of_range_is_refused_before_the_freeze(share):
    p = {"target": {"host": "10.213.0.12", "ticket": "t"}, "link_share": share, "policy": "model"}
    assert "link_share must be in (0, 1]" in migration_driver.check_options(p)
