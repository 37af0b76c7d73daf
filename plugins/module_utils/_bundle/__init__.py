# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bundle format: spec, fetch, manifest, verify, sign, delta, pack (docs/bundle.md)."""
