#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_serve
short_description: Start or stop a temporary read-only HTTP server of a bundle directory
version_added: 0.1.0
description:
  - Runs on the deploy node. O(state=started) starts a detached daemon (double fork, setsid, stdio on
    C(/dev/null)) serving the bundle at O(path) over HTTP so target hosts can pull their files with
    M(ferry.airgap.bundle_pull) in parallel; O(state=stopped) terminates it (docs/distribution.md).
  - Read-only. Answers C(GET) and C(HEAD), with single byte ranges (C(206 Partial Content), C(Content-Range)) so
    an interrupted download resumes, of exactly the files C(manifest.json) lists plus C(manifest.json). Any other
    path, a path with a C(..) or empty component, or one without the O(token) prefix gets C(404); other methods
    get C(501).
  - The daemon exits by itself after O(idle_timeout) seconds without a request, so a crashed play never leaves
    it running for long.
  - Its pid, process start time, O(path), O(address), O(port) and O(token) are recorded in
    C(<run_dir>/ferry-serve-<port>.json) (mode 0600) next to the pidfile C(<run_dir>/ferry-serve-<port>.pid).
  - The port is bound before the daemon is forked, so a port held by another process is a clear error here.
author: Ferry developers (@ferry-airgap)
options:
  state:
    description:
      - V(started) - make sure a server of O(path) with O(token) listens on O(address) O(port); one already running
        with the same path, address, port and token is left alone (C(changed=false)), one with other settings
        is replaced.
      - V(stopped) - terminate the server recorded for O(port) (changed only when it was running).
    type: str
    choices: [started, stopped]
    default: started
  path:
    description: The bundle directory to serve. Required with O(state=started).
    type: path
  address:
    description: Address to listen on.
    type: str
    default: 0.0.0.0
  port:
    description: TCP port to listen on. Open it on the deploy node for the target hosts.
    type: int
    default: 8765
  idle_timeout:
    description: Seconds without a request after which the server exits by itself.
    type: int
    default: 600
  token:
    description:
      - A secret the URL must start with (C(http://ADDRESS:PORT/TOKEN/<file>)), so only the play's hosts can
        fetch. Letters, digits, C(-), C(_) and C(.). Without it, files are served from the root.
    type: str
  run_dir:
    description: Directory for the state file and pidfile.
    type: path
    default: /run
extends_documentation_fragment:
  - ferry.airgap.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: ferry.airgap.bundle_select
  - module: ferry.airgap.bundle_pull
"""

EXAMPLES = r"""
- name: Serve the bundle to the hosts
  ferry.airgap.bundle_serve:
    path: /opt/ferry/bundles/shop-2024.06.1
    token: "{{ serve_token }}"
  delegate_to: "{{ groups['deploy'][0] }}"
  run_once: true

- name: Stop serving
  ferry.airgap.bundle_serve:
    state: stopped
  delegate_to: "{{ groups['deploy'][0] }}"
  run_once: true
"""

RETURN = r"""
url:
  description: C(http://ADDRESS:PORT/TOKEN) of the server (ADDRESS is the bind address).
  returned: when O(state=started)
  type: str
  sample: http://0.0.0.0:8765/3kq9Zt7bW1
pid:
  description: Process id of the server; null when none runs (or in check mode before it is started).
  returned: always
  type: int
  sample: 41215
running:
  description: Whether a server runs on O(port) after the task.
  returned: always
  type: bool
  sample: true
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils._bundle import serve as S

_TOKEN_RE = re.compile(r'^[A-Za-z0-9._-]+$')


def _same(state, p):
    return (state.get('path') == os.path.abspath(p['path']) and state.get('address') == p['address']
            and state.get('port') == p['port'] and state.get('token') == (p['token'] or ''))


def _started(module, p, current):
    running = S.is_running(current)
    if running and _same(current, p):
        return dict(changed=False, url=S.url_of(current), pid=current['pid'], running=True)
    if module.check_mode:
        return dict(changed=True, url=S.url_of({'address': p['address'], 'port': p['port'], 'token': p['token']}),
                    pid=None, running=False)
    if current is not None:
        S.stop(current, p['run_dir'])
    state = S.start(p['path'], p['run_dir'], p['address'], p['port'], p['token'], p['idle_timeout'])
    return dict(changed=True, url=S.url_of(state), pid=state['pid'], running=True)


def _stopped(module, p, current):
    if not S.is_running(current):
        if current is not None and not module.check_mode:
            S.remove_state(p['run_dir'], p['port'])
        return dict(changed=False, pid=None, running=False)
    if not module.check_mode:
        S.stop(current, p['run_dir'])
    return dict(changed=True, pid=None, running=False)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', choices=['started', 'stopped'], default='started'),
            path=dict(type='path'),
            address=dict(type='str', default='0.0.0.0'),
            port=dict(type='int', default=S.DEFAULT_PORT),
            idle_timeout=dict(type='int', default=S.DEFAULT_IDLE_TIMEOUT),
            token=dict(type='str', no_log=True),
            run_dir=dict(type='path', default='/run'),
        ),
        required_if=[('state', 'started', ['path'])],
        supports_check_mode=True,
    )
    p = module.params
    if not 0 < p['port'] < 65536:
        module.fail_json(msg='port must be between 1 and 65535, got %d' % p['port'])
    if p['idle_timeout'] < 1:
        module.fail_json(msg='idle_timeout must be at least 1 second, got %d' % p['idle_timeout'])
    if p['token'] and not _TOKEN_RE.match(p['token']):
        module.fail_json(msg='token may only hold letters, digits, "-", "_" and "."')
    current = S.read_state(p['run_dir'], p['port'])
    try:
        if p['state'] == 'started':
            result = _started(module, p, current)
        else:
            result = _stopped(module, p, current)
    except (S.ServeError, OSError) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
