#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_manifest
short_description: Write and sign the manifest of a Ferry bundle
version_added: 0.1.0
description:
  - Hashes every file of the bundle directory and writes C(manifest.json) (format 1, see C(docs/bundle.md)),
    then signs it into C(manifest.json.sig) with C(ssh-keygen -Y sign) when O(key) is given.
  - Writes the site kit's checksums C(kit.sha256) in C(sha256sum) format, derived from the manifest (every file but
    those under C(images/), C(artifacts/) and C(apps/)) and, with O(key), their signature C(kit.sha256.sig), so a
    site can check what it runs first with C(ssh-keygen) and C(sha256sum) alone (C(docs/bundle.md), First install).
  - Refuses a bundle directory holding site-local paths such as C(.ferry-venv/), C(collections/) or
    C(inventory/hosts.yml); a bundle as delivered never carries them.
  - Reports a change only when the manifest or signature content differs from what is on disk. When
    only the creation time would differ, the existing C(created) is kept.
  - Without O(key), a signature left from an earlier manifest is removed when the manifest changes (the same for
    C(kit.sha256.sig)).
author: Ferry developers (@ferry-airgap)
options:
  path:
    description: The bundle directory.
    type: path
    required: true
  name:
    description: Bundle name.
    type: str
    required: true
  version:
    description: Bundle version.
    type: str
    required: true
  arches:
    required: true
  created:
    description:
      - Creation time to record (C(YYYY-MM-DDTHH:MM:SSZ)). Defaults to the existing manifest's value when
        nothing else changed, else to C(SOURCE_DATE_EPOCH) or now.
    type: str
  images:
    description:
      - The manifest C(images) list (C(ref), C(digest), C(platforms)). Defaults to what C(images/index.json)
        of the bundle describes.
    type: list
    elements: dict
  versions:
    description:
      - "Artifact versions to record, C({name: {arch: version}}) (M(ferry.airgap.bundle_spec) returns them as
        C(spec.versions)). Each becomes the C(version) of the artifact entries of that name and arch; preflight
        reads them (for example which containerd a host will run). A version for an artifact the bundle does
        not hold is an error."
    type: dict
    default: {}
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.atomic_write
  - ferry.airgap.arches
  - ferry.airgap.signing
  - ferry.airgap.signing.sign
attributes:
  check_mode:
    support: full
    details: Hashes and reports whether the manifest or signature would change; writes nothing.
  diff_mode:
    support: none
    details: The manifest can list many thousands of files; it is not diffed.
"""

EXAMPLES = r"""
- name: Write and sign the manifest
  ferry.airgap.bundle_manifest:
    path: "{{ bundle_dir }}"
    name: "{{ bundle.spec.name }}"
    version: "{{ bundle.spec.version }}"
    arches: "{{ bundle.spec.arches }}"
    key: "{{ bundle.spec.signing.key }}"
"""

RETURN = r"""
manifest:
  description: Path of the manifest.
  returned: success
  type: str
  sample: /srv/build/shop-2024.06.1/manifest.json
manifest_sha256:
  description: sha256 of the manifest bytes (what a delta records as its base).
  returned: success
  type: str
  sample: 9b2e6c0a4d1f8e7c6b5a49382716f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e
files:
  description: Number of files listed.
  returned: success
  type: int
  sample: 1432
bytes:
  description: Total size of the listed files.
  returned: success
  type: int
  sample: 3221225472
signed:
  description: Whether C(manifest.json.sig) was (or already was) made with O(key).
  returned: success
  type: bool
  sample: true
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils import _cli
from ansible_collections.ferry.airgap.plugins.module_utils._digest import pretty_json, sha256_bytes
from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError, atomic_write, read_bytes
from ansible_collections.ferry.airgap.plugins.module_utils._platform import ARCHES
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    DEFAULT_NAMESPACE, KIT_SIG, KIT_SUMS, MANIFEST, SIGNATURE, BundleError, utc_now)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.build import build_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.kit import kit_sums
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.sign import sign_bytes


def _old_created(raw):
    try:
        old = json.loads(raw.decode('utf-8')) if raw else None
    except ValueError:
        return None
    return old.get('created') if isinstance(old, dict) else None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            name=dict(type='str', required=True),
            version=dict(type='str', required=True),
            arches=dict(type='list', elements='str', required=True, choices=list(ARCHES)),
            created=dict(type='str'),
            images=dict(type='list', elements='dict'),
            versions=dict(type='dict', default={}),
            key=dict(type='path', no_log=False),
            namespace=dict(type='str', default=DEFAULT_NAMESPACE),
        ),
        supports_check_mode=True,
    )
    p = module.params
    # old and new content (None: absent) of manifest.json, kit.sha256 and their signatures
    names = (MANIFEST, SIGNATURE, KIT_SUMS, KIT_SIG)
    old = dict((name, read_bytes(os.path.join(p['path'], name))) for name in names)
    try:
        meta = dict(name=p['name'], version=p['version'], arches=p['arches'], images=p['images'],
                    versions=p['versions'], created=p['created'] or 'pending')
        manifest = build_manifest(p['path'], meta)
        if not p['created']:
            manifest['created'] = _old_created(old[MANIFEST])
            if manifest['created'] is None or pretty_json(manifest) != old[MANIFEST]:
                manifest['created'] = utc_now()
        raw = pretty_json(manifest)
        sums = kit_sums(manifest)
        new = {MANIFEST: raw, KIT_SUMS: sums, SIGNATURE: None, KIT_SIG: None}
        if p['key']:
            runner = _cli.Runner(module)
            new[SIGNATURE] = sign_bytes(runner, raw, p['key'], p['namespace']).encode('utf-8')
            new[KIT_SIG] = sign_bytes(runner, sums, p['key'], p['namespace']).encode('utf-8')
        else:
            # without a key an old signature goes only when what it signed changes
            new[SIGNATURE] = old[SIGNATURE] if raw == old[MANIFEST] else None
            new[KIT_SIG] = old[KIT_SIG] if sums == old[KIT_SUMS] else None
    except (BundleError, FsError) as e:
        module.fail_json(msg=str(e))

    changed_names = [name for name in names if new[name] != old[name]]
    result = dict(
        changed=bool(changed_names),
        manifest=os.path.join(p['path'], MANIFEST),
        manifest_sha256=sha256_bytes(raw),
        files=len(manifest['files']),
        bytes=sum(e['size'] for e in manifest['files'].values()),
        signed=new[SIGNATURE] is not None,
    )
    if module.check_mode:
        module.exit_json(**result)
    for name in changed_names:
        target = os.path.join(p['path'], name)
        if new[name] is None:
            os.unlink(target)
        else:
            atomic_write(target, new[name])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
