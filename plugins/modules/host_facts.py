#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: host_facts
short_description: Gather what Ferry's preflight checks need to know about a host
version_added: 0.1.0
description:
  - Reads the CPU architecture, the OS (including Kylin, openEuler, UOS and CentOS vendor release files),
    kernel features for containerd and k3s, SELinux, swap, memory, CPUs, listening ports with their owning
    process, free disk for data directories, the Python version and the host clock.
  - Read-only; never reports a change. An action plugin of the same name measures the host clock against
    the controller's while the module runs.
  - Returns the data as the host fact C(ferry_host).
author: Ferry developers (@ferry-airgap)
options:
  paths:
    description:
      - Data directories whose filesystem free space should be reported. A path that does not exist yet
        is measured on its nearest existing parent.
    type: list
    elements: path
    default: []
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.read_only
attributes:
  platform:
    platforms: linux
"""

EXAMPLES = r"""
- name: Gather Ferry host facts
  ferry.airgap.host_facts:
    paths:
      - /var/lib/containerd
      - /opt/ferry

- name: Show the OS as Ferry sees it
  ansible.builtin.debug:
    msg: "{{ ferry_host.os.pretty_name }} ({{ ferry_host.os.family }}, {{ ferry_host.arch }})"
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: dict
  contains:
    ferry_host:
      description: What Ferry knows about the host.
      type: dict
      returned: always
      sample:
        hostname: node1
        arch: aarch64
        os: {id: kylin, name: Kylin Linux Advanced Server, version: V10, pretty_name: Kylin Linux Advanced Server V10,
             family: redhat, treatment: emulated, release_files: {kylin-release: Kylin Linux Advanced Server release V10},
             el: el8}
        kernel: {release: 4.19.90-24.4.v2101.ky10.aarch64, version: 4.19.90, overlay: loaded,
                 br_netfilter: loadable, cgroup: v1, ip_forward: false}
        selinux: {current: disabled, configured: disabled}
        swap: {total_mb: 0, devices: []}
        memory_mb: 15889
        cpus: 8
        disks: [{path: /var/lib/containerd, existing: /var/lib, device: 2049, free_mb: 40213, total_mb: 102400}]
        listeners: [{proto: tcp, port: 22, process: sshd}]
        python: {version: 3.7.9, executable: /usr/bin/python3}
        systemd: true
        epoch: 1764000000.25
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils._hostinfo import gather


def main():
    module = AnsibleModule(
        argument_spec=dict(paths=dict(type='list', elements='path', default=[])),
        supports_check_mode=True,
    )
    module.exit_json(changed=False, ansible_facts={'ferry_host': gather(module.params['paths'])})


if __name__ == '__main__':
    main()
