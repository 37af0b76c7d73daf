#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: k3s_cleanup
short_description: Remove what a stopped k3s node left on a host (processes, mounts, interfaces, rules, files)
version_added: 0.1.0
description:
  - Run after the k3s units are stopped (role C(ferry.airgap.k3s_reset)). Finds and removes, in this order,
    only what is k3s's by name or place.
  - "Processes: those whose binary lies under O(data_dir)/data/ (k3s's containerd and its shims), those in a
    C(kubepods) cgroup, and all their descendants (the containers), with SIGKILL."
  - "Mounts: every mount point below one of O(mount_dirs), one at such a directory only when it binds that very
    directory (what the kubelet makes of /var/lib/kubelet; a filesystem the site mounted there stays), and
    C(/run/netns/cni-*); deepest first (C(umount), then C(umount -l)). Then the C(/run/netns/cni-*) files."
  - "Interfaces: C(cni0), C(flannel.1), C(flannel-v6.1), C(flannel-wg), C(flannel-wg-v6), C(kube-ipvs0) and the
    veth interfaces enslaved to C(cni0)."
  - "iptables and ip6tables (when present): chains named C(KUBE-*), C(FLANNEL*), C(CNI-*), the rules in them or
    jumping to them, rules whose comment names kube, k8s, flannel or cni, and flannel's uncommented rules in
    FORWARD and POSTROUTING whose source or destination is the flannel network of C(/run/flannel/subnet.env).
    Only the tables that change are restored (C(iptables-save), filter, C(iptables-restore)); every other rule
    stays."
  - Last the O(paths), except O(keep) (the parents of a kept path are emptied around it, never removed). A path
    with a mount still below it is refused.
  - C(changed) compares a scan before with a scan after; anything found after the removal fails the task.
author: Ferry developers (@ferry-airgap)
options:
  data_dir:
    description: k3s's data directory (C(data-dir)); its C(data/) holds the binaries k3s unpacked.
    type: path
    default: /var/lib/rancher/k3s
  mount_dirs:
    description: Directories whose mounts are k3s's. Default C(/run/k3s), O(data_dir), C(/var/lib/kubelet).
    type: list
    elements: path
  paths:
    description: Files and directories to remove (shell globs allowed), after everything else.
    type: list
    elements: path
    default: []
  keep:
    description: Paths under O(paths) that stay, with their content (application data, for example k3s's
      local-path volumes under C(<data dir>/storage)).
    type: list
    elements: path
    default: []
extends_documentation_fragment:
  - ferry.airgap.attributes
attributes:
  check_mode:
    support: full
    details: Changes nothing and returns in RV(removed) what would be removed.
  diff_mode:
    support: full
    details: Before is everything found, after what is left (nothing).
  platform:
    platforms: linux
"""

EXAMPLES = r"""
- name: Remove k3s's processes, mounts, interfaces, rules and state, keeping local-path volumes
  ferry.airgap.k3s_cleanup:
    data_dir: /var/lib/rancher/k3s
    paths: [/etc/rancher/k3s, /var/lib/rancher/k3s, /var/lib/kubelet, /run/k3s, /run/flannel]
    keep: [/var/lib/rancher/k3s/storage]
"""

RETURN = r"""
removed:
  description: What was removed (in check mode, what would be), by kind.
  returned: always
  type: dict
  contains:
    processes: {description: "Pid, name and binary of each process killed.", type: list, elements: str}
    mounts: {description: "Mount points unmounted, deepest first.", type: list, elements: str}
    netns: {description: Network namespace files removed., type: list, elements: str}
    interfaces: {description: Interfaces deleted., type: list, elements: str}
    iptables: {description: "Lines removed, as C(<tool>: <table> <line>)", type: list, elements: str}
    paths: {description: Files and directories removed., type: list, elements: str}
  sample:
    processes: ["2511 containerd-shim (/var/lib/rancher/k3s/data/8145b6/bin/containerd-shim-runc-v2)"]
    mounts: [/run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/b2b95f/rootfs, /var/lib/kubelet]
    netns: [/run/netns/cni-3b87852a-79bd-64cf-c3e5-12d17e3190b0]
    interfaces: [vethdec3e5f7, cni0]
    iptables: ["iptables: *nat :KUBE-SERVICES - [0:0]"]
    paths: [/etc/rancher/k3s, /var/lib/rancher/k3s/agent, /var/lib/rancher/k3s/data]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils._cli import Runner
from ansible_collections.ferry.airgap.plugins.module_utils._runtime import k3s_cleanup as cleanup


def run(module, host):
    params = module.params
    mount_dirs = params['mount_dirs'] if params['mount_dirs'] is not None else \
        [cleanup.MOUNT_DIRS[0], params['data_dir'], cleanup.MOUNT_DIRS[2]]
    work = cleanup.Cleanup(host, params['data_dir'], mount_dirs=mount_dirs, paths=params['paths'], keep=params['keep'])
    before = work.scan()
    found = any(before[key] for key in cleanup.CATEGORIES)
    after = before
    if found and not module.check_mode:
        work.apply()
        after = work.scan()
    removed = before if module.check_mode else cleanup.changed(before, after)
    left = [item for key in cleanup.CATEGORIES for item in after[key]] if not module.check_mode else []
    for warning in work.warnings:
        module.warn(warning)
    result = dict(changed=found if module.check_mode else before != after, removed=removed)
    if module._diff:
        result['diff'] = dict(before=''.join('%s: %s\n' % (k, i) for k in cleanup.CATEGORIES for i in before[k]),
                              after=''.join('%s: %s\n' % (k, i) for k in cleanup.CATEGORIES for i in after[k])
                              if not module.check_mode else '')
    if left:
        result['msg'] = ('k3s\'s state is still on the host after the removal: %s. Stop whatever restarts it '
                         '(a k3s unit not managed by Ferry?) and run again' % '; '.join(left))
        module.fail_json(**result)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            data_dir=dict(type='path', default='/var/lib/rancher/k3s'),
            mount_dirs=dict(type='list', elements='path'),
            paths=dict(type='list', elements='path', default=[]),
            keep=dict(type='list', elements='path', default=[]),
        ),
        supports_check_mode=True,
    )
    try:
        result = run(module, cleanup.Host(Runner(module), which=module.get_bin_path))
    except (cleanup.CleanupError, OSError) as e:
        module.fail_json(msg='%s' % (e.msg if isinstance(e, cleanup.CleanupError) else e))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
