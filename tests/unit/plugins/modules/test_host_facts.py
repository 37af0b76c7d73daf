# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the host_facts module in-process on this machine."""

import json
import sys

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.ferry.airgap.plugins.modules import host_facts

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc and /sys')

KEYS = {'hostname', 'arch', 'os', 'kernel', 'selinux', 'swap', 'memory_mb', 'cpus', 'disks',
        'listeners', 'python', 'systemd', 'epoch'}


def run_module(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            host_facts.main()
    out = capsys.readouterr().out
    return exit_info.value.code, json.loads(out)


@pytest.mark.parametrize('check_mode', [False, True])
def test_returns_facts_unchanged(capsys, tmp_path, check_mode):
    existing = tmp_path / 'opt'
    existing.mkdir()
    missing = tmp_path / 'var' / 'lib' / 'containerd'
    args = {'paths': [str(missing), str(existing), str(tmp_path)]}
    if check_mode:
        args['_ansible_check_mode'] = True
    code, result = run_module(capsys, args)
    assert code == 0
    assert result['changed'] is False
    assert 'failed' not in result or result['failed'] is False
    assert 'skipped' not in result
    host = result['ansible_facts']['ferry_host']
    assert set(host) == KEYS
    assert [disk['path'] for disk in host['disks']] == [str(missing), str(existing), str(tmp_path)]
    assert [disk['existing'] for disk in host['disks']] == [str(tmp_path), str(existing), str(tmp_path)]
    assert isinstance(host['epoch'], float)
    assert host['cpus'] >= 1


def test_no_paths_by_default(capsys):
    code, result = run_module(capsys, {})
    assert code == 0
    assert result['changed'] is False
    assert result['ansible_facts']['ferry_host']['disks'] == []


def test_rejects_unknown_option(capsys):
    code, result = run_module(capsys, {'pathz': ['/tmp']})
    assert code == 1
    assert result['failed'] is True
    assert 'pathz' in result['msg']
