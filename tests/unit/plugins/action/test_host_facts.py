# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Clock measurement of the host_facts action plugin."""

from unittest import mock

import pytest

from ansible_collections.ferry.airgap.plugins.action import host_facts as action
from ansible_collections.ferry.airgap.plugins.action.host_facts import clock_offset


def test_host_in_sync():
    assert clock_offset(1000.1, 1000.0, 1000.2) == {'offset_s': 0.0, 'uncertainty_s': 0.1}


def test_host_ahead():
    # midpoint 1000.1; host says 1007.6 -> 7.5 s ahead, known to +-0.1 s
    assert clock_offset(1007.6, 1000.0, 1000.2) == {'offset_s': 7.5, 'uncertainty_s': 0.1}


def test_host_behind():
    assert clock_offset(1000.0 - 12.25, 1000.0, 1001.0) == {'offset_s': -12.75, 'uncertainty_s': 0.5}


def test_uncertainty_is_half_round_trip_and_rounded():
    result = clock_offset(1700000000.0, 1700000000.0, 1700000003.0)
    assert result['uncertainty_s'] == 1.5
    assert result['offset_s'] == -1.5
    result = clock_offset(5.0, 0.0, 0.0012345)
    assert result['uncertainty_s'] == 0.001  # rounded to milliseconds
    assert result['offset_s'] == 4.999


def _action(args=None):
    task = mock.MagicMock(async_val=0, check_mode=False, args=args or {'paths': ['/opt/ferry']})
    connection = mock.MagicMock()
    connection._shell.tmpdir = '/tmp/x'
    return action.ActionModule(task, connection, mock.MagicMock(), mock.MagicMock(), mock.MagicMock(), mock.MagicMock())


def test_run_adds_clock_to_ferry_host():
    plugin = _action()
    module_result = {'changed': False, 'ansible_facts': {'ferry_host': {'hostname': 'n1', 'epoch': 110.0}}}
    with mock.patch.object(plugin, '_execute_module', return_value=module_result) as execute, \
            mock.patch.object(action.time, 'time', side_effect=[100.0, 102.0]):
        result = plugin.run(task_vars={})
    execute.assert_called_once_with(module_name='ferry.airgap.host_facts', module_args={'paths': ['/opt/ferry']},
                                    task_vars={})
    assert result['changed'] is False
    assert result['ansible_facts']['ferry_host']['clock'] == {'offset_s': 9.0, 'uncertainty_s': 1.0}


def test_run_passes_failure_through_without_clock():
    plugin = _action()
    module_result = {'failed': True, 'msg': 'boom'}
    with mock.patch.object(plugin, '_execute_module', return_value=module_result), \
            mock.patch.object(action.time, 'time', side_effect=[100.0, 102.0]):
        result = plugin.run(task_vars={})
    assert result['failed'] is True
    assert result['msg'] == 'boom'
    assert 'ansible_facts' not in result


@pytest.mark.parametrize('host', [{'hostname': 'n1'}, {}])
def test_run_without_epoch_adds_no_clock(host):
    plugin = _action()
    with mock.patch.object(plugin, '_execute_module', return_value={'ansible_facts': {'ferry_host': host}}), \
            mock.patch.object(action.time, 'time', side_effect=[100.0, 102.0]):
        result = plugin.run(task_vars={})
    assert 'clock' not in result['ansible_facts']['ferry_host']
