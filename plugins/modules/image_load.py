#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: image_load
short_description: Load images from an OCI image layout into containerd, streaming only what is missing
version_added: 0.1.0
description:
  - Loads the images O(images) of the OCI image layout O(store) (the bundle's image store on the host) into
    containerd for one platform, in the namespace O(namespace), through the C(ctr) command.
  - An image already present under its ref with the same digest, with its platform's content and (O(unpack))
    unpacked, is skipped. For the others, one tar stream is generated on the fly (no temporary file) holding
    C(oci-layout), an C(index.json) naming only those images, and only the blobs of the platform containerd does
    not hold yet; it is piped into C(ctr images import --platform P -).
  - Every blob is hashed while it streams. On a digest mismatch the stream is cut before the corrupt blob is
    complete, so containerd fails the import, and the module fails naming the blob, the image, the expected and
    the actual digest.
  - All or nothing. The images are imported and unpacked under temporary names
    (C(ferry.invalid/staging/...)) and their real refs are tagged by a second import without blobs only once
    every image is in; a failure (corrupt blob, disk full, unpack error) removes the temporary names, so no
    requested ref changes and nothing half-made is listed. A rerun sends again only what containerd lacks.
  - Reports a change when an image was loaded, that is when a ref was added or moved to another digest, or when
    the content or the unpacked snapshot of an image already tagged had to be completed.
  - With O(labels), every requested ref carries those image labels afterwards (C(ctr images label)); a ref whose
    labels already have those values is left alone, so setting labels reports a change only when one changed.
  - Serves a standalone containerd and the one embedded in k3s (O(address)=V(/run/k3s/containerd/containerd.sock),
    O(ctr)=V([k3s, ctr])).
  - Importing another platform of an image index already loaded makes containerd drop the content of the
    platform loaded before (the index's garbage collection labels then name only the new platform), so load one
    platform per namespace.
author: Ferry developers (@ferry-airgap)
options:
  store:
    description: The OCI image layout directory (C(oci-layout), C(index.json), C(blobs/sha256/)) on the host.
    type: path
    required: true
  images:
    description:
      - Refs to load, as annotated in the store's C(index.json) (C(org.opencontainers.image.ref.name)).
      - Default, every ref of the store. A ref the store lacks is an error naming it and the refs the store has.
    type: list
    elements: str
  platform:
    description:
      - Platform to load (C(os/arch[/variant]), e.g. C(linux/arm64)), matched as containerd matches it
        (C(linux/arm64) is C(linux/arm64/v8)).
      - Default, the host's (x86_64 is C(linux/amd64), aarch64 is C(linux/arm64)).
    type: str
  namespace:
    description: containerd namespace (V(k8s.io) is where Kubernetes looks).
    type: str
    default: k8s.io
  address:
    description: containerd's socket. For k3s, V(/run/k3s/containerd/containerd.sock).
    type: path
    default: /run/containerd/containerd.sock
  ctr:
    description:
      - The ctr command as an argv prefix. Default, C(ctr) from the PATH or C(/usr/local/bin/ctr).
      - For k3s, V([k3s, ctr]).
    type: list
    elements: str
  unpack:
    description:
      - Unpack the images into snapshots after the import, so that containers can start from them at once.
      - Unpacking works for a platform other than the host's too (layers are only extracted).
      - When false, C(ctr images import --no-unpack) is used and an image counts as present without its snapshot.
    type: bool
    default: true
  snapshotter:
    description:
      - Snapshotter to unpack into (the one containerd's CRI plugin uses). Default, ctr's (C(overlayfs)).
    type: str
  labels:
    description:
      - Image labels every requested ref must carry (its other labels are kept). For Kubernetes,
        the label C(io.cri-containerd.pinned) with value C(pinned) keeps the kubelet's image garbage collection from removing the images
        (containerd 1.7 and later report such images as pinned to the kubelet; older ones keep the label only).
      - Keys and values must not contain C(,), C(=) or spaces.
    type: dict
    default: {}
extends_documentation_fragment:
  - ferry.airgap.attributes
attributes:
  check_mode:
    support: full
    details: containerd is only read (images, content, snapshots); RV(loaded) and RV(bytes_moved) tell what would happen.
  diff_mode:
    support: full
    details: The image list of the namespace (one C(ref@digest) line per image) before and after.
  platform:
    platforms: linux
notes:
  - Needs C(ctr) and the right to use the socket (root). A C(ctr) older than containerd 1.6 (k3s v1.22 bundles 1.5)
    has no C(images import --platform); through it only the host's platform can be loaded.
  - The store of a host may hold blobs for its platform only; the refs to load must have theirs.
"""

EXAMPLES = r"""
- name: Load the bundle's images into containerd
  ferry.airgap.image_load:
    store: /var/lib/ferry/bundle/images
    images: "{{ ferry_images }}"

- name: Load into k3s's embedded containerd
  ferry.airgap.image_load:
    store: /var/lib/ferry/bundle/images
    address: /run/k3s/containerd/containerd.sock
    ctr: [k3s, ctr]
    labels:
      io.cri-containerd.pinned: pinned
"""

RETURN = r"""
platform:
  description: The platform loaded.
  returned: always
  type: str
  sample: linux/amd64
loaded:
  description: Refs imported by this run (that would be in check mode).
  returned: always
  type: list
  elements: str
  sample: [registry.ferry.local/shop/web:1.4]
present:
  description: Refs already present with the same digest, their platform's content complete (and unpacked).
  returned: always
  type: list
  elements: str
  sample: [registry.ferry.local/shop/db:16]
images:
  description: Each requested ref and the digest containerd has for it after the run (predicted in check mode).
  returned: always
  type: dict
  sample: {registry.ferry.local/shop/web:1.4: "sha256:74aef9662728854af86790fdcef40d55901be0d8464f8bbd1df18e4a2aa47fa6"}
labelled:
  description: Refs whose O(labels) were set by this run (would be in check mode).
  returned: always
  type: list
  elements: str
  sample: [docker.io/rancher/mirrored-pause:3.1]
bytes_moved:
  description: Bytes of blobs streamed into containerd (that would be in check mode); 0 when all was present.
  returned: always
  type: int
  sample: 52428800
blobs_moved:
  description: Number of blobs streamed into containerd (that would be in check mode).
  returned: always
  type: int
  sample: 4
"""

import platform as _platform

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils import _cli
from ansible_collections.ferry.airgap.plugins.module_utils._platform import ARCHES, arch_platform_key, format_platform, normalize_arch, normalize_platform
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import OciError
from ansible_collections.ferry.airgap.plugins.module_utils._oci.store import ImageStore
from ansible_collections.ferry.airgap.plugins.module_utils._runtime.containerd import STAGING_PREFIX, ContainerdError, Ctr
from ansible_collections.ferry.airgap.plugins.module_utils._runtime.load import platform_plan

ARGUMENT_SPEC = dict(
    store=dict(type='path', required=True),
    images=dict(type='list', elements='str'),
    platform=dict(type='str'),
    namespace=dict(type='str', default='k8s.io'),
    address=dict(type='path', default='/run/containerd/containerd.sock'),
    ctr=dict(type='list', elements='str'),
    unpack=dict(type='bool', default=True),
    snapshotter=dict(type='str'),
    labels=dict(type='dict', default={}),
)


def host_platform():
    machine = normalize_arch(_platform.machine())
    if machine not in ARCHES:
        raise OciError("cannot tell the platform of this host (machine '%s'): set platform" % machine)
    return arch_platform_key(machine)


def _host_platform_or_none():
    try:
        return format_platform(normalize_platform(host_platform()))
    except OciError:
        return None


def resolve_ctr(module, ctr):
    """The ctr argv prefix with its program resolved (PATH, then /usr/local/bin)."""
    argv = list(ctr or ['ctr'])
    if not argv or not argv[0]:
        module.fail_json(msg='ctr must be a non-empty list, e.g. [ctr] or [k3s, ctr]')
    path = module.get_bin_path(argv[0], opt_dirs=['/usr/local/bin'])
    if path is None:
        module.fail_json(msg="ctr command '%s' not found (looked in PATH and /usr/local/bin): install containerd, "
                             "or set ctr (for k3s: [k3s, ctr])" % argv[0])
    return [path] + argv[1:]


def open_store(path):
    store = ImageStore(path)
    store.index()
    return store


def _describer(plans):
    owners = {}
    for plan in plans:
        for digest, dummy, kind in plan['blobs']:
            owners.setdefault(digest, (kind, []))[1].append(plan['ref'])
    return lambda digest: 'blob %s (%s of %s)' % (digest, owners[digest][0], ', '.join(owners[digest][1]))


def _lines(images, labels=None):
    """One ``ref@digest`` line per image (with the O(labels) keys it carries, when labels are managed)."""
    lines = []
    for ref, digest in sorted(images.items()):
        if ref.startswith(STAGING_PREFIX):
            continue
        held = (labels or {}).get(ref) or {}
        lines.append('%s@%s%s\n' % (ref, digest, ''.join(' %s=%s' % item for item in sorted(held.items()))))
    return ''.join(lines)


def _wanted(all_labels, keys):
    """{ref: {key: value}} restricted to ``keys`` (the labels this module manages)."""
    return dict((ref, dict((k, v) for k, v in held.items() if k in keys)) for ref, held in all_labels.items())


class _Counter(object):
    def __init__(self):
        self.bytes = 0
        self.blobs = 0

    def __call__(self, count):
        self.bytes += count
        self.blobs += 1


def _bad_labels(labels):
    bad = [k for k, v in labels.items() if not k or any(c in '%s%s' % (k, v) for c in ',= \t\n')]
    if bad:
        raise ValueError('labels: keys and values must be non-empty keys without ",", "=" or spaces: %s'
                         % ', '.join(sorted(bad)))


def _lacking(refs, held, labels):
    """The refs whose labels ``held`` ({ref: {key: value}}) do not have every value of ``labels``."""
    return [ref for ref in refs if any(held.get(ref, {}).get(k) != v for k, v in labels.items())]


def apply_labels(ctr, refs, labels):
    """Set ``labels`` on the refs lacking them; returns (labelled refs, labels after), restricted to the keys
    of ``labels`` (read again first: an import may have come between)."""
    held = _wanted(ctr.image_labels(), labels)
    labelled = _lacking(refs, held, labels)
    for ref in labelled:
        ctr.label(ref, labels)
    return labelled, _wanted(ctr.image_labels(), labels) if labelled else held


def run(module, ctr, store, refs, platform, counter):
    """Load ``refs``; returns (result, images before, images after, labels before, labels after)."""
    p = module.params
    labels = dict((str(k), str(v)) for k, v in (p['labels'] or {}).items())
    _bad_labels(labels)
    plans = [platform_plan(store, ref, platform) for ref in refs]
    ctr.check_socket()
    listing = ctr.listing()
    before = dict((ref, entry[0]) for ref, entry in listing.items())
    labels_before = _wanted(dict((ref, entry[1]) for ref, entry in listing.items()), labels)
    content = ctr.content()
    snapshots = ctr.snapshots() if p['unpack'] else None
    todo = [plan for plan in plans if not ctr.is_loaded(plan, before, content, snapshots)]
    blobs, seen = [], set(content)
    for plan in todo:
        for blob in plan['blobs']:
            if blob[0] not in seen:
                seen.add(blob[0])
                blobs.append(blob)
    result = dict(platform=platform, loaded=[plan['ref'] for plan in todo],
                  present=[plan['ref'] for plan in plans if plan not in todo])
    if module.check_mode or not todo:
        for blob in blobs:
            counter(blob[1])
        after = dict(before)
        after.update((plan['ref'], plan['top']['digest']) for plan in todo)
    else:
        ctr.load(store, todo, blobs, platform, p['unpack'], counter, _describer(todo))
        after = ctr.images()
    result['images'] = dict((ref, after.get(ref)) for ref in refs)
    labels_after, result['labelled'] = labels_before, []
    if labels:
        if module.check_mode:
            # predicted: a ref loaded now carries no label yet
            current = dict((ref, {} if ref in result['loaded'] else held) for ref, held in labels_before.items())
            result['labelled'] = _lacking(refs, current, labels)
            labels_after = dict(labels_before)
            labels_after.update((ref, dict(labels)) for ref in result['labelled'])
        else:
            result['labelled'], labels_after = apply_labels(ctr, refs, labels)
    result['changed'] = bool(todo) or before != after or labels_before != labels_after
    return result, before, after, labels_before, labels_after


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    counter = _Counter()
    result = dict(changed=False, platform=p['platform'], loaded=[], present=[], images={}, labelled=[], bytes_moved=0,
                  blobs_moved=0)
    try:
        platform = format_platform(normalize_platform(p['platform'] or host_platform()))
        result['platform'] = platform
        store = open_store(p['store'])
        refs = p['images'] if p['images'] is not None else sorted(store.refs())
        missing = [ref for ref in refs if store.entry(ref) is None]
        if missing:
            raise OciError("store '%s' has no image %s (it has: %s)" % (
                p['store'], ', '.join(missing), ', '.join(sorted(store.refs())) or 'no image'))
        ctr = Ctr(resolve_ctr(module, p['ctr']), p['address'], p['namespace'],
                  _cli.Runner(module), snapshotter=p['snapshotter'], host_platform=_host_platform_or_none())
        outcome, before, after, labels_before, labels_after = run(module, ctr, store, refs, platform, counter)
        result.update(outcome)
    except ContainerdError as exc:
        result.update(bytes_moved=counter.bytes, blobs_moved=counter.blobs)
        module.fail_json(msg=exc.msg, **dict(result, **exc.details))
    except (OciError, ValueError, OSError) as exc:
        result.update(bytes_moved=counter.bytes, blobs_moved=counter.blobs)
        module.fail_json(msg=str(exc), **result)
    result.update(bytes_moved=counter.bytes, blobs_moved=counter.blobs)
    if module._diff:
        result['diff'] = dict(before=_lines(before, labels_before), after=_lines(after, labels_after),
                              before_header='%s images' % p['namespace'], after_header='%s images' % p['namespace'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
