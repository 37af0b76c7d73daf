# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every part of the bundle format shares: names, errors, paths, JSON files, the clock.

The layout and formats are described in docs/bundle.md. Standard library + ansible.module_utils only,
so it runs on target hosts with Python 3.6+. Functions of the bundle package raise
:class:`BundleError` (or :class:`SpecError`) with a message meant for the operator; modules turn that
into ``fail_json``. Everything that produces output is written under a temporary sibling name
``.<name>.tmp-XXXX`` and renamed into place at the end (``_fs``), so a failed run never leaves
something that looks like a valid bundle.
"""

import os
import re
import time
from urllib.parse import unquote, urlparse

from ansible_collections.ferry.airgap.plugins.module_utils._platform import ARCHES, ELF_HEAD_SIZE, PlatformError, elf_arch

MANIFEST = 'manifest.json'
SIGNATURE = 'manifest.json.sig'
# The site kit's checksums (sha256sum format) and their signature: what a site checks with ssh-keygen
# and coreutils alone before it runs anything from the bundle (docs/bundle.md, First install). Like
# the manifest and its signature they are not listed in the manifest; verification derives them.
KIT_SUMS = 'kit.sha256'
KIT_SIG = 'kit.sha256.sig'
RESERVED = (MANIFEST, SIGNATURE, KIT_SUMS, KIT_SIG)
FORMAT = 1
DEFAULT_NAMESPACE = 'ferry-bundle'
ARTIFACT_ARCHES = ARCHES + ('noarch',)
BLOB_DIR = 'images/blobs/sha256'
IMAGES_DIR = 'images'
SAFE_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._+-]*$')


class BundleError(Exception):
    """An operator-facing error about a bundle, spec, delta or tar."""


class DistributeError(Exception):
    """An operator-facing error selecting or pulling a host's bundle files."""


class SpecError(BundleError):
    """A spec problem; ``path`` is the offending key path, e.g. ``artifacts[2].sha256``."""

    def __init__(self, path, message):
        self.path = path
        self.reason = message
        BundleError.__init__(self, '%s: %s' % (path, message) if path else message)


def artifact_arch_problem(path, name, arch, shown=None):
    """What is wrong with artifact ``name`` declared for ``arch`` whose file is ``path``, or None.

    The one check of an artifact's CPU (bundle build and verification both use it): a file that starts
    with the ELF magic must be built for ``arch`` (its ELF e_machine); other files (tarballs, RPMs,
    scripts) and noarch artifacts are not checked. Reads the first 20 bytes. ``shown`` names the file in
    the message (default: ``path``).
    """
    if arch not in ARCHES:
        return None
    shown = shown or path
    try:
        with open(path, 'rb') as f:
            head = f.read(ELF_HEAD_SIZE)
    except (IOError, OSError) as e:
        return 'artifact %s for %s: cannot read %s: %s' % (name, arch, shown, getattr(e, 'strerror', None) or e)
    try:
        found = elf_arch(head)
    except PlatformError as e:
        return 'artifact %s for %s: %s starts like an ELF binary but is not a valid one (%s): replace it with ' \
               'the %s build' % (name, arch, shown, e, arch)
    if found is None or found[0] == arch:
        return None
    return 'artifact %s for %s is an %s ELF binary (e_machine %d), not %s: %s; put the %s build in the spec ' \
           '(src and sha256), or declare this file for arch %s' % (
               name, arch, found[0], found[1], arch, shown, arch, found[0])


def is_str(value):
    return isinstance(value, str)


def check_relpath(relpath):
    """Return an error string if ``relpath`` is not a clean relative POSIX path, else None."""
    if not is_str(relpath) or not relpath:
        return 'not a non-empty string'
    if relpath.startswith('/') or '\\' in relpath or '\x00' in relpath:
        return 'not a relative POSIX path'
    parts = relpath.split('/')
    if any(p in ('', '.', '..') for p in parts):
        return 'contains an empty, "." or ".." component'
    return None


def utc_now():
    epoch = os.environ.get('SOURCE_DATE_EPOCH')
    when = int(epoch) if epoch and epoch.isdigit() else time.time()
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(when))


def url_path(src):
    """The local path of a ``file://`` URL."""
    return unquote(urlparse(src).path)


REDACTED = '********'
_USERINFO_RE = re.compile(r'(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@')


def redact_url(text, secrets=()):
    """``text`` (a URL, or a message holding URLs) fit to show: no ``user:password@`` in any URL, each secret masked.

    The one redaction of URLs for messages and results (bundle_pull, bundle_serve, bundle_artifact): the
    userinfo of every ``scheme://`` URL is dropped, and every non-empty string of ``secrets`` (a serve token)
    is replaced by ``********`` wherever it occurs.
    """
    text = _USERINFO_RE.sub(r'\1', str(text))
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def url_secrets(url):
    """The secrets in a URL's userinfo: ``['user:password', 'password']`` (``[]`` without a password).

    Modules add them to ``no_log_values`` so a URL given as an option is masked in ``invocation`` too.
    """
    if not is_str(url) or '://' not in url:
        return []
    netloc = url.split('://', 1)[1]
    for sep in '/?#':
        netloc = netloc.split(sep, 1)[0]
    userinfo = netloc.rpartition('@')[0]
    if ':' not in userinfo:
        return []
    return [userinfo, userinfo.split(':', 1)[1]]
