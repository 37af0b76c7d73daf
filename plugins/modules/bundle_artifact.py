#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_artifact
short_description: Fetch one artifact into a Ferry bundle, checking its sha256
version_added: 0.1.0
description:
  - Copies or downloads O(src) to C(<path>/artifacts/<arch>/<name>/<dest>) and checks its sha256.
  - Skips the download when the file is already there with the expected digest.
  - A wrong digest fails naming the source, the expected and the actual digest. Nothing is left behind;
    the download goes to a temporary sibling name that is removed, and a stale file with a wrong digest
    at the destination is removed too.
  - An ELF binary (a file starting with the ELF magic bytes) must be built for O(arch) (its ELF C(e_machine)); one for
    another CPU fails naming the artifact, the declared and the actual arch, and is not kept. Other files
    (tarballs, RPMs, scripts) and C(noarch) artifacts are not checked.
author: Ferry developers (@ferry-airgap)
options:
  path:
    description: The bundle directory being built.
    type: path
    required: true
  name:
    description: Artifact name (the directory under C(artifacts/<arch>/)).
    type: str
    required: true
  arch:
    description: Architecture the artifact is for.
    type: str
    required: true
    choices: [x86_64, aarch64, noarch]
  src:
    description:
      - A local path, a C(file://) URL or an C(http://)/C(https://) URL.
      - A C(user:password@) in the URL is used for HTTP basic authentication and never shown; messages and the
        task's C(invocation) carry the URL without it.
    type: str
    required: true
  sha256:
    description: Expected sha256 of the file (64 hex characters, an optional C(sha256:) prefix is accepted).
    type: str
    required: true
  dest:
    description: File name inside the artifact directory. Defaults to the last component of O(src).
    type: str
  timeout:
    description: HTTP timeout in seconds.
    type: int
    default: 60
  validate_certs:
    description: Verify HTTPS certificates.
    type: bool
    default: true
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.atomic_write
attributes:
  check_mode:
    support: full
    details: Reports whether the artifact would be fetched; downloads nothing.
  diff_mode:
    support: none
    details: Binary artifacts are not diffed.
"""

EXAMPLES = r"""
- name: Fetch the artifacts of the spec
  ferry.airgap.bundle_artifact:
    path: "{{ bundle_dir }}"
    name: "{{ item.name }}"
    arch: "{{ item.arch }}"
    src: "{{ item.src }}"
    sha256: "{{ item.sha256 }}"
    dest: "{{ item.dest }}"
  loop: "{{ bundle.spec.artifacts }}"
"""

RETURN = r"""
path:
  description: Where the artifact is in the bundle.
  returned: success
  type: str
  sample: /srv/build/shop-2024.06.1/artifacts/x86_64/k3s/k3s
sha256:
  description: The verified sha256.
  returned: success
  type: str
  sample: 4f6c4e2f1c6b0d1e0d3a3c1a9c5f0b8e7a6d5c4b3a29180706f5e4d3c2b1a098
size:
  description: Size in bytes; null in check mode when the file would be fetched.
  returned: success
  type: int
  sample: 71434240
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    ARTIFACT_ARCHES, SAFE_NAME_RE, BundleError, redact_url, url_secrets)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.fetch import artifact_path, fetch_artifact
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.spec import file_name_of


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            name=dict(type='str', required=True),
            arch=dict(type='str', required=True, choices=list(ARTIFACT_ARCHES)),
            src=dict(type='str', required=True),
            sha256=dict(type='str', required=True),
            dest=dict(type='str'),
            timeout=dict(type='int', default=60),
            validate_certs=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    module.no_log_values.update(url_secrets(p['src']))
    shown = redact_url(p['src'])
    sha = p['sha256'].strip().lower()
    if sha.startswith('sha256:'):
        sha = sha[len('sha256:'):]
    if not re.match(r'^[0-9a-f]{64}$', sha):
        module.fail_json(msg='sha256 for %s must be 64 hexadecimal characters, got %r' % (shown, p['sha256']))
    if not SAFE_NAME_RE.match(p['name']):
        module.fail_json(msg='artifact name %r is not a plain name ([A-Za-z0-9._+-])' % p['name'])
    dest = p['dest'] or file_name_of(p['src'])
    if not dest or '/' in dest or dest.startswith('.'):
        module.fail_json(msg='cannot use %r as the file name of %s; set dest' % (dest, shown))

    def opener(url):
        return open_url(url, timeout=p['timeout'], validate_certs=p['validate_certs'], http_agent='ferry-airgap')

    try:
        result = fetch_artifact(p['src'], sha, artifact_path(p['path'], p['arch'], p['name'], dest),
                                opener=opener, timeout=p['timeout'], check_mode=module.check_mode,
                                name=p['name'], arch=p['arch'])
    except (BundleError, FsError) as e:
        module.fail_json(msg=redact_url(e))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
