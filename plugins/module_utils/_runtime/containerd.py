# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""containerd through its ``ctr`` command (gRPC cannot be spoken with the standard library).

What ctr 1.6 does and does not do, and what this file does about it:

* ``ctr images import`` ingests every tar member as a blob WITHOUT checking it against its name,
  and only reads indexes and manifests while walking the image: a corrupt layer is stored under its
  real digest, the image is tagged anyway and only the unpack fails. So the stream is checked here
  (``_oci.layout_tar`` hashes every blob and cuts the stream before a corrupt blob is complete).
* A tar cut at a member boundary is taken for a complete archive: an abort must cut inside a block.
* A truncated stream makes the import fail before any image is created; ctr drops its lease and
  containerd removes the partial ingest, also on ENOSPC.
* Images are tagged before they are unpacked: a failed unpack (disk full) leaves tagged, unpacked
  nothing. Hence :meth:`Ctr.load` imports under staging names first and tags the real names with
  a second, blob-less import only once every image is in and unpacked.
* Importing one platform of an image index replaces the garbage collection references of the
  index: content of a platform imported earlier is collected. One platform per namespace.
* ctr before 1.6 (k3s v1.22 bundles containerd 1.5) has no ``images import --platform``: it imports
  the host's platform only, so only that platform can be loaded through it.
"""

import hashlib
import os
import re
import stat

from ansible_collections.ferry.airgap.plugins.module_utils._cli import Runner
from ansible_collections.ferry.airgap.plugins.module_utils._oci.common import CONTAINERD_ANNOTATION, MT_OCI_INDEX
from ansible_collections.ferry.airgap.plugins.module_utils._runtime.load import layout_tar

DEFAULT_ADDRESS = '/run/containerd/containerd.sock'
K3S_ADDRESS = '/run/k3s/containerd/containerd.sock'
STAGING_PREFIX = 'ferry.invalid/staging/'
GC_CONTENT_LABEL = 'containerd.io/gc.ref.content.'

_ENOSPC_RE = re.compile(r'(?:write|open|mkdir|create|rename|link|sync)\s+(/\S+?):\s+no space left on device')
_NOT_FOUND_RE = re.compile(r'content digest (sha256:[0-9a-f]{64}): not found')
_PARENT_GONE_RE = re.compile(r'parent snapshot (sha256:[0-9a-f]{64}) does not exist')
_UNPACKING_RE = re.compile(r'unpacking (\S+) \((sha256:[0-9a-f]{64})\)\.\.\.(done)?')


class ContainerdError(Exception):
    """A ctr command failed; ``details`` holds cmd, rc, stdout and stderr when one ran."""

    def __init__(self, msg, **details):
        super(ContainerdError, self).__init__(msg)
        self.msg = msg
        self.details = details


def staging_name(ref, digest):
    """The temporary name ``ref`` is imported under before it is tagged."""
    return '%s%s:%s' % (STAGING_PREFIX, hashlib.sha256(ref.encode('utf-8')).hexdigest()[:16],
                        digest.partition(':')[2][:16])


def _filesystem_size(path):
    """Size in bytes of the filesystem of ``path`` (or of its closest existing parent), or None."""
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize


def _mib(count):
    return '%.1f MiB' % (count / 1048576.0)


class Ctr(object):
    """containerd at ``address``, namespace ``namespace``, driven by the ``ctr`` argv prefix.

    ``runner`` is a :class:`_cli.Runner` (``Runner(module)`` in a module, ``Runner()`` elsewhere):
    ``runner.run(argv)`` for short commands, ``runner.stream(argv, chunks)`` for imports.
    """

    def __init__(self, ctr, address, namespace, runner=None, snapshotter=None, host_platform=None):
        self.address = address
        self.namespace = namespace
        self.snapshotter = snapshotter
        self.host_platform = host_platform
        self.base = list(ctr) + ['-a', address, '-n', namespace]
        self.runner = runner if runner is not None else Runner()
        self._platform_flag = None

    # -- errors
    def check_socket(self):
        """Fail fast (ctr would wait 10 s) when nothing can listen at the address."""
        try:
            mode = os.stat(self.address).st_mode
        except OSError:
            hint = ''
            if self.address != K3S_ADDRESS and os.path.exists(K3S_ADDRESS):
                hint = ' (k3s runs its own containerd at %s: set address to it)' % K3S_ADDRESS
            raise ContainerdError('containerd is not running: its socket %s does not exist%s' % (self.address, hint))
        if not stat.S_ISSOCK(mode):
            raise ContainerdError('%s is not a socket: give the containerd socket as address' % self.address)

    def _error(self, argv, rc, out, err, what):
        text = (err or '').strip() or (out or '').strip()
        last = text.splitlines()[-1] if text else 'no output'
        details = dict(cmd=argv, rc=rc, stdout=out, stderr=err)
        if 'no space left on device' in text:
            return ContainerdError(self._disk_full(text, what), **details)
        if 'failed to dial' in text or 'connection refused' in text or 'transport: error while dialing' in text:
            if 'permission denied' in text:
                return ContainerdError('permission denied on containerd socket %s: run as root (become: true)'
                                       % self.address, **details)
            return ContainerdError('cannot reach containerd at %s: containerd is not running (or not listening '
                                   'there): %s' % (self.address, last), **details)
        if rc == 127 and not out:
            return ContainerdError('cannot run %s: %s' % (argv[0], last), **details)
        return ContainerdError('%s failed (%s exited with %d): %s' % (what, ' '.join(argv[:len(self.base) + 2]), rc, last),
                               **details)

    def _disk_full(self, text, what):
        match = _ENOSPC_RE.search(text)
        where = 'the filesystem holding containerd\'s root'
        if match:
            path = match.group(1)
            root = path.split('/io.containerd.', 1)[0] if '/io.containerd.' in path else os.path.dirname(path)
            size = _filesystem_size(root)
            where = '%s (containerd root %s%s)' % (path, root, ', on a %s filesystem' % _mib(size) if size else '')
        return ('disk full: containerd ran out of space writing %s during %s. The import was not committed: no image '
                'was tagged and containerd is consistent (partial content is removed by containerd). Free space '
                'there and run again; blobs containerd already holds are not sent again.' % (where, what))

    def _run(self, args, what):
        argv = self.base + list(args)
        rc, out, err = self.runner.run(argv)
        if rc != 0:
            raise self._error(argv, rc, out, err, what)
        return out

    # -- reading
    def listing(self):
        """{ref: (target digest, {label: value})} of every image of the namespace.

        ``ctr images ls`` prints REF TYPE DIGEST SIZE PLATFORMS LABELS; SIZE holds a space (``1.2 MiB``),
        so the labels are the last field (``-`` for none, else ``key=value`` joined by commas).
        """
        out = self._run(['images', 'ls'], 'listing images')
        lines = out.splitlines()
        if not lines or lines[0].split()[:3] != ['REF', 'TYPE', 'DIGEST']:
            raise ContainerdError('unexpected output of ctr images ls (expected a REF TYPE DIGEST header): %s'
                                  % (lines[0] if lines else 'nothing'))
        with_labels = lines[0].split()[-1:] == ['LABELS']
        found = {}
        for line in lines[1:]:
            fields = line.split()
            if len(fields) >= 3:
                labels = {}
                if with_labels and len(fields) >= 6 and fields[-1] != '-':
                    for item in fields[-1].split(','):
                        key, dummy, value = item.partition('=')
                        labels[key] = value
                found[fields[0]] = (fields[2], labels)
        return found

    def images(self):
        """{ref: target digest} of every image of the namespace."""
        return dict((ref, entry[0]) for ref, entry in self.listing().items())

    def image_labels(self):
        """{ref: {label: value}} of every image of the namespace."""
        return dict((ref, entry[1]) for ref, entry in self.listing().items())

    def content(self):
        """{digest: {label: value}} of every blob of the namespace."""
        out = self._run(['content', 'ls'], 'listing content')
        held = {}
        for line in out.splitlines()[1:]:
            fields = [f for f in line.split('\t') if f.strip()]
            if not fields or not fields[0].startswith('sha256:'):
                continue
            labels = {}
            if len(fields) >= 4 and fields[-1].strip() != '-':
                for item in fields[-1].strip().split(','):
                    key, dummy, value = item.partition('=')
                    labels[key] = value
            held[fields[0].strip()] = labels
        return held

    def _snapshotter_args(self):
        return ['--snapshotter', self.snapshotter] if self.snapshotter else []

    def snapshots(self):
        """Keys of the committed snapshots (a committed layer stack is keyed by its chain ID)."""
        out = self._run(['snapshots'] + self._snapshotter_args() + ['ls'], 'listing snapshots')
        return set(f[0] for f in (line.split() for line in out.splitlines()[1:]) if len(f) >= 2 and f[-1] == 'Committed')

    @staticmethod
    def is_loaded(plan, images, content, snapshots):
        """True when ``plan``'s ref points at its digest, with the platform's content and (``snapshots`` given) unpacked.

        The index's garbage collection labels must reference the platform's manifests: containerd
        keeps only what they reference (see the module docstring).
        """
        if images.get(plan['ref']) != plan['top']['digest']:
            return False
        if any(blob[0] not in content for blob in plan['blobs']):
            return False
        indexes = [blob[0] for blob in plan['blobs'] if blob[2] == 'index']
        if indexes:
            referenced = set(value for digest in indexes for key, value in content[digest].items()
                             if key.startswith(GC_CONTENT_LABEL))
            if any(m['digest'] not in referenced for m in plan['manifests']):
                return False
        if snapshots is not None and plan['chain_id'] and plan['chain_id'] not in snapshots:
            return False
        return True

    # -- writing
    def label(self, ref, labels):
        """Set ``labels`` ({key: value}) on image ``ref``, keeping its other labels."""
        if labels:
            self._run(['images', 'label', ref] + ['%s=%s' % item for item in sorted(labels.items())],
                      'labelling %s' % ref)

    def remove(self, refs):
        if refs:
            self._run(['images', 'rm'] + sorted(refs), 'removing images')

    def has_platform_flag(self):
        """Whether ``ctr images import`` takes ``--platform`` (containerd 1.6+; k3s v1.22 bundles ctr 1.5).

        Without it ctr imports and unpacks the host's platform only. Probed once from the command's help;
        a help text that does not look like ctr's counts as having the flag."""
        if self._platform_flag is None:
            rc, out, err = self.runner.run(self.base + ['images', 'import', '--help'])
            text = '%s\n%s' % (out or '', err or '')
            self._platform_flag = '--platform' in text or '--no-unpack' not in text
        return self._platform_flag

    def _platform_args(self, platform):
        if self.has_platform_flag():
            return ['--platform', platform]
        if platform != self.host_platform:
            raise ContainerdError('this ctr (%s) cannot import platform %s: its images import has no --platform '
                                  '(containerd older than 1.6) and takes the host\'s platform (%s) only'
                                  % (' '.join(self.base[:-4]), platform, self.host_platform or 'unknown'))
        return []

    def _import(self, chunks, platform, unpack, what):
        argv = self.base + ['images', 'import'] + self._platform_args(platform) + self._snapshotter_args()
        if not unpack:
            argv.append('--no-unpack')
        argv.append('-')
        rc, out, err = self.runner.stream(argv, chunks)
        if rc != 0:
            failed = [m.group(1) for m in _UNPACKING_RE.finditer(out or '') if not m.group(3)]
            if failed and 'no space left on device' not in (err or ''):
                what = '%s (unpacking %s)' % (what, failed[0])
            raise self._error(argv, rc, out, err, what)
        return out

    def load(self, store, plans, blobs, platform, unpack=True, progress=None, describe=None):
        """Import ``plans`` (from ``_oci.platform_plan``) streaming ``blobs`` of ``store``; all or nothing.

        1. One tar stream (oci-layout, index.json naming each image by a staging name, the blobs)
           goes into ``ctr images import --platform P -``; the images are unpacked.
        2. A second import without blobs tags the real refs (their content and snapshots exist).
        3. The staging names are removed, with any left by an interrupted run (only now: until the
           real refs exist, their content may be what ``blobs`` leaves out).
        Any failure removes the staging names: no requested ref is touched unless every image got in.
        When containerd lost a blob ``blobs`` left out (collected between the listing and the import),
        or collected a layer snapshot the unpack was about to build on (shared with an image being
        dropped: ctr does not lease snapshots it finds), the import is retried once with every blob
        of ``plans``.
        """
        staged = [staging_name(p['ref'], p['top']['digest']) for p in plans]
        refs = ', '.join(p['ref'] for p in plans)
        try:
            try:
                self._import(layout_tar(store, self._index(plans, staged), blobs, progress, describe), platform,
                             unpack, 'the import of %s' % refs)
            except ContainerdError as exc:
                stderr = exc.details.get('stderr') or ''
                lost = set(_NOT_FOUND_RE.findall(stderr))
                everything = []
                for blob in (b for p in plans for b in p['blobs']):
                    if all(blob[0] != b[0] for b in everything):
                        everything.append(blob)
                left_out = set(b[0] for b in everything) - set(b[0] for b in blobs)
                if not (lost and lost <= left_out) and not _PARENT_GONE_RE.search(stderr):
                    raise
                self._import(layout_tar(store, self._index(plans, staged), everything, progress, describe), platform,
                             unpack, 'the import of %s' % refs)
            self._import(layout_tar(store, self._index(plans, [p['ref'] for p in plans]), []), platform, unpack,
                         'tagging %s' % refs)
        except BaseException:
            try:
                self.remove([name for name in self.images() if name.startswith(STAGING_PREFIX)])
            except ContainerdError:
                pass
            raise
        self.remove([name for name in self.images() if name.startswith(STAGING_PREFIX)])

    @staticmethod
    def _index(plans, names):
        manifests = []
        for plan, name in zip(plans, names):
            desc = dict((k, v) for k, v in plan['top'].items() if k in ('mediaType', 'digest', 'size', 'platform'))
            desc['annotations'] = {CONTAINERD_ANNOTATION: name}
            manifests.append(desc)
        return {'schemaVersion': 2, 'mediaType': MT_OCI_INDEX, 'manifests': manifests}
