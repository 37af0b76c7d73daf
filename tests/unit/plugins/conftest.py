"""Fixtures shared by the plugin tests (their code lives in test_support)."""

import os

import pytest

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.site import SITE_KEY_ENV
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.bundles import write
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support.keys import keygen
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support import containerd as containerd_support
from ansible_collections.ferry.airgap.tests.unit.plugins.test_support import registry as registry_support

# the fixtures test_support defines, offered to every plugin test
containerd = containerd_support.containerd
namespace = containerd_support.namespace
registry = registry_support.registry


@pytest.fixture(autouse=True)
def site_key(tmp_path, monkeypatch):
    """Every test's site key is its own (never /etc/ferry/site.key): ./bootstrap's and bundle_verify's default."""
    path = str(tmp_path / 'site.key')
    monkeypatch.setenv(SITE_KEY_ENV, path)
    return path


@pytest.fixture(scope='session')
def keys(tmp_path_factory):
    """Two ed25519 keys; allowed_signers lists only ``good`` as release@example."""
    d = tmp_path_factory.mktemp('keys')
    good = keygen(d, 'good')
    bad = keygen(d, 'bad')
    allowed = os.path.join(str(d), 'allowed_signers')
    with open(good + '.pub') as f:
        write(allowed, 'release@example %s\n' % f.read().strip())
    return {'good': good, 'bad': bad, 'allowed': allowed, 'identity': 'release@example'}
