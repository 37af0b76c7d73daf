# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes every Ferry module documents: what each one means, here once.

A module extends ``ferry.airgap.attributes`` and states only its own ``support``
(and, where it has something to say, ``details``). ``READ_ONLY`` is the whole
check/diff story of a module that never changes anything; ``ATOMIC_WRITE`` says how
the modules that write bundle files put them in place.
"""


class ModuleDocFragment(object):

    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying the target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
"""

    READ_ONLY = r"""
attributes:
  check_mode:
    support: full
    details: Runs unchanged in check mode; it only reads.
  diff_mode:
    support: none
    details: Nothing changes, so there is nothing to diff.
"""

    ATOMIC_WRITE = r"""
attributes:
  atomic_write:
    description:
      - Writes its output under a temporary name next to the destination and renames it into place, so an
        interrupted run leaves the old content or the new, never a half-written file.
    support: full
"""
