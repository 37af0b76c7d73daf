# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The architectures a bundle serves (``arches``) and a host's (``ARCH``), as modules take them.

A module adds only ``required`` or ``default``. The names and their OCI platforms
follow the one platform table, plugins/module_utils/_platform.py.
"""


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
options:
  arches:
    description:
      - Architectures the bundle serves, as C(uname -m) names them - V(x86_64) (OCI platform C(linux/amd64))
        and V(aarch64) (C(linux/arm64)).
    type: list
    elements: str
    choices: [x86_64, aarch64]
"""

    ARCH = r"""
options:
  arch:
    description:
      - The host's CPU architecture, as C(uname -m) names it - V(x86_64) (OCI platform C(linux/amd64))
        or V(aarch64) (C(linux/arm64)).
    type: str
    choices: [x86_64, aarch64]
"""
