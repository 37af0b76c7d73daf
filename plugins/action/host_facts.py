# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the host_facts module and measure the host clock against the controller's.

The controller notes its clock before and after the module runs; the module
notes the host's clock in between. The host's offset is its time minus the
midpoint, known to within half the round trip.
"""

import time

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        started = time.time()
        module_result = self._execute_module(module_name='ferry.airgap.host_facts', module_args=self._task.args,
                                             task_vars=task_vars)
        finished = time.time()
        result.update(module_result)
        host = result.get('ansible_facts', {}).get('ferry_host')
        if host and 'epoch' in host:
            host['clock'] = clock_offset(host['epoch'], started, finished)
        return result


def clock_offset(host_epoch, started, finished):
    """Offset of the host clock from the controller's, with its uncertainty, in seconds."""
    return {
        'offset_s': round(host_epoch - (started + finished) / 2.0, 3),
        'uncertainty_s': round((finished - started) / 2.0, 3),
    }
