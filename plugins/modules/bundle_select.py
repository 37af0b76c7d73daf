#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_select
short_description: List the bundle files one host needs (its arch's artifacts, its platform's image blobs, apps)
version_added: 0.1.0
description:
  - Runs where the verified bundle is (the deploy node) and changes nothing. Reads C(manifest.json) and the
    bundle's OCI image layout C(images/) and lists the files a host of O(arch) needs, with their size and sha256
    taken from the manifest (nothing is hashed again). M(ferry.airgap.bundle_pull) then pulls exactly these
    files onto the host (docs/distribution.md).
  - Artifacts are taken for O(arch), else C(noarch). An artifact the bundle lacks for O(arch) is an error naming
    the arch and the artifacts the bundle has.
  - For each image, the image index (multi-arch images), the manifest of the host's platform, its config and
    layers are listed, each blob once; C(images/oci-layout) and C(images/index.json) come with them whenever an
    image is selected.
  - A bundle that does not carry O(arch) is an error (C(bundle <name> <version> has no <arch> ...)).
author: Ferry developers (@ferry-airgap)
options:
  path:
    description: The bundle directory (holding C(manifest.json)).
    type: path
    required: true
  arch:
    required: true
  artifacts:
    description: Names of the artifacts the host needs (C(artifacts/<arch>/<name>/<file>) in the bundle).
    type: list
    elements: str
    default: []
  images:
    description:
      - Image refs the host needs, as annotated in C(images/index.json). A ref the bundle lacks, or one without
        the host's platform, is an error.
      - Default, every image of the bundle that has the host's platform (the others are listed in
        RV(images_skipped)). An empty list selects no image.
    type: list
    elements: str
  apps:
    description: Names of applications whose files (C(apps/<name>/<version>/...), every version the bundle has) the host needs.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.read_only
  - ferry.airgap.arches.arch
seealso:
  - module: ferry.airgap.bundle_serve
  - module: ferry.airgap.bundle_pull
"""

EXAMPLES = r"""
- name: List what this host needs from the bundle on the deploy node
  ferry.airgap.bundle_select:
    path: /opt/ferry/bundles/shop-2024.06.1
    arch: "{{ ansible_facts.ferry_host.arch }}"
    artifacts: [containerd, runc, cni-plugins]
    images: "{{ ferry_images | default(omit) }}"
  delegate_to: "{{ groups['deploy'][0] }}"
  register: selection
"""

RETURN = r"""
name:
  description: Bundle name from the manifest.
  returned: success
  type: str
  sample: shop
version:
  description: Bundle version from the manifest.
  returned: success
  type: str
  sample: 2024.06.1
platform:
  description: The OCI platform of O(arch).
  returned: success
  type: str
  sample: linux/amd64
files:
  description: The files the host needs, sorted by path, with size and sha256 from the manifest.
  returned: success
  type: list
  elements: dict
  sample: [{path: artifacts/x86_64/runc/runc.amd64, size: 8752456, sha256: 9a87d5bc...}]
bytes:
  description: Total size of RV(files).
  returned: success
  type: int
  sample: 116168155
artifacts:
  description: Artifact name to its path relative to the bundle root.
  returned: success
  type: dict
  sample: {containerd: artifacts/x86_64/containerd/containerd-1.6.20-linux-amd64.tar.gz, runc: artifacts/x86_64/runc/runc.amd64}
images:
  description: Selected image ref to its top digest (in C(index.json)) and the digest of the host platform's manifest.
  returned: success
  type: dict
  sample: {"ferry.test/web:1.0": {digest: "sha256:a70f...", platform_digest: "sha256:21fe..."}}
images_skipped:
  description: Images left out because they lack the host's platform (only when O(images) is not given).
  returned: success
  type: list
  elements: str
  sample: []
apps:
  description: Selected app name to the versions whose files are listed.
  returned: success
  type: dict
  sample: {shop: ["1.4.0"]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils._platform import ARCHES
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import DistributeError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.select import select


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            arch=dict(type='str', required=True, choices=list(ARCHES)),
            artifacts=dict(type='list', elements='str', default=[]),
            images=dict(type='list', elements='str'),
            apps=dict(type='list', elements='str', default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = select(p['path'], p['arch'], p['artifacts'], p['images'], p['apps'])
    except DistributeError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
