# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: ferry_arch
short_description: Ferry's name of a CPU architecture (x86_64, aarch64)
version_added: 0.1.0
author: Ferry developers (@ferry-airgap)
description:
  - Turns what C(uname -m), Ansible's C(architecture) fact, dpkg or Go call a CPU (C(amd64), C(arm64),
    C(x86-64), C(armv8), ...) into the name Ferry uses everywhere - in bundles, manifests and
    M(ferry.airgap.bundle_select) - C(x86_64) or C(aarch64).
  - The one platform table of the collection (module_utils C(_platform)) does the mapping, so roles do not
    carry a copy of it.
  - Unknown names come back unchanged (lower-cased), so a caller can report them; an empty or null input
    gives an empty string.
options:
  _input:
    description: The architecture name to normalize.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Ferry's name of this host's CPU
  ansible.builtin.debug:
    msg: "{{ ansible_facts.architecture | ferry.airgap.ferry_arch }}"   # amd64 -> x86_64, arm64 -> aarch64
"""

RETURN = r"""
_value:
  description: C(x86_64) or C(aarch64) for a known alias, else the input lower-cased.
  type: str
"""

from ansible_collections.ferry.airgap.plugins.module_utils._platform import normalize_arch


def ferry_arch(machine):
    """Ferry's arch name of ``machine`` (``amd64`` -> ``x86_64``, ``arm64`` -> ``aarch64``)."""
    return normalize_arch(None if machine is None else str(machine))


class FilterModule(object):

    def filters(self):
        return {'ferry_arch': ferry_arch}
