# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The k3s upgrade policy: install, same, patch and next-minor upgrades allowed; downgrades, skipped minors and
unreadable versions refused unless forced; the messages name host, both versions and what to do."""

import pytest
from ansible_collections.ferry.airgap.plugins.filter.k3s_version_policy import (
    FilterModule, k3s_version_policy, parse_k3s_version)

V121_OUTPUT = 'k3s version v1.21.8+k3s1 (cbff7350)\ngo version go1.21.13\n'


@pytest.mark.parametrize('text, parsed', [
    (V121_OUTPUT, (1, 21, 8, None, 1)),
    ('v1.22.5+k3s1', (1, 22, 5, None, 1)),
    ('1.22.5+k3s2', (1, 22, 5, None, 2)),
    ('v1.33.1-rc1+k3s1', (1, 33, 1, 'rc1', 1)),
    ('1.7.18', (1, 7, 18, None, 0)),
    ('k3s version unknown', None),
    ('', None),
    (None, None),
])
def test_parse(text, parsed):
    assert parse_k3s_version(text) == parsed


@pytest.mark.parametrize('running, bundle, action', [
    ('', '1.22.5+k3s1', 'install'),
    (V121_OUTPUT, '1.21.8+k3s1', 'same'),
    ('v1.21.8+k3s1', 'v1.21.8+k3s1', 'same'),
    (V121_OUTPUT, '1.21.9+k3s1', 'upgrade'),          # patch
    (V121_OUTPUT, '1.21.8+k3s2', 'upgrade'),          # k3s revision
    (V121_OUTPUT, '1.22.5+k3s1', 'upgrade'),          # next minor
    (V121_OUTPUT, '1.22.0+k3s1', 'upgrade'),
    ('v1.22.0-rc1+k3s1', '1.22.0+k3s1', 'upgrade'),   # release after its rc
    ('v1.22.5+k3s1', '1.21.8+k3s1', 'downgrade'),
    ('v1.22.5+k3s2', '1.22.5+k3s1', 'downgrade'),
    ('v1.22.5+k3s1', '1.22.4+k3s1', 'downgrade'),
    ('v1.22.0+k3s1', '1.22.0-rc2+k3s1', 'downgrade'),
    (V121_OUTPUT, '1.23.0+k3s1', 'skip'),
    (V121_OUTPUT, '1.25.0+k3s1', 'skip'),
    ('v1.33.1+k3s1', '2.0.0+k3s1', 'skip'),
    ('k3s: cannot execute binary file', '1.22.5+k3s1', 'unknown'),
    (V121_OUTPUT, '', 'unknown'),
    (V121_OUTPUT, 'latest', 'unknown'),
])
def test_actions(running, bundle, action):
    result = k3s_version_policy(running, bundle, host='k3s-s1')
    assert result['action'] == action
    assert result['allowed'] is (action in ('install', 'same', 'upgrade'))
    assert result['forced'] is False
    assert result['message'].startswith('k3s-s1: ')


def test_a_downgrade_message_names_host_versions_and_the_way_back():
    result = k3s_version_policy('k3s version v1.22.5+k3s1 (405bf79d)', '1.21.8+k3s1', host='k3s-s2')
    assert result['running'] == 'v1.22.5+k3s1' and result['bundle'] == 'v1.21.8+k3s1'
    assert result['message'] == (
        'k3s-s2: k3s v1.22.5+k3s1 runs, the bundle carries v1.21.8+k3s1: a downgrade, refused. Nothing was changed; '
        'go back with playbooks/cluster_rollback.yml (the etcd snapshot and binary the upgrade kept), or upgrade with '
        'a bundle carrying v1.22.5+k3s1 or newer (k3s_upgrade_force=true overrides this, at the risk docs/install.md names).')


def test_a_skipped_minor_message_names_the_skipped_and_the_next_step():
    result = k3s_version_policy(V121_OUTPUT, '1.23.0+k3s1', host='k3s-a1')
    assert result['message'] == (
        'k3s-a1: k3s v1.21.8+k3s1 runs, the bundle carries v1.23.0+k3s1: that skips minor version 1.22, refused. '
        'Nothing was changed; upgrade one minor version at a time: first with a bundle carrying k3s 1.22.x, then this '
        'one (k3s_upgrade_force=true overrides this, at the risk docs/install.md names).')
    assert 'minor versions 1.22, 1.23' in k3s_version_policy(V121_OUTPUT, '1.24.1+k3s1')['message']
    assert 'skips a major version' in k3s_version_policy('v1.33.1+k3s1', '2.0.0+k3s1')['message']


def test_no_declared_version_is_refused_with_what_to_do():
    result = k3s_version_policy(V121_OUTPUT, '', host='k3s-s1')
    assert not result['allowed']
    assert "the bundle declares no k3s version for this host's arch" in result['message']
    assert 'records the k3s artifact' in result['message']


@pytest.mark.parametrize('running, bundle', [
    ('v1.22.5+k3s1', '1.21.8+k3s1'), (V121_OUTPUT, '1.23.0+k3s1'), ('garbage', '1.22.5+k3s1')])
def test_force_allows_what_is_refused_and_says_so(running, bundle):
    result = k3s_version_policy(running, bundle, force=True, host='k3s-s1')
    assert result['allowed'] is True and result['forced'] is True
    assert 'allowed by k3s_upgrade_force=true' in result['message']
    assert 'no downgrade' in result['message']


def test_force_changes_nothing_for_allowed_moves():
    assert k3s_version_policy(V121_OUTPUT, '1.22.5+k3s1', force=True)['forced'] is False
    assert k3s_version_policy(V121_OUTPUT, '1.21.8+k3s1', force=True)['action'] == 'same'


def test_install_and_same_report_the_versions():
    assert k3s_version_policy('', '1.22.5+k3s1') == {
        'running': '', 'bundle': 'v1.22.5+k3s1', 'forced': False, 'action': 'install', 'allowed': True,
        'message': 'this host: k3s is not installed: it will be installed from the bundle.'}
    same = k3s_version_policy(V121_OUTPUT, 'v1.21.8+k3s1')
    assert same['running'] == same['bundle'] == 'v1.21.8+k3s1'


def test_registered_under_its_name():
    assert FilterModule().filters() == {'k3s_version_policy': k3s_version_policy}
