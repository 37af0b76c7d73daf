# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signing and checking manifests with OpenSSH (``ssh-keygen -Y sign`` / ``-Y verify``) through a _cli.Runner."""

import os

from ansible_collections.ferry.airgap.plugins.module_utils import _cli
from ansible_collections.ferry.airgap.plugins.module_utils._fs import atomic_write
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import DEFAULT_NAMESPACE, BundleError


def _exec(runner, argv, data=None):
    """Run ``argv`` with a :class:`_cli.Runner` (None: a local one); a module's runner resolves the binary."""
    if runner is None:
        runner = _cli.Runner()
    if runner.module is not None:
        argv = [runner.module.get_bin_path(argv[0], required=True)] + list(argv[1:])
    return runner.run(argv, data=data)


def _reason(out, err):
    return ' '.join(x.strip() for x in (err, out) if x and x.strip()) or 'no output'


def sign_bytes(runner, data, key, namespace=DEFAULT_NAMESPACE):
    """Return the SSHSIG armored signature text of ``data`` made with private ``key``."""
    if not os.path.isfile(key):
        raise BundleError('signing key %s does not exist' % key)
    rc, out, err = _exec(runner, ['ssh-keygen', '-Y', 'sign', '-f', key, '-n', namespace], data)
    if rc != 0 or '-----BEGIN SSH SIGNATURE-----' not in (out or ''):
        raise BundleError('ssh-keygen could not sign with %s (rc=%d): %s' % (key, rc, _reason('', err)))
    return out


def sign(runner, manifest_path, key, namespace=DEFAULT_NAMESPACE):
    """Sign ``manifest_path`` into ``manifest_path + '.sig'`` (atomically); returns the signature text."""
    with open(manifest_path, 'rb') as f:
        data = f.read()
    sig = sign_bytes(runner, data, key, namespace)
    atomic_write(manifest_path + '.sig', sig)
    return sig


def verify_signature(runner, manifest_path, allowed_signers, identity=None, namespace=DEFAULT_NAMESPACE,
                     data=None, sig_path=None):
    """Verify ``manifest_path``'s signature (``<manifest>.sig``) against ``allowed_signers``.

    ``data`` may carry the manifest bytes already read, so the bytes verified
    are exactly the bytes the caller then parses. Without ``identity`` the
    principal is looked up with ``ssh-keygen -Y find-principals``. Returns
    ``{'principal', 'message'}``; raises :class:`BundleError` with ssh-keygen's
    reason on any failure (unknown key, tampered manifest, wrong namespace).
    """
    sig_path = sig_path or manifest_path + '.sig'
    if data is None:
        with open(manifest_path, 'rb') as f:
            data = f.read()
    if not os.path.isfile(sig_path):
        raise BundleError('signature %s is missing' % sig_path)
    if not allowed_signers or not os.path.isfile(allowed_signers):
        raise BundleError('allowed_signers file %s does not exist' % allowed_signers)
    if not identity:
        rc, out, err = _exec(runner, ['ssh-keygen', '-Y', 'find-principals', '-f', allowed_signers, '-s', sig_path])
        if rc != 0 or not out.strip():
            raise BundleError('signature %s: the signing key is not listed in %s: %s%s' % (
                sig_path, allowed_signers, _reason(out, err), _signer_hint(runner, sig_path, namespace, data)))
        identity = out.strip().splitlines()[0].strip()
    rc, out, err = _exec(runner, ['ssh-keygen', '-Y', 'verify', '-f', allowed_signers, '-I', identity,
                                  '-n', namespace, '-s', sig_path], data)
    if rc != 0:
        raise BundleError('signature verification of %s failed for identity %s in %s (namespace %s): %s%s' % (
            manifest_path, identity, allowed_signers, namespace, _reason(out, err),
            _signer_hint(runner, sig_path, namespace, data)))
    return {'principal': identity, 'message': _reason(out, err)}


def _signer_hint(runner, sig_path, namespace, data):
    """Explain a failed verification: is the signature intact but by another key, or broken?"""
    rc, out, err = _exec(runner, ['ssh-keygen', '-Y', 'check-novalidate', '-n', namespace, '-s', sig_path], data)
    text = _reason(out, err)
    if rc == 0:
        return ' (the signature itself is intact: %s; that key is not allowed for this identity)' % text
    return ' (the signature does not match the manifest content: %s)' % text
