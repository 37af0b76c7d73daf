#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_spec
short_description: Validate a Ferry bundle spec and return it normalized
version_added: 0.1.0
description:
  - Checks a bundle spec (see C(docs/bundle.md)) and returns it normalized, with defaults filled in,
    relative local paths made absolute against the spec file's directory and digests lower-cased.
  - An invalid spec fails with the key path of the problem, for example C(artifacts[2].sha256) or
    C(arches[1]) for an unsupported architecture.
  - Read-only; never reports a change.
  - Registry passwords are replaced by C(********) in the returned spec so they do not end up in logs.
author: Ferry developers (@ferry-airgap)
options:
  path:
    description:
      - Spec file to read (YAML; JSON when PyYAML is not installed on the host).
      - The spec is read from the file, never passed as an argument, so the registry passwords it holds never
        appear in the task's arguments, its C(invocation) or the host's log.
    type: path
    required: true
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.read_only
"""

EXAMPLES = r"""
- name: Validate the bundle spec
  ferry.airgap.bundle_spec:
    path: "{{ playbook_dir }}/bundle.yml"
  register: bundle

- name: Show what will be fetched
  ansible.builtin.debug:
    msg: "{{ item.arch }}/{{ item.name }} from {{ item.src }}"
  loop: "{{ bundle.spec.artifacts }}"
"""

RETURN = r"""
spec:
  description: The normalized spec.
  returned: success
  type: dict
  sample:
    name: shop
    version: 2024.06.1
    arches: [x86_64, aarch64]
    artifacts:
      - {name: k3s, arch: x86_64, src: "https://example.invalid/k3s", sha256: "0123...cdef", dest: k3s,
         version: v1.33.1+k3s1}
    versions: {k3s: {x86_64: v1.33.1+k3s1}}
    images:
      - {ref: "registry.example/shop/web:1.4", oci_archive: /srv/build/web.tar}
    apps:
      - {name: shop, version: 1.4.0, src: /srv/build/apps/shop}
    signing: {key: /home/builder/.ssh/ferry_bundle, identity: builder@example, namespace: ferry-bundle}
counts:
  description: How many arches, artifacts, images and apps the spec lists.
  returned: success
  type: dict
  sample: {arches: 2, artifacts: 6, images: 12, apps: 1}
"""

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.spec import load_spec_file

MASK = '********'


def masked(spec):
    out = copy.deepcopy(spec)
    for img in out.get('images', []):
        reg = img.get('registry')
        if reg and reg.get('password'):
            reg['password'] = MASK
    return out


def main():
    module = AnsibleModule(
        argument_spec=dict(path=dict(type='path', required=True)),
        supports_check_mode=True,
    )
    try:
        spec = load_spec_file(module.params['path'])
    except (BundleError, FsError) as e:
        module.fail_json(msg='invalid bundle spec: %s' % e)
    counts = dict((k, len(spec[k])) for k in ('arches', 'artifacts', 'images', 'apps'))
    module.exit_json(changed=False, spec=masked(spec), counts=counts)


if __name__ == '__main__':
    main()
