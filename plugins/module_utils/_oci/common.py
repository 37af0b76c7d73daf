# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every part of the OCI store shares: media types, annotations, errors, descriptors, documents."""

import json

from ansible_collections.ferry.airgap.plugins.module_utils._digest import sha256_digest, split_digest
from ansible_collections.ferry.airgap.plugins.module_utils._platform import arch_platform_key, platform_arch, platform_key

MT_OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
MT_OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
MT_OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
MT_OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar'
MT_OCI_LAYER_GZIP = MT_OCI_LAYER + '+gzip'
MT_OCI_LAYER_ZSTD = MT_OCI_LAYER + '+zstd'
MT_DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
MT_DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
REF_ANNOTATION = 'org.opencontainers.image.ref.name'
CONTAINERD_ANNOTATION = 'io.containerd.image.name'
MAX_DOCUMENT = 16 * 1024 * 1024
GZIP_MAGIC = b'\x1f\x8b'  # _safetar has it too: hosts loading images do not carry _safetar
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
MT_DOCKER_LAYER = 'application/vnd.docker.image.rootfs.diff.tar'
MT_DOCKER_LAYER_GZIP = MT_DOCKER_LAYER + '.gzip'
PLAIN_LAYER_TYPES = (MT_OCI_LAYER, MT_DOCKER_LAYER)
GZIP_LAYER_TYPES = (MT_OCI_LAYER_GZIP, MT_DOCKER_LAYER_GZIP)
ZSTD_LAYER_TYPES = (MT_OCI_LAYER_ZSTD,)
# The oldest runtime that reads layers of each compression (versions as 'major.minor'): containerd
# reads zstd layers from 1.5 on, and k3s embeds containerd 1.5 from v1.22 on (v1.21 has 1.4).
# gzip and plain layers are read by every runtime Ferry installs.
COMPRESSION_MIN_RUNTIME = {'zstd': {'containerd': '1.5', 'k3s': '1.22'}}


class OciError(ValueError):
    """Any error of the image store, an archive or a registry."""


class RegistryError(OciError):
    """A registry could not be reached, refused us or answered nonsense."""


def hex_of(digest):
    """The hex part of ``sha256:<64 hex>``; OciError for anything else (never a path trick)."""
    value = split_digest(digest)
    if value is None:
        raise OciError("unsupported or malformed digest '%s' (expected sha256:<64 hex>)" % digest)
    return value


def loads(data, what):
    try:
        return json.loads(data.decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as exc:
        raise OciError('%s is not valid JSON: %s' % (what, exc))


def check_digest(data, digest, what):
    actual = sha256_digest(data)
    if actual != digest:
        raise OciError('digest mismatch for %s: expected %s, got %s (%d bytes)' % (what, digest, actual, len(data)))
    return data


def config_platform(config):
    platform = {'os': config.get('os') or '', 'architecture': config.get('architecture') or ''}
    if config.get('variant'):
        platform['variant'] = config['variant']
    return platform


def check_platform(platform, arches, ref, source):
    arch = platform_arch(platform)
    if arch is None or arch not in arches:
        raise OciError('%s for %s is %s, expected one of: %s' % (
            source, ref, platform_key(platform), ', '.join(arch_platform_key(a) + ' (%s)' % a for a in arches)))


def layer_media_type(head):
    if head.startswith(GZIP_MAGIC):
        return MT_OCI_LAYER_GZIP
    if head.startswith(ZSTD_MAGIC):
        return MT_OCI_LAYER_ZSTD
    return MT_OCI_LAYER


def layer_compression(media_type):
    """'gzip', 'zstd' or 'none' for a tar layer media type; None for anything else."""
    if media_type in GZIP_LAYER_TYPES:
        return 'gzip'
    if media_type in ZSTD_LAYER_TYPES:
        return 'zstd'
    if media_type in PLAIN_LAYER_TYPES:
        return 'none'
    return None


def descriptor(media_type, digest, size, platform=None):
    desc = {'mediaType': media_type, 'digest': digest, 'size': size}
    if platform:
        desc['platform'] = platform
    return desc


class Peeked(object):
    """A reader that gives back ``head`` before the rest of ``fileobj``."""

    def __init__(self, head, fileobj):
        self._head = head
        self._fileobj = fileobj

    def read(self, size=-1):
        if self._head:
            data, self._head = self._head, b''
            return data
        return self._fileobj.read(size)

    def close(self):
        self._fileobj.close()


def doc_media_type(doc):
    """Media type of a manifest or index document that may not state it."""
    if not isinstance(doc, dict):
        return None
    return doc.get('mediaType') or (MT_OCI_INDEX if 'manifests' in doc else MT_OCI_MANIFEST)
