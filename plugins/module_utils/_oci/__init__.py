# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one OCI image store: the layout (store), its documents (common), sources (archive, registry), copying (copy) and spec import (sync)."""
