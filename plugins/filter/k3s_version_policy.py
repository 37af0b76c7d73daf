# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: k3s_version_policy
short_description: Whether a host may go from the k3s it runs to the k3s a bundle carries
version_added: 0.1.0
author: Ferry developers (@ferry-airgap)
description:
  - The one place of the k3s upgrade policy (role C(ferry.airgap.k3s_upgrade)). Compares the version a host runs
    (the output of C(k3s --version), or a bare version) with the version the bundle declares for the host's arch
    (C(ferry_bundle.versions.k3s[arch])).
  - Nothing installed (empty input) - C(install), allowed. Same version - C(same), allowed (nothing to do).
    A newer patch or the next minor version - C(upgrade), allowed. An older version - C(downgrade), refused.
    More than one minor version ahead (1.21 to 1.23) or another major version - C(skip), refused. A version
    that cannot be read, or a bundle declaring none - C(unknown), refused.
  - With O(force), a refused change is allowed and marked C(forced) (the message says what that risks).
  - Versions look like C(v1.22.5+k3s1) (upstream's tags); the leading C(v) is optional, a pre-release
    (C(v1.22.5-rc1+k3s1)) sorts before its release, and C(+k3sN) revisions sort by N.
options:
  _input:
    description: What C(k3s --version) printed on the host (C(k3s version v1.21.8+k3s1 (cbff7350)) ...), or a version; empty when k3s is not installed.
    type: str
    required: true
  bundle:
    description: The k3s version the bundle declares for the host's arch (empty when it declares none).
    type: str
    required: true
  force:
    description: Allow a downgrade, a skipped minor version or an unreadable version (k3s_upgrade_force).
    type: bool
    default: false
  host:
    description: The host's name, for the message.
    type: str
    default: this host
"""

EXAMPLES = r"""
- name: Decide what the upgrade does on this host
  ansible.builtin.set_fact:
    k3s_upgrade_policy: >-
      {{ k3s_version_output | ferry.airgap.k3s_version_policy(ferry_bundle.versions.k3s[arch], force=false, host=inventory_hostname) }}
"""

RETURN = r"""
_value:
  description:
    - C(action) (V(install), V(same), V(upgrade), V(downgrade), V(skip), V(unknown)), C(allowed) (bool), C(forced)
      (bool), C(running) and C(bundle) (normalized C(v1.22.5+k3s1), or the text as given when unreadable; C(running)
      empty when nothing is installed) and C(message) (one sentence naming the host, both versions and what to do).
  type: dict
"""

import re

_VERSION = re.compile(r'v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+k3s(\d+))?')
_REFUSED = ('downgrade', 'skip', 'unknown')


def parse_k3s_version(text):
    """(major, minor, patch, pre-release or None, k3s revision) of the first version in ``text``, or None."""
    match = _VERSION.search(text or '')
    if not match:
        return None
    major, minor, patch, pre, rev = match.groups()
    return int(major), int(minor), int(patch), pre, int(rev or 0)


def format_k3s_version(parsed):
    major, minor, patch, pre, rev = parsed
    return 'v%d.%d.%d%s+k3s%d' % (major, minor, patch, '-' + pre if pre else '', rev)


def _order(parsed):
    major, minor, patch, pre, rev = parsed
    # a release sorts after its pre-releases; pre-releases by their numbers where they have some
    pre_key = (1,) if pre is None else (0, tuple(int(p) if p.isdigit() else p for p in re.split(r'(\d+)', pre) if p))
    return (major, minor, patch, pre_key, rev)


def k3s_version_policy(running, bundle, force=False, host='this host'):
    """What the upgrade does on ``host``: see DOCUMENTATION; returns a dict."""
    running_text = (running or '').strip()
    bundle_text = (bundle or '').strip()
    ran = parse_k3s_version(running_text) if running_text else None
    new = parse_k3s_version(bundle_text) if bundle_text else None
    result = {'running': format_k3s_version(ran) if ran else running_text.splitlines()[0] if running_text else '',
              'bundle': format_k3s_version(new) if new else bundle_text, 'forced': False}
    if new is None:
        action = 'unknown'
        what = ('the bundle declares no k3s version for this host\'s arch' if not bundle_text
                else 'the bundle\'s k3s version %r cannot be read' % bundle_text)
        todo = 'use a bundle whose spec records the k3s artifact\'s version for every arch'
    elif not running_text:
        action, what, todo = 'install', 'k3s is not installed: it will be installed from the bundle', ''
    elif ran is None:
        action = 'unknown'
        what = 'the version k3s reports (%r) cannot be read' % running_text
        todo = 'check the installed binary (k3s --version)'
    elif _order(ran) == _order(new):
        action, what, todo = 'same', 'k3s %s runs, the bundle carries the same: nothing to upgrade' % result['running'], ''
    elif _order(new) < _order(ran):
        action = 'downgrade'
        what = 'k3s %s runs, the bundle carries %s: a downgrade' % (result['running'], result['bundle'])
        todo = ('go back with playbooks/cluster_rollback.yml (the etcd snapshot and binary the upgrade kept), '
                'or upgrade with a bundle carrying %s or newer' % result['running'])
    elif new[0] != ran[0] or new[1] > ran[1] + 1:
        action = 'skip'
        what = 'k3s %s runs, the bundle carries %s: that skips %s' % (
            result['running'], result['bundle'],
            'a major version' if new[0] != ran[0] else 'minor version%s %s' % (
                '' if new[1] - ran[1] == 2 else 's', ', '.join('%d.%d' % (ran[0], m) for m in range(ran[1] + 1, new[1]))))
        todo = ('upgrade one minor version at a time: first with a bundle carrying k3s %d.%d.x, then this one'
                % (ran[0], ran[1] + 1) if new[0] == ran[0] else 'upgrade one minor version at a time')
    else:
        action = 'upgrade'
        what = 'k3s %s runs, the bundle carries %s: upgrade' % (result['running'], result['bundle'])
        todo = ''
    result['action'] = action
    if action not in _REFUSED:
        result['allowed'] = True
        result['message'] = '%s: %s.' % (host, what)
    elif force:
        result['allowed'] = result['forced'] = True
        result['message'] = ('%s: %s, allowed by k3s_upgrade_force=true. Kubernetes supports upgrades one minor version '
                             'at a time and no downgrade: the datastore may hold what the older version cannot read.'
                             % (host, what))
    else:
        result['allowed'] = False
        result['message'] = '%s: %s, refused. Nothing was changed; %s (k3s_upgrade_force=true overrides this, at the risk docs/install.md names).' % (
            host, what, todo)
    return result


class FilterModule(object):

    def filters(self):
        return {'k3s_version_policy': k3s_version_policy}
