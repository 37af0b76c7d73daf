# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pulling a host's bundle files from the deploy node's bundle server (docs/distribution.md); runs on every host.

:class:`Mirror` brings the host-local mirror (same relative paths as the bundle) up to the list
:mod:`select` made, from the server :mod:`serve` runs, file by file, checking sha256 while
downloading, resuming ``.part`` files with a Range request, renaming into place atomically. A stamp
file (``.ferry-fetch.json``) remembers size, mtime, ctime, inode and sha256 of what was verified, so
a rerun does not hash hundreds of MB again; an entry whose file's stat changed is ignored and the
file is hashed. Standard library only (urllib), Python 3.6; it imports no signing, packing or
registry code.

The server's token is kept apart from its URL and never shown: messages name the server as
``http://HOST:PORT`` (:func:`redact_url`). Redirects are refused (the bundle server never sends one).
A full disk on the host (ENOSPC, EDQUOT) fails at once, naming the host's path and filesystem; only
network trouble is retried.
"""

import errno
import fcntl
import hashlib
import json
import os
import socket
import stat
import time
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import HTTPRedirectHandler, ProxyHandler, Request, build_opener

from ansible_collections.ferry.airgap.plugins.module_utils._digest import BUF_SIZE, HEX64_RE, sha256_file
from ansible_collections.ferry.airgap.plugins.module_utils._fs import makedirs, mount_point, read_bytes, remove
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import (
    IMAGES_DIR, DistributeError, check_relpath, redact_url)

STAMP_FILE = '.ferry-fetch.json'
LOCK_FILE = '.ferry-fetch.lock'
PART_SUFFIX = '.part'
PRUNE_DIRS = ('images/blobs', 'artifacts')
STAMP_SAVE_INTERVAL = 5.0
FULL_ERRNOS = (errno.ENOSPC, getattr(errno, 'EDQUOT', errno.ENOSPC))  # the host's disk or quota is full


class _Retry(Exception):
    """A transfer problem worth another attempt (connection, short read, 5xx, bad resumed prefix)."""


class _NoRedirect(HTTPRedirectHandler):
    """Follow no redirect: the 3xx reaches the caller as an HTTPError."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def local_write_error(exc, path, what):
    """DistributeError for an OSError writing ``path`` on this host: a full disk names the filesystem and its space."""
    if exc.errno in FULL_ERRNOS:
        mount = mount_point(path)
        try:
            st = os.statvfs(mount)
            free = ' (%d bytes free of %d)' % (st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
        except OSError:
            free = ''
        reason = 'no space left' if exc.errno == errno.ENOSPC else 'disk quota exceeded'
        return DistributeError('%s on this host\'s filesystem %s%s while writing %s: %s; free space there '
                               'or choose another dest (not retried: the bundle server is not at fault)' % (
                                   reason, mount, free, path, what))
    return DistributeError('cannot write %s on this host: %s (%s)' % (path, exc.strerror or exc, what))


def check_files(files):
    """Validate and normalise the ``files`` list; returns [(path, size, sha256)]."""
    out = []
    seen = set()
    for i, item in enumerate(files):
        if not isinstance(item, dict):
            raise DistributeError('files[%d]: expected {path, size, sha256}, got %r' % (i, item))
        rel, size, sha = item.get('path'), item.get('size'), item.get('sha256')
        bad = check_relpath(rel)
        if bad:
            raise DistributeError('files[%d].path %r: %s' % (i, rel, bad))
        if rel.endswith(PART_SUFFIX) or rel in (STAMP_FILE, LOCK_FILE):
            raise DistributeError('files[%d].path %r: reserved name' % (i, rel))
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            try:
                size = int(size)
            except (TypeError, ValueError):
                size = -1
            if size < 0:
                raise DistributeError('files[%d].size: expected a non-negative integer, got %r' % (i, item.get('size')))
        if not isinstance(sha, str) or not HEX64_RE.match(sha.lower()):
            raise DistributeError('files[%d].sha256: expected 64 hex digits, got %r' % (i, sha))
        if rel in seen:
            raise DistributeError('files[%d].path %r is listed twice' % (i, rel))
        seen.add(rel)
        out.append((rel, size, sha.lower()))
    return out


def _stat_key(st):
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class Mirror(object):
    """The host-local mirror of the bundle files a host needs, filled from the bundle server at ``url``."""

    def __init__(self, dest, url=None, timeout=60, retries=3, retry_delay=1.0, opener=None, sleep=time.sleep,
                 token=None):
        self.dest = dest
        self.url = (url or '').rstrip('/')
        self.token = token or ''
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        # No proxies: the server is on the site's own network, whatever http_proxy says. No redirects.
        self.opener = opener or build_opener(ProxyHandler({}), _NoRedirect())
        self.sleep = sleep
        self.stamps = {}
        self.stamps_changed = False
        self.fetched = []
        self.resumed = []
        self.present = 0
        self.bytes_transferred = 0
        self.bytes_fetched = 0
        self._lock_fd = None
        self._saved = time.time()

    # -- stamps
    def load_stamps(self):
        data = read_bytes(os.path.join(self.dest, STAMP_FILE))
        try:
            doc = json.loads(data.decode('utf-8')) if data else {}
        except ValueError:
            doc = {}
        files = doc.get('files') if isinstance(doc, dict) else None
        self.stamps = files if isinstance(files, dict) else {}

    def save_stamps(self):
        if not self.stamps_changed:
            return
        data = json.dumps({'format': 1, 'files': self.stamps}, sort_keys=True).encode('utf-8')
        path = os.path.join(self.dest, STAMP_FILE)
        tmp = path + '.tmp-%d' % os.getpid()
        try:
            with open(tmp, 'wb') as fh:
                fh.write(data)
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
        except OSError as exc:
            remove(tmp)
            raise local_write_error(exc, path, 'the stamps of verified files')
        self.stamps_changed = False
        self._saved = time.time()

    def _stamp(self, rel, sha, st):
        self.stamps[rel] = {'sha256': sha, 'stat': _stat_key(st)}
        self.stamps_changed = True

    def have(self, rel, size, sha):
        """True when dest/rel is a regular file with ``size`` and ``sha`` (hashed unless its stamp still holds)."""
        path = os.path.join(self.dest, rel)
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
        stamp = self.stamps.get(rel)
        if isinstance(stamp, dict) and stamp.get('sha256') == sha and stamp.get('stat') == _stat_key(st):
            return True
        actual, dummy = sha256_file(path)
        if actual != sha:
            return False
        self._stamp(rel, sha, st)
        return True

    # -- locking (two runs on one host never write the same .part)
    def lock(self):
        makedirs(self.dest)
        self._lock_fd = os.open(os.path.join(self.dest, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the plan and the transfer
    def plan(self, files):
        """[(path, size, sha256)] of ``files`` that are missing or wrong at dest; counts the others as present."""
        todo = []
        for rel, size, sha in files:
            if self.have(rel, size, sha):
                self.present += 1
            else:
                todo.append((rel, size, sha))
        return todo

    def fetch(self, rel, size, sha):
        """Download one file into place, retrying with backoff; DistributeError when it cannot."""
        final = os.path.join(self.dest, rel)
        if os.path.isdir(final) and not os.path.islink(final):
            raise DistributeError('%s is a directory; cannot put the file %s there' % (final, rel))
        try:
            makedirs(os.path.dirname(final))
        except OSError as exc:
            raise local_write_error(exc, os.path.dirname(final), 'the directory of %s' % rel)
        attempt = 0
        while True:
            try:
                self._fetch_once(rel, size, sha, final)
                break
            except _Retry as exc:
                attempt += 1
                if attempt > self.retries:
                    raise DistributeError('cannot fetch %s from the bundle server %s (%d attempts): %s' % (
                        rel, self._server(), attempt, exc))
                self.sleep(self.retry_delay * (2 ** (attempt - 1)))
        self.fetched.append(rel)
        self.bytes_fetched += size
        if time.time() - self._saved > STAMP_SAVE_INTERVAL:  # an interrupted run keeps most of its stamps
            self.save_stamps()

    def _server(self):
        """The server's URL without userinfo, path or token (for messages)."""
        scheme, sep, rest = self.url.partition('://')
        return redact_url(scheme + sep + rest.split('/', 1)[0], [self.token])

    def _redact(self, text):
        return redact_url(text, [self.token])

    def _open(self, rel, offset):
        url = '/'.join([self.url] + ([quote(self.token, safe='')] if self.token else []) + [quote(rel)])
        headers = {'Range': 'bytes=%d-' % offset} if offset else {}
        try:
            return self.opener.open(Request(url, headers=headers), timeout=self.timeout)
        except HTTPError as exc:
            if exc.code == 416 and offset:
                return None
            if exc.code >= 500:
                raise _Retry(self._redact('HTTP %d %s' % (exc.code, exc.reason)))
            if exc.code == 404:
                raise DistributeError('the bundle server %s has no %s (HTTP 404): a wrong token, or a file its bundle '
                                      'does not list' % (self._server(), rel))
            if 300 <= exc.code < 400:
                raise DistributeError(self._redact(
                    'the bundle server %s answered %s with a redirect (HTTP %d to %s); a bundle server never redirects, '
                    'so it was not followed: is another server listening on that port?' % (
                        self._server(), rel, exc.code, exc.headers.get('Location') if exc.headers else None)))
            raise DistributeError(self._redact('the bundle server %s refused %s: HTTP %d %s' % (
                self._server(), rel, exc.code, exc.reason)))
        except URLError as exc:
            raise _Retry(self._redact('cannot reach %s: %s' % (self._server(), getattr(exc, 'reason', exc))))
        except (socket.error, socket.timeout, HTTPException) as exc:
            raise _Retry(self._redact('cannot reach %s: %s' % (self._server(), exc)))

    def _fetch_once(self, rel, size, sha, final):
        part = final + PART_SUFFIX
        hasher = hashlib.sha256()
        offset = 0
        if os.path.isfile(part):
            have = os.path.getsize(part)
            if 0 < have <= size:
                with open(part, 'rb') as fh:
                    for chunk in iter(lambda: fh.read(BUF_SIZE), b''):
                        hasher.update(chunk)
                offset = have
            else:
                remove(part)
        if offset == size and hasher.hexdigest() == sha:
            resp = None  # the .part is complete: nothing to download
        else:
            resp = self._open(rel, offset if offset < size else 0)
            if resp is None:  # 416 for our offset: the server's file is shorter than our .part
                remove(part)
                return self._fetch_once(rel, size, sha, final)
        if resp is not None:
            with resp:
                status = resp.getcode()
                if offset and status == 206:
                    expected_range = 'bytes %d-%d/%d' % (offset, size - 1, size)
                    if (resp.headers.get('Content-Range') or '').strip() != expected_range:
                        remove(part)
                        raise _Retry('unexpected Content-Range %r for %s (wanted %r)' % (
                            resp.headers.get('Content-Range'), rel, expected_range))
                    mode = 'ab'
                elif status == 200:
                    offset, mode, hasher = 0, 'wb', hashlib.sha256()
                    length = resp.headers.get('Content-Length')
                    if length is not None and length.isdigit() and int(length) != size:
                        raise DistributeError('the bundle server %s has %s bytes of %s, the bundle manifest says %d' % (
                            self._server(), length, rel, size))
                else:
                    raise _Retry('unexpected HTTP %d for %s' % (status, rel))
                if offset:
                    self.resumed.append(rel)
                self._copy(resp, part, mode, offset, size, hasher, rel)
        actual = hasher.hexdigest()
        if actual != sha:
            remove(part)
            if offset:  # the kept prefix was not this file's (an older version, a damaged disk): start over
                return self._fetch_once(rel, size, sha, final)
            raise DistributeError('sha256 mismatch for %s from %s: expected %s, actual %s; nothing was kept' % (
                rel, self._server(), sha, actual))
        try:
            os.chmod(part, 0o644)
            os.rename(part, final)
        except OSError as exc:
            raise local_write_error(exc, final, rel)
        self._stamp(rel, sha, os.lstat(final))

    def _copy(self, resp, part, mode, offset, size, hasher, rel):
        """Append the response body to ``part``: network trouble is a _Retry, a local write error is not."""
        count = offset
        try:
            out = open(part, mode)
        except OSError as exc:
            raise local_write_error(exc, part, '%s, %d bytes' % (rel, size))
        try:
            with out:
                while count < size:
                    try:
                        chunk = resp.read(min(BUF_SIZE, size - count))
                    except (socket.error, socket.timeout, HTTPException) as exc:
                        raise _Retry(self._redact('transfer of %s broke off after %d of %d bytes: %s' % (
                            rel, count, size, exc)))
                    if not chunk:
                        break
                    hasher.update(chunk)
                    self.bytes_transferred += len(chunk)
                    out.write(chunk)
                    count += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:  # the network's errors are _Retry above: this is the host's disk
            remove(part)  # a partial file on a full disk only takes the space the operator is freeing
            raise local_write_error(exc, part, '%s, %d of %d bytes written; the partial file was removed' % (
                rel, count, size))
        if count < size:
            raise _Retry('transfer of %s broke off after %d of %d bytes' % (rel, count, size))
        if resp.read(1):
            remove(part)
            raise DistributeError('the bundle server %s sends more than the %d bytes of %s the manifest lists' % (
                self._server(), size, rel))

    # -- pruning
    def prune_candidates(self, files):
        """Paths under dest/images/blobs and dest/artifacts that ``files`` does not list (incl. stale .part)."""
        wanted = set(rel for rel, dummy, dummy2 in files)
        out = []
        for top in PRUNE_DIRS:
            base = os.path.join(self.dest, top)
            for dirpath, dummy, names in os.walk(base):
                for name in names:
                    rel = os.path.relpath(os.path.join(dirpath, name), self.dest)
                    if rel not in wanted:
                        out.append(rel)
        return sorted(out)

    def prune(self, rels):
        for rel in rels:
            remove(os.path.join(self.dest, rel))
            if self.stamps.pop(rel, None) is not None:
                self.stamps_changed = True


def host_facts(dest, artifacts, files):
    """(ferry_artifacts, ferry_image_store) for a mirror at ``dest``."""
    paths = dict((name, os.path.join(dest, rel)) for name, rel in (artifacts or {}).items())
    listed = set(item[0] for item in files)
    store = os.path.join(dest, IMAGES_DIR) if IMAGES_DIR + '/index.json' in listed else None
    return paths, store
