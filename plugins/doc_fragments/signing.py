# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options of the bundle signature (C(ssh-keygen -Y sign/verify), see docs/bundle.md).

``DOCUMENTATION`` is the namespace both sides use; ``SIGN`` the key of the modules
that write a manifest; ``VERIFY`` the trust options of the module that checks one.
"""


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  namespace:
    description:
      - Signature namespace (C(ssh-keygen -Y sign/verify -n)). Signing and verifying must use the same one.
    type: str
    default: ferry-bundle
"""

    SIGN = r"""
options:
  key:
    description:
      - Private OpenSSH key to sign C(manifest.json) with, into C(manifest.json.sig) (C(ssh-keygen -Y sign)).
      - Unencrypted; ed25519 is recommended because its signatures are deterministic, which keeps re-runs unchanged.
      - Without it the manifest is not signed, and a site that requires signatures refuses it.
    type: path
"""

    VERIFY = r"""
options:
  allowed_signers:
    description: OpenSSH allowed_signers file listing the keys trusted to sign bundles.
    type: path
  identity:
    description:
      - Principal in O(allowed_signers) the signature must belong to. When omitted, the principal is
        looked up from the signature with C(ssh-keygen -Y find-principals).
    type: str
"""
