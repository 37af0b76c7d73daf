# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Ferry drives by CLI on a host: containerd through ctr (containerd) and loading images into it (load)."""
