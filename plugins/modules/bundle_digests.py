#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_digests
short_description: Export a site's bundle digest inventory for building deltas
version_added: 0.1.0
description:
  - Writes the small JSON file a site carries back to the build side so the next upgrade can be shipped
    as a delta holding only files the site lacks.
  - The inventory holds the installed bundle's name, version, the sha256 of its C(manifest.json) and the
    sorted list of every file hash the bundle holds. It is taken from the manifest; run
    M(ferry.airgap.bundle_verify) first if the files themselves may be damaged.
  - Reports a change only when the file content differs.
author: Ferry developers (@ferry-airgap)
options:
  path:
    description: The installed bundle directory or its C(manifest.json).
    type: path
    required: true
  dest:
    description: Inventory file to write.
    type: path
    required: true
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.atomic_write
attributes:
  check_mode:
    support: full
    details: Reports whether the inventory would change; writes nothing.
  diff_mode:
    support: none
    details: The inventory is a list of hashes; it is not diffed.
"""

EXAMPLES = r"""
- name: Export what the site has
  ferry.airgap.bundle_digests:
    path: /opt/ferry/bundles/current
    dest: /media/usb/site-a.digests.json
"""

RETURN = r"""
dest:
  description: The inventory file.
  returned: success
  type: str
  sample: /media/usb/site-a.digests.json
name:
  description: Name of the installed bundle.
  returned: success
  type: str
  sample: shop
version:
  description: Version of the installed bundle.
  returned: success
  type: str
  sample: 2024.06.1
manifest_sha256:
  description: sha256 of the installed bundle's C(manifest.json).
  returned: success
  type: str
  sample: 9b2e6c0a4d1f8e7c6b5a49382716f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e
digests:
  description: Number of distinct file hashes listed.
  returned: success
  type: int
  sample: 1398
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils._digest import pretty_json
from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError, atomic_write
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.delta import digest_inventory


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            dest=dict(type='path', required=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        inventory = digest_inventory(p['path'])
    except (BundleError, FsError) as e:
        module.fail_json(msg=str(e))
    raw = pretty_json(inventory)
    try:
        with open(p['dest'], 'rb') as f:
            old = f.read()
    except (IOError, OSError):
        old = None
    result = dict(changed=raw != old, dest=p['dest'], name=inventory['name'], version=inventory['version'],
                  manifest_sha256=inventory['manifest_sha256'], digests=len(inventory['sha256']))
    if result['changed'] and not module.check_mode:
        try:
            atomic_write(p['dest'], raw)
        except (IOError, OSError) as e:
            module.fail_json(msg='cannot write %s: %s' % (p['dest'], e))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
