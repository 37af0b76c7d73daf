# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: preflight_report
short_description: Build Ferry's one-table preflight report for the whole inventory
version_added: 0.1.0
author: Ferry developers (@ferry-airgap)
description:
  - Evaluates every preflight check for every host from the C(_preflight_host) fact that the
    M(ferry.airgap.host_facts) step left on each host, plus the checks across hosts (unique
    hostnames, clock skew, inventory groups).
  - A host that never reported (unreachable, no Python) appears with its checks marked C(-) and fails
    the python check.
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  hosts:
    description: The hosts to report on, normally C(ansible_play_hosts_all).
    type: list
    elements: str
    required: true
  groups:
    description: The inventory's C(groups).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Evaluate preflight for the whole play
  ansible.builtin.set_fact:
    report: "{{ hostvars | ferry.airgap.preflight_report(ansible_play_hosts_all, groups) }}"
  run_once: true
"""

RETURN = r"""
_value:
  description: The report.
  type: dict
  contains:
    rows:
      description: Per host, per check, a dict with C(status) (ok, WARN, FAIL, waived, -) and C(detail).
      type: dict
    failures:
      description: One line per failed check, naming host, check and why.
      type: list
      elements: str
    warnings:
      description: One line per warning.
      type: list
      elements: str
    waived:
      description: One line per check that would have warned or failed but is waived.
      type: list
      elements: str
    waivers:
      description: Per host, the waiver list that was set (even where nothing needed it).
      type: dict
    failed:
      description: Whether anything failed.
      type: bool
    lines:
      description: The report rendered as text lines.
      type: list
      elements: str
"""

from ansible_collections.ferry.airgap.plugins.plugin_utils._preflight import evaluate


def _plain(value):
    """Turn Ansible's lazy/templated containers into plain dicts and lists."""
    if isinstance(value, dict) or hasattr(value, 'items'):
        return dict((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def preflight_report(hostvars, hosts, groups):
    collected = {}
    for name in hosts:
        data = hostvars[name].get('_preflight_host') if name in hostvars else None
        if not data:
            data = {'facts': None, 'python': None, 'error': 'host did not report (unreachable?)', 'policy': {}}
        collected[name] = _plain(data)
    plain_groups = dict((k, list(v)) for k, v in groups.items())
    return evaluate(collected, plain_groups)


class FilterModule(object):

    def filters(self):
        return {'preflight_report': preflight_report}
