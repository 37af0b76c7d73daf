# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Debian's real registry (``docker-registry``, package docker-registry) on 127.0.0.1, with htpasswd
Basic auth (``htpasswd`` from apache2-utils). Push images into it with test_support.images.push_image.
"""

import contextlib
import shutil
import subprocess
import time
from urllib.error import HTTPError, URLError
from urllib.request import urlopen

import pytest

from .net import free_port

USER, PASSWORD = 'ferry', 's3cret'
AUTH = (USER, PASSWORD)
INSTALL_HINT = 'install it: apt-get install -y docker-registry apache2-utils'


def need_binary(name):
    path = shutil.which(name)
    if not path:
        pytest.fail('%s not found: the registry integration test needs it; %s' % (name, INSTALL_HINT))
    return path


@pytest.fixture(scope='module')
def registry(tmp_path_factory):
    """host:port of Debian's docker-registry with htpasswd auth (USER, PASSWORD), running on 127.0.0.1."""
    with run_registry(tmp_path_factory.mktemp('registry')) as host:
        yield host


@contextlib.contextmanager
def run_registry(work, user=USER, password=PASSWORD):
    """Run Debian's docker-registry on 127.0.0.1 with htpasswd auth for ``user``; yields host:port."""
    binary = need_binary('docker-registry')
    htpasswd = need_binary('htpasswd')
    entry = subprocess.check_output([htpasswd, '-Bbn', user, password])
    (work / 'htpasswd').write_bytes(entry)
    port = free_port()
    (work / 'config.yml').write_text(
        'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n'
        'http:\n  addr: 127.0.0.1:%d\n  secret: ferry-test-secret\n'
        'auth:\n  htpasswd:\n    realm: ferry-test\n    path: %s\n' % (work / 'data', port, work / 'htpasswd'))
    log = open(str(work / 'registry.log'), 'wb')
    proc = subprocess.Popen([binary, 'serve', str(work / 'config.yml')], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(port, proc, work)
        yield '127.0.0.1:%d' % port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_ready(port, proc, work):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail('docker-registry exited: %s' % (work / 'registry.log').read_text())
        try:
            urlopen('http://127.0.0.1:%d/v2/' % port, timeout=2)
            return
        except HTTPError as exc:
            if exc.code == 401:
                return
        except (URLError, OSError):
            time.sleep(0.2)
    pytest.fail('docker-registry did not answer on port %d: %s' % (port, (work / 'registry.log').read_text()))
