# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""sha256 of bytes, streams and files; digest strings; the two JSON encodings Ferry hashes.

A leaf: standard library only, no Ferry imports.
"""

import hashlib
import json
import os
import re

BUF_SIZE = 1024 * 1024
HEX64_RE = re.compile(r'^[0-9a-f]{64}$')


def sha256_bytes(data):
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_digest(data):
    """``sha256:<hex>`` of ``data`` (an OCI digest)."""
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def chunks(handle, size=BUF_SIZE):
    """Yield ``handle``'s bytes ``size`` at a time until it is exhausted."""
    while True:
        chunk = handle.read(size)
        if not chunk:
            return
        yield chunk


def sha256_stream(handle, progress=None):
    """Stream ``handle`` through sha256; returns ``(hexdigest, size)``.

    ``progress(n)`` is called with the number of bytes of each chunk read.
    """
    hasher = hashlib.sha256()
    size = 0
    for chunk in chunks(handle):
        hasher.update(chunk)
        size += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return hasher.hexdigest(), size


def sha256_file(path, progress=None):
    """``(hexdigest, size)`` of the file at ``path``."""
    with open(path, 'rb') as handle:
        return sha256_stream(handle, progress)


def file_mismatch(path, size, sha256, progress=None):
    """None when the file at ``path`` has ``size`` bytes and sha256 ``sha256``, else ``(what, actual)``.

    ``what`` is ``'size'`` (the file is not hashed then) or ``'sha256'``.
    """
    actual_size = os.path.getsize(path)
    if actual_size != size:
        return 'size', actual_size
    actual, dummy = sha256_file(path, progress)
    if actual != sha256:
        return 'sha256', actual
    return None


def split_digest(digest):
    """The 64 hex characters of ``sha256:<hex>``, or None when ``digest`` is anything else."""
    if not isinstance(digest, str):
        return None
    algo, sep, value = digest.partition(':')
    if algo != 'sha256' or not sep or not HEX64_RE.match(value):
        return None
    return value


def canonical_json(obj):
    """Compact, key-sorted JSON bytes: the same OCI document always has the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(',', ':')).encode('utf-8')


def pretty_json(obj):
    """Key-sorted, indented, newline-terminated JSON bytes: Ferry's manifests, records and index.json."""
    return (json.dumps(obj, indent=2, sort_keys=True, separators=(',', ': ')) + '\n').encode('utf-8')
