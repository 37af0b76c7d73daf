#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_verify
short_description: Verify a Ferry bundle, its signature, a delta or a (chunked) tar
version_added: 0.1.0
description:
  - Verifies the signature of C(manifest.json) with C(ssh-keygen -Y verify), then every file of the bundle
    against the manifest (missing, unlisted, size, sha256), image blobs against their names and the blobs
    the images need.
  - O(path) may be a bundle directory, a bundle tar, the first chunk (C(.000)) of a chunked tar or its
    C(.parts.json). Chunks are checked against the chunk list. The tar must be uncompressed; members with
    C(..), absolute paths, escaping links, devices, fifos or sparse data are refused before anything is
    written. Then C(manifest.json) and its signature are read from the tar and the signature is verified;
    only then are the members the manifest lists extracted, each only when its size is the listed one
    (unlisted members, links and members of another size are reported, never extracted). Files get mode
    0644 (0755 when executable) and, as root, owner root. Without O(dest) it is unpacked into a temporary
    directory that is removed afterwards.
  - Only regular files are read (never through a symlink, never a fifo or device), with size bounds for
    C(manifest.json), its signature and the image index; the manifest's structure is checked before use.
  - When the bundle is a delta and O(base) is given, the full bundle is reconstructed from the delta and
    the base (refusing a base other than the one the delta was built against) and verified. A delta
    verified without O(base) only has its shipped files checked (RV(complete=false)).
  - In a bundle directory, unlisted paths a site adds after unpacking are skipped instead of being reported
    as unlisted files (RV(site_local) lists them); see O(ignore_extra). Content unpacked from a tar must hold
    exactly the listed files. C(.ferry-venv/) and C(collections/) must match the record C(./bootstrap) made of
    them (O(site_key)).
  - Checks that every ELF binary among the artifacts is built for the arch it is declared for (its ELF
    C(e_machine)); tarballs, RPMs, scripts and C(noarch) artifacts are not checked.
  - Checks C(kit.sha256) (the site kit's checksums) against the manifest and, with the manifest's signature,
    its signature C(kit.sha256.sig).
  - Fails listing every problem found.
  - Reports a change only when it unpacked or reconstructed into O(dest) something that was not already
    there.
author: Ferry developers (@ferry-airgap)
options:
  path:
    description: Bundle directory, bundle tar, first chunk of a chunked tar, or its C(.parts.json).
    type: path
    required: true
  require_signature:
    description:
      - Fail unless C(manifest.json.sig) verifies against O(allowed_signers).
      - When false, a signature is still verified if O(allowed_signers) is given and the signature exists.
    type: bool
    default: true
  base:
    description: The base bundle directory a delta in O(path) was built against.
    type: path
  dest:
    description:
      - Where to put the unpacked (tar) or reconstructed (delta + O(base)) bundle. Replaced atomically when
        its content differs. Not used when O(path) is a full bundle directory.
      - Only a missing path, an empty directory or a bundle directory (one holding C(manifest.json)) is
        accepted; anything else (a non-empty directory without a manifest, a file, a symlink) is refused
        before any work, in check mode too.
      - The site-local paths of a bundle directory replaced here (see O(ignore_extra)) are moved into the new
        bundle (RV(carried_over)); when the new bundle lists files at those paths the run is refused naming them.
    type: path
  ignore_extra:
    description:
      - Extra site-local paths to skip when looking for unlisted files in a bundle directory, as globs matched
        (C(fnmatch), where C(*) also matches C(/)) against the path relative to the bundle root; a matching
        directory is skipped whole. Example C(*.retry), C(site/*).
      - Always skipped, without being listed here, as they are written at the site by C(./bootstrap), the
        operator or Ansible - C(.ferry-venv/), C(collections/), C(.ansible/), C(inventory/hosts.yml),
        C(inventory/group_vars/), C(inventory/host_vars/) (exact paths from the bundle root).
      - Only unlisted paths are skipped. A file the manifest lists is always checked, wherever it is.
      - Not applied to the content of a tar or chunks, nor to a reconstructed delta.
    type: list
    elements: str
    default: []
  site_key:
    description:
      - The site key C(./bootstrap) signs its record of C(.ferry-venv/) and C(collections/) with (C(docs/bundle.md),
        First install). Everything under those two directories must be exactly what that record lists, or it is a
        problem - it was not made by C(./bootstrap) at this site. Also checked in an existing O(dest) before its
        site-local paths are carried over.
      - Default C($FERRY_SITE_KEY), else C(/etc/ferry/site.key) when the module runs as root, else
        C(~/.config/ferry/site.key) - where C(./bootstrap) puts it.
    type: path
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.atomic_write
  - ferry.airgap.signing
  - ferry.airgap.signing.verify
attributes:
  check_mode:
    support: partial
    details:
      - A bundle directory is fully verified in check mode (it is only read).
      - A tar or a delta to reconstruct is not unpacked in check mode; only the chunk list of a tar, or the
        signature of a delta, is checked and C(changed) tells whether O(dest) would be written.
  diff_mode:
    support: none
  atomic_write:
    details: Files reach O(dest) only once they are verified.
"""

EXAMPLES = r"""
- name: Verify the bundle carried in on the USB disk
  ferry.airgap.bundle_verify:
    path: /media/usb/shop-2024.06.1.tar.000
    dest: /opt/ferry/bundles/shop-2024.06.1
    allowed_signers: /etc/ferry/allowed_signers
    identity: release@example

- name: Reconstruct and verify an upgrade delta against the installed bundle
  ferry.airgap.bundle_verify:
    path: /media/usb/shop-2024.07.0-delta
    base: /opt/ferry/bundles/shop-2024.06.1
    dest: /opt/ferry/bundles/shop-2024.07.0
    allowed_signers: /etc/ferry/allowed_signers
"""

RETURN = r"""
path:
  description: The bundle directory that was verified (O(dest) when it was unpacked or reconstructed there).
  returned: always
  type: str
  sample: /opt/ferry/bundles/shop-2024.06.1
name:
  description: Bundle name from the manifest.
  returned: when the manifest could be read
  type: str
  sample: shop
version:
  description: Bundle version from the manifest.
  returned: when the manifest could be read
  type: str
  sample: 2024.06.1
delta:
  description: Whether the manifest describes a delta.
  returned: when the manifest could be read
  type: bool
  sample: false
complete:
  description: Whether every file of the manifest was present and checked (false for a delta verified without its base).
  returned: when the manifest could be read
  type: bool
  sample: true
signature:
  description: Signature check result.
  returned: when the manifest could be read
  type: dict
  sample: {verified: true, principal: release@example, message: 'Good "ferry-bundle" signature for release@example with ED25519 key SHA256:...'}
files_checked:
  description: Number of files hashed and compared.
  returned: always
  type: int
  sample: 1432
bytes_checked:
  description: Bytes hashed.
  returned: always
  type: int
  sample: 3221225472
seconds:
  description: Time spent hashing and checking.
  returned: always
  type: float
  sample: 12.5
mb_per_s:
  description: Hashing throughput in MiB per second.
  returned: always
  type: float
  sample: 245.8
images:
  description: The images the manifest lists.
  returned: always
  type: list
  elements: dict
  sample: [{ref: "registry.example/shop/web:1.4", digest: "sha256:...", platforms: {linux/amd64: "sha256:..."}}]
site_local:
  description:
    - Unlisted site-local paths that were skipped (see O(ignore_extra)), relative to the bundle root; directories
      end with C(/) and are not descended into.
  returned: always
  type: list
  elements: str
  sample: [.ferry-venv/, collections/, inventory/hosts.yml]
carried_over:
  description:
    - The site's own paths (see RV(site_local)) moved from the bundle that was at O(dest) into the new one
      that replaced it; directories end with C(/). Run C(./bootstrap) again after an upgrade in place, so
      C(.ferry-venv/) and C(collections/) match the new kit.
  returned: always
  type: list
  elements: str
  sample: [.ferry-venv/, collections/, inventory/hosts.yml]
ansible_facts:
  description:
    - Facts set on the host the task ran on, when the verified bundle is a directory (a bundle directory in
      O(path), or a tar or delta placed in O(dest)); not for a tar verified without O(dest).
  returned: success, when the verified bundle is a directory
  type: complex
  contains:
    ferry_bundle:
      description:
        - The verified bundle for the plays that follow (C(playbooks/verify.yml) sets it on the deploy node,
          role C(ferry.airgap.ferry) hands it to every host).
        - C(dir) (the bundle directory), C(name), C(version), C(arches), C(images) (refs) and C(artifacts)
          (names, each once) from its manifest.
        - "C(arch_artifacts), per arch of the bundle the artifact names a host of that arch can be given (its
          arch's and the C(noarch) ones; C({x86_64: [k3s, k3s-selinux-el8]})): role C(ferry.airgap.ferry) picks
          a k3s host's SELinux policy RPMs from it, preflight checks them."
        - "C(versions), the artifacts' recorded versions (C({name: {arch: version}})), and
          C(layer_compressions), per platform the compressions of the images' layers (C(gzip), C(zstd),
          C(none)): preflight checks that each host's runtime reads them."
      type: dict
      sample:
        dir: /opt/ferry/bundles/shop-2024.06.1
        name: shop
        version: 2024.06.1
        arches: [x86_64, aarch64]
        images: ["registry.example/shop/web:1.4"]
        artifacts: [containerd, runc, cni-plugins]
        arch_artifacts: {x86_64: [cni-plugins, containerd, runc], aarch64: [cni-plugins, containerd, runc]}
        versions: {containerd: {x86_64: 1.7.18, aarch64: 1.7.18}}
        layer_compressions: {linux/amd64: [gzip, zstd], linux/arm64: [gzip, zstd]}
problems:
  description: Every problem found; empty on success.
  returned: always
  type: list
  elements: str
  sample: ["sha256 mismatch: artifacts/x86_64/k3s/k3s: expected 4f6c..., actual 9e1d..."]
"""

import os
import shutil
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils import _cli
from ansible_collections.ferry.airgap.plugins.module_utils._fs import FsError, read_bytes, replace_dir, tmp_sibling
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import KIT_SIG, KIT_SUMS, MANIFEST, SIGNATURE, BundleError
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.delta import apply_delta
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.kit import check_kit_sums
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import MANIFEST_LIMIT, parse_manifest, read_manifest
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.pack import (
    check_chunks, describe_source, resolve_pack, unpack)
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.sign import verify_signature
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.site import ExtraFilter, check_site_local
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.verify import (
    arch_artifacts, artifact_versions, guard_dest, layer_compressions, place_bundle, verify_bundle)


class _Counter(object):
    def __init__(self):
        self.bytes = 0

    def __call__(self, n):
        self.bytes += n


def _check_signature(module, bundle_dir, raw, result):
    p = module.params
    sig_path = os.path.join(bundle_dir, SIGNATURE)
    sig = dict(verified=False, principal=None, message=None)
    result['signature'] = sig
    if p['require_signature'] and not p['allowed_signers']:
        raise BundleError('require_signature is true but no allowed_signers file was given')
    if not p['allowed_signers']:
        sig['message'] = 'not checked: no allowed_signers given'
        return
    if not os.path.isfile(sig_path) or os.path.islink(sig_path):
        if p['require_signature']:
            raise BundleError('signature %s is missing (require_signature is true)' % sig_path)
        sig['message'] = 'not checked: %s is missing' % sig_path
        return
    out = verify_signature(_cli.Runner(module), os.path.join(bundle_dir, MANIFEST), p['allowed_signers'], p['identity'],
                           p['namespace'], data=raw)
    sig.update(verified=True, principal=out['principal'], message=out['message'])


def _check_kit(module, bundle_dir, manifest, result):
    """Problems of kit.sha256 in ``bundle_dir``: it must be what the manifest gives, signed like the manifest."""
    p = module.params
    raw = read_bytes(os.path.join(bundle_dir, KIT_SUMS), MANIFEST_LIMIT)
    problems = check_kit_sums(raw, manifest)
    if problems or not result['signature']['verified']:
        return problems
    if read_bytes(os.path.join(bundle_dir, KIT_SIG), MANIFEST_LIMIT) is None:
        return ['%s is missing: the manifest is signed, so the kit must be too' % KIT_SIG]
    try:
        verify_signature(_cli.Runner(module), os.path.join(bundle_dir, KIT_SUMS), p['allowed_signers'],
                         result['signature']['principal'], p['namespace'], data=raw)
    except BundleError as e:
        return [str(e)]
    return []


def _check_dest_site(module, dest):
    """Refuse an existing ``dest`` whose .ferry-venv/ or collections/ ./bootstrap did not make: never carried over."""
    if dest and os.path.isdir(dest):
        problems = check_site_local(dest, module.params['site_key'])
        if problems:
            raise BundleError('%s holds code that ./bootstrap did not make at this site, so it is not carried over into '
                              'the new bundle: %s' % (dest, '; '.join(problems)))


def _describe(result, manifest):
    result.update(name=manifest.get('name'), version=manifest.get('version'), delta=bool(manifest.get('delta')),
                  images=manifest.get('images') or [])


def _partial(bundle_dir, manifest):
    """True for a delta whose files are not all there (verified without its base)."""
    return bool(manifest.get('delta')) and any(
        not os.path.isfile(os.path.join(bundle_dir, rel)) for rel in manifest['files'])


def _same_bundle(dest, raw, result, counter, extra_filter):
    """True when ``dest`` already holds a bundle with manifest bytes ``raw`` that verifies."""
    if read_bytes(os.path.join(dest, MANIFEST), MANIFEST_LIMIT) != raw:
        return False
    manifest = parse_manifest(raw)
    skipped = []
    if verify_bundle(dest, manifest, progress=counter, partial=_partial(dest, manifest), extra_filter=extra_filter,
                     skipped=skipped):
        return False
    result['site_local'] = skipped
    return True


def _verify(module, result, counter, cleanup, timer):
    """Verify (and place) the bundle; returns the manifest of the bundle directory left at ``result['path']``."""
    p = module.params
    path = p['path']
    extra_filter = ExtraFilter(p['ignore_extra'])
    kind = describe_source(path)
    if kind == 'tar':
        return _verify_tar(module, result, counter, cleanup, timer, extra_filter)
    if p['dest'] is not None and os.path.abspath(p['dest']) == os.path.abspath(path):
        p['dest'] = None

    manifest, raw = read_manifest(path)
    _describe(result, manifest)
    _check_signature(module, path, raw, result)
    kit_problems = _check_kit(module, path, manifest, result)

    files = manifest['files']
    incomplete_delta = _partial(path, manifest)
    timer['start'] = time.time()
    if incomplete_delta and p['base']:
        if kit_problems:
            result['problems'] = kit_problems
            raise BundleError('delta %s is not what was signed' % path)
        target = p['dest']
        _check_dest_site(module, target)
        if target and _same_bundle(target, raw, result, counter, extra_filter):
            result.update(path=target, complete=True, files_checked=len(files))
            return manifest
        if target:
            guard_dest(target)  # before any work: a directory that is not a bundle is never replaced
        if module.check_mode:
            result.update(changed=bool(target), complete=False, files_checked=0,
                          msg='check mode: the delta was not reconstructed')
            return None

        def place(staged, dest):
            if p['dest']:
                result['carried_over'] = place_bundle(staged, dest, manifest)
            else:
                replace_dir(staged, dest)

        if not target:
            holder = tempfile.mkdtemp(prefix='.ferry-verify-')
            cleanup.append(holder)
            target = os.path.join(holder, 'bundle')
        apply_delta(path, p['base'], target, progress=counter, place=place)
        result.update(path=target if p['dest'] else path, complete=True, files_checked=len(files),
                      changed=bool(p['dest']))
        return manifest
    result['problems'] = kit_problems + verify_bundle(path, manifest, progress=counter, partial=incomplete_delta,
                                                      extra_filter=extra_filter, skipped=result['site_local'])
    result['problems'].extend(check_site_local(path, p['site_key']))
    result.update(path=path, complete=not incomplete_delta,
                  files_checked=len(manifest['delta']['present']) if incomplete_delta else len(files))
    return manifest


def _verify_tar(module, result, counter, cleanup, timer, extra_filter):
    """A tar or its chunks: manifest and signature first, then only the listed members, then every file."""
    p = module.params
    path, dest = p['path'], p['dest']
    tar_path, parts = resolve_pack(path)
    if parts is not None:
        problems = check_chunks(tar_path, parts)
        if problems:
            result['problems'] = problems
            raise BundleError('chunked tar %s is damaged' % tar_path)
    if dest:
        guard_dest(dest)  # before any work: a directory that is not a bundle is never replaced
        _check_dest_site(module, dest)
    if module.check_mode:
        result['changed'] = bool(dest)
        result['msg'] = 'check mode: %s was not unpacked, so only its chunk list was checked' % path
        return None
    if dest:
        holder = tmp_sibling(dest, directory=True)
    else:
        holder = tempfile.mkdtemp(prefix='.ferry-verify-')
    cleanup.append(holder)
    staged = os.path.join(holder, 'bundle')

    def before_extract(head_dir, manifest, raw):
        _describe(result, manifest)
        _check_signature(module, head_dir, raw, result)

    # Site-local paths are never skipped in what a tar unpacked: unlisted members are problems.
    manifest, raw = unpack(path, staged, before_extract=before_extract, problems=result['problems'])
    timer['start'] = time.time()
    result['problems'].extend(verify_bundle(staged, manifest, progress=counter))
    result['problems'].extend(_check_kit(module, staged, manifest, result))
    result.update(path=path, complete=True, files_checked=len(manifest['files']))
    if result['problems'] or not dest:
        return None
    result['path'] = dest
    if _same_bundle(dest, raw, result, None, extra_filter):
        return manifest
    result['carried_over'] = place_bundle(staged, dest, manifest)
    result['changed'] = True
    return manifest


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            allowed_signers=dict(type='path'),
            identity=dict(type='str'),
            namespace=dict(type='str', default='ferry-bundle'),
            require_signature=dict(type='bool', default=True),
            base=dict(type='path'),
            dest=dict(type='path'),
            ignore_extra=dict(type='list', elements='str', default=[]),
            site_key=dict(type='path', no_log=False),
        ),
        supports_check_mode=True,
    )
    counter = _Counter()
    result = dict(changed=False, path=module.params['path'], files_checked=0, bytes_checked=0, seconds=0.0,
                  mb_per_s=0.0, images=[], problems=[], site_local=[], carried_over=[])
    cleanup = []
    timer = {}
    error = None
    manifest = None
    try:
        manifest = _verify(module, result, counter, cleanup, timer)
    except (BundleError, FsError) as e:
        error = str(e)
    finally:
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)
    result['bytes_checked'] = counter.bytes
    if timer.get('start'):
        result['seconds'] = round(time.time() - timer['start'], 3)
    if result['seconds']:
        result['mb_per_s'] = round(counter.bytes / 1048576.0 / result['seconds'], 1)
    if error is not None:
        module.fail_json(msg=error + (': ' + '; '.join(result['problems']) if result['problems'] else ''), **result)
    if result['problems']:
        module.fail_json(msg='bundle %s failed verification (%d problems): %s' % (
            result['path'], len(result['problems']), '; '.join(result['problems'])), **result)
    if manifest is not None and os.path.isdir(result['path']):
        # The verified bundle directory, as the fact ferry_bundle for the plays that follow: from the
        # manifest that was verified, never read again (it may have changed since).
        names = [a.get('name') for a in manifest.get('artifacts') or []]
        result['ansible_facts'] = dict(ferry_bundle=dict(
            dir=result['path'], name=manifest.get('name'), version=manifest.get('version'),
            arches=manifest.get('arches') or [], images=[i.get('ref') for i in manifest.get('images') or []],
            artifacts=[n for i, n in enumerate(names) if n not in names[:i]], arch_artifacts=arch_artifacts(manifest),
            versions=artifact_versions(manifest), layer_compressions=layer_compressions(result['path'], manifest)))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
