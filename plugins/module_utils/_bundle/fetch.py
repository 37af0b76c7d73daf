# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fetching one artifact into a bundle (local path, file:// or http(s)), checked against its sha256.

Messages name the source without the ``user:password@`` of its URL (:func:`redact_url`).
"""

import hashlib
import os

from ansible_collections.ferry.airgap.plugins.module_utils._digest import BUF_SIZE, sha256_file
from ansible_collections.ferry.airgap.plugins.module_utils._fs import remove, tmp_sibling
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    BundleError, artifact_arch_problem, redact_url, url_path)


def artifact_path(bundle_dir, arch, name, dest):
    return os.path.join(bundle_dir, 'artifacts', arch, name, dest)


def _open_src(src, opener, timeout):
    if '://' not in src:
        return open(src, 'rb')
    scheme = src.split('://', 1)[0]
    if scheme.lower() == 'file':
        return open(url_path(src), 'rb')
    if opener is None:
        from ansible.module_utils.urls import open_url

        def opener(url):
            return open_url(url, timeout=timeout)
    return opener(src)


def fetch_artifact(src, sha256, dest_path, opener=None, timeout=60, progress=None, check_mode=False,
                   name=None, arch=None):
    """Fetch ``src`` to ``dest_path`` if it is not already there with ``sha256``.

    Returns ``{'changed', 'sha256', 'size', 'path'}``. A download whose digest
    differs raises :class:`BundleError` naming src, expected and actual; the
    temporary is removed and a stale ``dest_path`` with a wrong digest is
    removed too, so nothing unverified is left in the bundle. With ``name`` and
    ``arch`` (the spec's), an ELF binary built for another CPU is refused the
    same way (:func:`artifact_arch_problem`), also when it is already there.
    """
    sha256 = sha256.lower()
    shown = redact_url(src)
    stale = False
    if os.path.isfile(dest_path):
        have, size = sha256_file(dest_path)
        if have == sha256:
            problem = artifact_arch_problem(dest_path, name, arch, shown) if name else None
            if problem:
                raise BundleError(problem)
            return {'changed': False, 'sha256': have, 'size': size, 'path': dest_path}
        stale = True
    if check_mode:
        return {'changed': True, 'sha256': sha256, 'size': None, 'path': dest_path}
    if stale:  # a file with the wrong digest is never kept, whatever happens next
        remove(dest_path)
    parent = os.path.dirname(dest_path)
    if not os.path.isdir(parent):
        os.makedirs(parent)
    tmp = tmp_sibling(dest_path)
    try:
        h = hashlib.sha256()
        size = 0
        try:
            src_f = _open_src(src, opener, timeout)
        except (IOError, OSError) as e:
            raise BundleError(redact_url('cannot open %s: %s' % (shown, getattr(e, 'strerror', None) or e)))
        except Exception as e:
            raise BundleError(redact_url('cannot fetch %s: %s' % (shown, e)))
        try:
            with open(tmp, 'wb') as out:
                while True:
                    chunk = src_f.read(BUF_SIZE)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
        except (IOError, OSError) as e:
            raise BundleError(redact_url('error while fetching %s: %s' % (shown, e)))
        finally:
            src_f.close()
        actual = h.hexdigest()
        if actual != sha256:
            raise BundleError('sha256 mismatch for %s: expected %s, actual %s (%d bytes); nothing was kept%s' % (
                shown, sha256, actual, size, ' and the stale %s was removed' % dest_path if stale else ''))
        problem = artifact_arch_problem(tmp, name, arch, shown) if name else None
        if problem:
            raise BundleError(problem + '; nothing was kept')
        os.chmod(tmp, 0o644)
        os.rename(tmp, dest_path)
    except BaseException:
        remove(tmp)
        raise
    return {'changed': True, 'sha256': actual, 'size': size, 'path': dest_path}
