#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_kit_tarball
short_description: Rewrite a collection tarball so the same content always gives the same bytes
version_added: 0.1.0
description:
  - C(ansible-galaxy collection build) writes different bytes on every run (build time in C(MANIFEST.json)'s and
    C(FILES.json)'s member headers and in the gzip header, the checkout's file times on the other members), so a
    bundle delta would carry an unchanged collection again. This module writes O(dest) from O(src) with the
    members in a fixed order (C(MANIFEST.json), C(FILES.json), then sorted), time 0, owner 0:0 without names,
    modes 0644/0755, and a gzip header without time or name. Member content is not changed.
  - Reports a change only when O(dest) does not already hold those bytes.
  - Runs on the build machine (usually C(localhost)); the role M(ferry.airgap.bundle_kit) uses it.
author: Ferry developers (@ferry-airgap)
options:
  src:
    description: The tarball C(ansible-galaxy collection build) wrote (gzip or plain tar), read with Ferry's safe tar reader.
    type: path
    required: true
  dest:
    description: The reproducible tarball to write (gzip).
    type: path
    required: true
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.atomic_write
attributes:
  check_mode:
    support: full
    details: Computes the bytes and reports whether O(dest) would change; writes nothing.
  diff_mode:
    support: none
    details: Binary output is not diffed.
"""

EXAMPLES = r"""
- name: Make the kit's collection tarball reproducible
  ferry.airgap.bundle_kit_tarball:
    src: /tmp/galaxy-build/ferry-airgap-0.1.0.tar.gz
    dest: /srv/build/shop-2024.06.1/kit/collections/ferry-airgap-0.1.0.tar.gz
"""

RETURN = r"""
dest:
  description: The tarball written.
  returned: success
  type: str
  sample: /srv/build/shop-2024.06.1/kit/collections/ferry-airgap-0.1.0.tar.gz
sha256:
  description: sha256 of the reproducible tarball.
  returned: success
  type: str
  sample: 9e1d7c0a4a0c3c1f0c9b4b8a3b2f7f1e7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e
size:
  description: Its size in bytes.
  returned: success
  type: int
  sample: 305151
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils._digest import sha256_bytes
from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError, atomic_write, read_bytes
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.kit import reproducible_tar_gz


def run(src, dest, check_mode):
    data = reproducible_tar_gz(src)
    current = read_bytes(dest, len(data) + 1) if os.path.isfile(dest) and not os.path.islink(dest) else None
    changed = current != data
    if changed and not check_mode:
        atomic_write(dest, data)
    return dict(changed=changed, dest=dest, sha256=sha256_bytes(data), size=len(data))


def main():
    module = AnsibleModule(argument_spec=dict(src=dict(type='path', required=True), dest=dict(type='path', required=True)),
                           supports_check_mode=True)
    try:
        result = run(module.params['src'], module.params['dest'], module.check_mode)
    except (BundleError, FsError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
