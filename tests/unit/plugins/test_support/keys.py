# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ssh-keygen signing keys and allowed_signers files (no pytest: testbundle.py and bench/bundle.py use them too)."""

import os
import subprocess

NAMESPACE = 'ferry-bundle'


def keygen(directory, name, comment=None):
    """A new ed25519 key ``directory/name`` (+ .pub) without passphrase; returns its path."""
    path = os.path.join(str(directory), name)
    subprocess.check_call(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment or name, '-f', path])
    return path


def allowed_signers_line(identity, key, namespace=NAMESPACE):
    """The allowed_signers line trusting ``key`` (its .pub) as ``identity`` for ``namespace``."""
    with open(key + '.pub') as fh:
        pub = fh.read().split()
    return '%s namespaces="%s" %s %s\n' % (identity, namespace, pub[0], pub[1])


def signing_key(directory, identity, name='release_key'):
    """A new key (comment ``identity``) and ``directory/allowed_signers`` trusting it; returns (key, allowed_signers)."""
    key = keygen(directory, name, identity)
    signers = os.path.join(str(directory), 'allowed_signers')
    with open(signers, 'w') as fh:
        fh.write(allowed_signers_line(identity, key))
    return key, signers
