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
  - The daemon exits by itself after O(idle_timeout) seconds without an authenticated request (one carrying
    O(token); requests without it do not keep it alive), so a crashed play never leaves it running for long,
    and after O(max_lifetime) seconds in any case.
  - At most O(max_connections) connections are served at once; further ones get C(503) and are closed at once,
    so a client cannot exhaust the daemon's file descriptors. A connection has 10 seconds in all to send its
    request line and headers; only a request with O(token) gets the 120-second transfer timeout.
  - Its pid, process start time, O(path), O(address), O(port) and O(token) are recorded in
    C(<run_dir>/ferry-serve-<port>.json) (mode 0600) next to the pidfile C(<run_dir>/ferry-serve-<port>.pid),
    each written under a fresh random name with C(O_EXCL|O_NOFOLLOW) and renamed into place. A state file that
    is not a regular file owned by the caller is ignored, so a planted one never makes it signal a process.
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
    description:
      - Address to listen on. Pass the deploy node's address on the site network (role C(ferry.airgap.distribute)
        passes the address the hosts reach it at); the default V(0.0.0.0) listens on all interfaces.
      - An address that is not one of this host's fails, naming it.
    type: str
    default: 0.0.0.0
  port:
    description: TCP port to listen on. Open it on the deploy node for the target hosts.
    type: int
    default: 8765
  idle_timeout:
    description: Seconds without an authenticated request after which the server exits by itself.
    type: int
    default: 600
  max_lifetime:
    description: Seconds after which the server exits by itself, even while hosts are still pulling.
    type: int
    default: 21600
  max_connections:
    description: Connections served at once; more get C(503 Service Unavailable) (M(ferry.airgap.bundle_pull) retries).
    type: int
    default: 128
  token:
    description:
      - A secret the URL must start with (C(http://ADDRESS:PORT/TOKEN/<file>)), so only the play's hosts can
        fetch. Letters, digits, C(-), C(_) and C(.). Without it, files are served from the root.
    type: str
  run_dir:
    description:
      - Directory for the state file and pidfile. It must belong to root or the caller and must not be writable
        by group or others (C(/tmp) is refused).
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
  description:
    - C(http://ADDRESS:PORT) of the server (ADDRESS is the bind address), without the token; give it to
      M(ferry.airgap.bundle_pull) as O(ferry.airgap.bundle_pull#module:url) with the token as
      O(ferry.airgap.bundle_pull#module:token).
  returned: when O(state=started)
  type: str
  sample: http://192.0.2.10:8765
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
        return dict(changed=False, url=S.url_of(current, with_token=False), pid=current['pid'], running=True)
    if module.check_mode:
        return dict(changed=True, url=S.url_of({'address': p['address'], 'port': p['port']}), pid=None, running=False)
    if current is not None:
        S.stop(current, p['run_dir'])
    state = S.start(p['path'], p['run_dir'], p['address'], p['port'], p['token'], p['idle_timeout'],
                    p['max_lifetime'], p['max_connections'])
    return dict(changed=True, url=S.url_of(state, with_token=False), pid=state['pid'], running=True)


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
            max_lifetime=dict(type='int', default=S.DEFAULT_MAX_LIFETIME),
            max_connections=dict(type='int', default=S.DEFAULT_MAX_CONNECTIONS),
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
    if p['max_lifetime'] < p['idle_timeout']:
        module.fail_json(msg='max_lifetime must be at least idle_timeout (%d seconds), got %d' % (
            p['idle_timeout'], p['max_lifetime']))
    if p['max_connections'] < 1:
        module.fail_json(msg='max_connections must be at least 1, got %d' % p['max_connections'])
    if p['token'] and not _TOKEN_RE.match(p['token']):
        module.fail_json(msg='token may only hold letters, digits, "-", "_" and "."')
    try:
        if p['state'] == 'started' or os.path.lexists(p['run_dir']):  # stopping: no run_dir, nothing runs
            S.check_run_dir(p['run_dir'])
    except S.ServeError as exc:
        module.fail_json(msg=str(exc))
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
