#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_images
short_description: Put container images into the OCI image store of a Ferry bundle
version_added: 0.1.0
description:
  - Imports images from C(docker save) archives (legacy and Docker 25+ layouts), OCI archives and
    OCI distribution (v2) registries into one OCI image layout directory O(store), where every blob
    is stored once across images, versions and architectures.
  - Docker archives are converted to OCI image manifests. Archives are read member by member and never
    extracted; unsafe members (absolute paths, C(..), escaping links, devices) fail the task and leave
    the store unchanged. Every blob is checked against its digest before it gets its final name.
  - The store's C(index.json) holds one entry per O(images[].ref), annotated with the full ref. Several
    entries of O(images) with the same O(images[].ref) (for example one archive per architecture) make
    one multi-platform image. A ref whose content did not change is left untouched; a ref with new
    content is replaced.
  - Runs on the build machine (usually C(localhost)).
author: Ferry developers (@ferry-airgap)
options:
  store:
    description: Directory of the OCI image layout; created when missing.
    type: path
    required: true
  images:
    description:
      - The images to put into the store.
      - Exactly one of O(images) and O(spec) is required.
    type: list
    elements: dict
    suboptions:
      ref:
        description:
          - The full image reference as the site will use it, for example C(registry.ferry.local/demo/web:1.0).
          - When an archive holds several images, the one whose tag (or ref annotation) matches this ref is taken.
        type: str
        required: true
      docker_archive:
        description: A C(docker save) tar (plain or gzip). Exactly one of O(images[].docker_archive),
          O(images[].oci_archive) and O(images[].registry) is required.
        type: path
      oci_archive:
        description: An OCI image layout tar (plain or gzip), single or multi-platform.
        type: path
      registry:
        description: Pull the image from an OCI distribution (v2) registry.
        type: dict
        suboptions:
          ref:
            description: The image reference at the registry, for example C(registry.example.com/demo/web:1.0).
            type: str
            required: true
          username:
            description: User for Basic auth or for the Bearer token service.
            type: str
          password:
            description: Password of O(images[].registry.username). Never logged (C(no_log)).
            type: str
          insecure:
            description:
              - Talk plain C(http) to the registry. Registries on C(127.0.0.1) or C(localhost) always use
                C(http); every other registry uses C(https) unless this is V(true).
            type: bool
            default: false
          ca_file:
            description: CA bundle (PEM) to verify the registry's certificate.
            type: path
          timeout:
            description: Network timeout in seconds for each request.
            type: int
            default: 60
      arch:
        description:
          - Architecture of this image. For a single-platform archive, the archive's platform must be this one.
            For a multi-platform source, only this platform is kept.
          - When omitted, the platforms of O(arches) are kept from registries and multi-platform archives (each
            must be present in the image), and a single-platform archive must be one of them.
        type: str
        choices: [x86_64, aarch64]
  spec:
    description:
      - A bundle spec file (C(docs/bundle.md)), validated as M(ferry.airgap.bundle_spec) does - its C(images)
        (relative paths against the spec file's directory) are imported for its C(arches); O(arches) is not used.
      - Registry credentials (C(images[].registry.username) and C(password)) are read from the file inside the
        module, so they never travel through task arguments, registered results or facts; should any output
        echo a password, it is masked as a C(no_log) value would be.
      - Exactly one of O(images) and O(spec) is required.
    type: path
  compression:
    description:
      - How layers that arrive uncompressed (C(docker save) layers, plain tar layers of OCI archives) are
        stored. V(zstd) (level 3) and V(gzip) (level 6) are deterministic - the same layer gives the same
        bytes on every run - and change the manifests of those images (the configs and their C(diff_ids)
        stay the same); V(none) stores them as they arrive.
      - Layers that arrive compressed (registries, compressed archive layers) are always kept byte for byte,
        after checking that they decompress to the config's C(diff_ids).
      - V(zstd) needs the Python package C(zstandard) on the build machine; containerd 1.5+ reads zstd layers.
      - With O(spec), the spec's C(images_compression) is used instead.
    type: str
    choices: [zstd, gzip, none]
    default: zstd
  arches:
    default: [x86_64, aarch64]
  state:
    description: Only V(present) is supported; refs not listed are left alone.
    type: str
    choices: [present]
    default: present
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.arches
attributes:
  check_mode:
    support: full
    details: Reads the sources (registry manifests, archive members) and reports which refs would be
      added or updated and how many bytes would be written; writes nothing.
  diff_mode:
    support: full
    details: Shows the store's ref to digest mapping before and after.
notes:
  - Only the Python standard library is used (registries are reached with C(urllib)), except for zstd
    layers, which need C(zstandard).
"""

EXAMPLES = r"""
- name: Collect the application images into the bundle
  ferry.airgap.bundle_images:
    store: "{{ bundle_dir }}/images"
    images:
      - ref: registry.ferry.local/demo/web:1.0
        docker_archive: /srv/build/web-1.0-amd64.tar
        arch: x86_64
      - ref: registry.ferry.local/demo/web:1.0
        docker_archive: /srv/build/web-1.0-arm64.tar
        arch: aarch64
      - ref: registry.ferry.local/demo/db:16
        oci_archive: /srv/build/db-16.oci.tar
      - ref: registry.ferry.local/library/redis:7.2
        registry:
          ref: registry.example.com/library/redis:7.2
          username: builder
          password: "{{ registry_password }}"
    arches: [x86_64, aarch64]

- name: Collect the images a bundle spec lists, registry credentials included (playbooks/bundle.yml)
  ferry.airgap.bundle_images:
    store: "{{ bundle_dir }}/images"
    spec: /srv/build/shop-2024.06.1.yml
"""

RETURN = r"""
images:
  description: Every image of the store after the run.
  returned: always
  type: list
  elements: dict
  contains:
    ref:
      description: Full image reference.
      type: str
      sample: registry.ferry.local/demo/web:1.0
    digest:
      description: Digest of the ref's top descriptor (an image index or a manifest).
      type: str
      sample: sha256:74aef9662728854af86790fdcef40d55901be0d8464f8bbd1df18e4a2aa47fa6
    platforms:
      description: Platform (C(os/arch[/variant])) to image manifest digest.
      type: dict
      sample: {"linux/amd64": "sha256:2a8b403cc587326038d7bc5cd65e1098101367d342cd579c22631ab70cc90fb0"}
added:
  description: Refs that were not in the store before (would be added in check mode).
  returned: always
  type: list
  elements: str
  sample: [registry.ferry.local/demo/web:1.0]
updated:
  description: Refs whose content changed (would change in check mode).
  returned: always
  type: list
  elements: str
  sample: []
bytes_written:
  description: Bytes of blobs written (to be written in check mode).
  returned: always
  type: int
  sample: 31457280
bytes_skipped:
  description: Bytes of blobs already in the store and not written again.
  returned: always
  type: int
  sample: 1048576
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils._platform import ARCHES
from ansible_collections.ferry.airgap.plugins.module_utils._oci.compress import COMPRESSIONS, DEFAULT_COMPRESSION
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._oci.sync import sync_images
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.spec import load_spec_file


REGISTRY_SPEC = dict(
    ref=dict(type='str', required=True),
    username=dict(type='str'),
    password=dict(type='str', no_log=True),
    insecure=dict(type='bool', default=False),
    ca_file=dict(type='path'),
    timeout=dict(type='int', default=60),
)

IMAGE_SPEC = dict(
    ref=dict(type='str', required=True),
    docker_archive=dict(type='path'),
    oci_archive=dict(type='path'),
    registry=dict(type='dict', options=REGISTRY_SPEC),
    arch=dict(type='str', choices=list(ARCHES)),
)

SOURCES = ['docker_archive', 'oci_archive', 'registry']

ARGUMENT_SPEC = dict(
    store=dict(type='path', required=True),
    images=dict(type='list', elements='dict', options=IMAGE_SPEC,
                mutually_exclusive=[SOURCES], required_one_of=[SOURCES]),
    spec=dict(type='path'),
    arches=dict(type='list', elements='str', choices=list(ARCHES), default=list(ARCHES)),
    compression=dict(type='str', choices=list(COMPRESSIONS), default=DEFAULT_COMPRESSION),
    state=dict(type='str', choices=['present'], default='present'),
)


def run(params, check_mode):
    """Import the declared images; returns the module result (without diff)."""
    store = ImageStore(params['store'], dry_run=check_mode)
    existed = store.exists()
    store.init()
    before = store.refs()
    changes = sync_images(store, params['images'], params['arches'], params['compression'])
    after = store.refs()
    changed = before != after or store.bytes_written > 0 or not existed
    result = dict(changed=changed, images=store.images(), bytes_written=store.bytes_written,
                  bytes_skipped=store.bytes_skipped, **changes)
    return result, before, after


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, mutually_exclusive=[('images', 'spec')],
                           required_one_of=[('images', 'spec')], supports_check_mode=True)
    params = module.params
    try:
        if params['spec']:
            spec = load_spec_file(params['spec'])
            # The spec's registry passwords stay in this process; masked like no_log values should output echo one.
            module.no_log_values.update(
                i['registry']['password'] for i in spec['images'] if (i.get('registry') or {}).get('password'))
            params = dict(params, images=spec['images'], arches=spec['arches'], compression=spec['images_compression'])
        result, before, after = run(params, module.check_mode)
    except (ValueError, OSError, BundleError) as exc:
        module.fail_json(msg=str(exc))
    if module._diff:
        result['diff'] = dict(before=before, after=after)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
