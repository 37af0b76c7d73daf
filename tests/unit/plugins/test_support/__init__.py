# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the unit tests share (no tests here).

images      the one image builder: layers, Image, docker-archive / oci-archive members, OCI layouts
            and stores, registry pushes (no pytest: tests/support/testbundle.py uses it too)
bundles     the one make_bundle (two shapes), manifests, keys, a bundle server on 127.0.0.1
containerd  a private containerd per session (the ``containerd`` and ``namespace`` fixtures)
registry    Debian's docker-registry on 127.0.0.1 with htpasswd auth (``run_registry``, ``registry``)
keys        ssh-keygen signing keys and allowed_signers lines (no pytest: testbundle.py, bench/bundle.py)
modules     run_module: a module's main() in-process
net         free_port
"""
