#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_pack
short_description: Pack a Ferry bundle into one tar or size-limited chunks for removable media
version_added: 0.1.0
description:
  - Writes the bundle directory as an uncompressed, deterministic tar (manifest first, sorted, owned by
    root, fixed timestamps) with the bundle directory's name as its single top directory.
  - With O(chunk_size), splits it into C(<dest>.000), C(<dest>.001), ... and writes C(<dest>.parts.json)
    listing each chunk's size and sha256 (written last, so a half-written set is never listed).
  - Reports a change only when the tar bytes differ from what is already there (an unchanged bundle packs
    to the same bytes).
author: Ferry developers (@ferry-airgap)
options:
  path:
    description: The bundle directory (it must contain C(manifest.json)).
    type: path
    required: true
  dest:
    description: The tar file to write (for chunks, the name the chunk numbers are appended to).
    type: path
    required: true
  chunk_size:
    description:
      - Maximum size of each chunk, in bytes or with a unit (C(4000M), C(4G)). Omit for a single tar.
    type: str
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.atomic_write
attributes:
  check_mode:
    support: full
    details: Computes the tar's sha256 without writing it and reports whether it would change.
  diff_mode:
    support: none
    details: Binary output is not diffed.
"""

EXAMPLES = r"""
- name: Split the bundle for FAT32 USB sticks
  ferry.airgap.bundle_pack:
    path: /srv/build/shop-2024.06.1
    dest: /srv/out/shop-2024.06.1.tar
    chunk_size: 3900M
"""

RETURN = r"""
tar:
  description: The tar path (chunk names are derived from it).
  returned: success
  type: str
  sample: /srv/out/shop-2024.06.1.tar
size:
  description: Size of the whole tar in bytes.
  returned: success
  type: int
  sample: 3221237760
sha256:
  description: sha256 of the whole tar (all chunks concatenated).
  returned: success
  type: str
  sample: 1f0e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0
parts:
  description: The chunks (name, size, sha256), or null for a single tar or in check mode.
  returned: success
  type: list
  elements: dict
  sample: [{name: shop-2024.06.1.tar.000, size: 4089446400, sha256: "..."}]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.formatters import human_to_bytes

from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.pack import pack


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            dest=dict(type='path', required=True),
            chunk_size=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    chunk_size = None
    if p['chunk_size']:
        try:
            chunk_size = human_to_bytes(p['chunk_size'])
        except ValueError as e:
            module.fail_json(msg='chunk_size %r: %s' % (p['chunk_size'], e))
        if chunk_size <= 0:
            module.fail_json(msg='chunk_size must be positive, got %r' % p['chunk_size'])
    try:
        result = pack(p['path'], p['dest'], chunk_size=chunk_size, check_mode=module.check_mode)
    except (BundleError, FsError) as e:
        module.fail_json(msg=str(e))
    except (IOError, OSError) as e:
        module.fail_json(msg='cannot pack %s into %s: %s' % (p['path'], p['dest'], e))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
