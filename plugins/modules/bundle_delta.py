#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_delta
short_description: Build a delta bundle holding only the files a site lacks
version_added: 0.1.0
description:
  - Writes to O(dest) only the files of the new bundle whose sha256 the base does not hold (hard-linked
    when possible, else copied, and re-hashed), plus the full new manifest with C(base) and
    C(delta.present) set, signed when O(key) is given.
  - The base is the bundle the site runs, given as its directory, its C(manifest.json), or the digest
    inventory file the site exported with M(ferry.airgap.bundle_digests).
  - At the site, M(ferry.airgap.bundle_verify) with O(ferry.airgap.bundle_verify#module:base) reconstructs
    and verifies the full bundle.
  - Reports a change only when O(dest) does not already hold this exact delta intact.
author: Ferry developers (@ferry-airgap)
options:
  path:
    description: The new, full bundle directory (with its C(manifest.json)).
    type: path
    required: true
  base:
    description: The base bundle directory, its C(manifest.json), or a digest inventory file.
    type: path
    required: true
  dest:
    description: The delta directory to write.
    type: path
    required: true
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.atomic_write
  - ferry.airgap.signing
  - ferry.airgap.signing.sign
attributes:
  check_mode:
    support: full
    details: Reports whether the delta would be (re)written and what it would ship; writes nothing.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Build the upgrade delta for site A from its digest inventory
  ferry.airgap.bundle_delta:
    path: /srv/build/shop-2024.07.0
    base: /srv/inbox/site-a.digests.json
    dest: /srv/out/shop-2024.07.0-delta-site-a
    key: /home/builder/.ssh/ferry_bundle
"""

RETURN = r"""
dest:
  description: The delta directory.
  returned: success
  type: str
  sample: /srv/out/shop-2024.07.0-delta-site-a
files_total:
  description: Files in the new bundle.
  returned: success
  type: int
  sample: 1450
files_shipped:
  description: Files the delta carries.
  returned: success
  type: int
  sample: 37
bytes_total:
  description: Size of the new bundle's files.
  returned: success
  type: int
  sample: 3321225472
bytes_shipped:
  description: Size of the files the delta carries.
  returned: success
  type: int
  sample: 210763776
base:
  description: The base the delta applies to.
  returned: success
  type: dict
  sample: {name: shop, version: 2024.06.1, manifest_sha256: "9b2e...5f4e"}
signed:
  description: Whether the delta manifest is signed.
  returned: success
  type: bool
  sample: true
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils import _cli
from ansible_collections.ferry.airgap.plugins.module_utils._digest import pretty_json
from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError, atomic_write, read_bytes
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import DEFAULT_NAMESPACE, MANIFEST, SIGNATURE, BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.delta import (
    build_delta, delta_manifest, digest_inventory)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import read_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.sign import sign_bytes
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.verify import verify_bundle


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            base=dict(type='path', required=True),
            dest=dict(type='path', required=True),
            key=dict(type='path', no_log=False),
            namespace=dict(type='str', default=DEFAULT_NAMESPACE),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        inventory = digest_inventory(p['base'])
        new_manifest, _raw = read_manifest(p['path'])
        manifest = delta_manifest(new_manifest, inventory)
        raw = pretty_json(manifest)
        sig = sign_bytes(_cli.Runner(module), raw, p['key'], p['namespace']).encode('utf-8') if p['key'] else None
        files = manifest['files']
        result = dict(
            changed=True, dest=p['dest'], files_total=len(files),
            files_shipped=len(manifest['delta']['present']),
            bytes_total=sum(e['size'] for e in files.values()),
            bytes_shipped=sum(files[rel]['size'] for rel in manifest['delta']['present']),
            base=manifest['base'], signed=sig is not None,
        )
        if (read_bytes(os.path.join(p['dest'], MANIFEST)) == raw
                and read_bytes(os.path.join(p['dest'], SIGNATURE)) == sig
                and not verify_bundle(p['dest'], manifest, partial=True)):
            result['changed'] = False
        if result['changed'] and not module.check_mode:
            def signer(manifest_path):
                atomic_write(manifest_path + '.sig', sig)

            build_delta(p['path'], inventory, p['dest'], signer=signer if sig is not None else None)
    except (BundleError, FsError) as e:
        module.fail_json(msg=str(e))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
