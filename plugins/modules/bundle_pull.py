#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
---
module: bundle_pull
short_description: Pull bundle files onto a host from the deploy node's bundle server, checked by sha256
version_added: 0.1.0
description:
  - Runs on a target host. Brings the host-local mirror O(dest) (same relative paths as in the bundle) up to
    O(files), as listed by M(ferry.airgap.bundle_select), pulling from the server M(ferry.airgap.bundle_serve)
    runs on the deploy node (docs/distribution.md).
  - A file already at O(dest) with the right size and sha256 is skipped. To avoid hashing hundreds of MB on
    every run, the size, mtime, ctime, inode and sha256 of each verified file are kept in
    C(<dest>/.ferry-fetch.json); an entry is used only while the file's stat is unchanged, otherwise the file
    is hashed again.
  - Otherwise the file is downloaded to C(<dest>/<path>.part), hashed while it streams, and renamed into place
    (mode 0644, directories 0755) only when its sha256 matches. A C(.part) left by an interrupted run is resumed
    with a C(Range) request from its size (its prefix is hashed again first); a server answering C(200) instead of
    C(206) restarts the file. A sha256 mismatch removes the C(.part) and fails naming the file, the expected and
    the actual digest; nothing is left at the final path.
  - Connection errors, short transfers and C(5xx) answers are retried O(retries) times with exponential backoff,
    resuming where the transfer stopped. C(404) (a wrong token, or a file the served bundle does not list) fails
    at once; so does a redirect (C(3xx)), which is never followed (the bundle server never sends one).
  - A full disk or quota on the host (C(ENOSPC), C(EDQUOT)) fails at once, naming the path and the host's
    filesystem with its free space; it is not retried and not blamed on the server. The partial file is removed.
  - The token is a separate, C(no_log) option and never part of a message or result; the server is named as
    C(http://HOST:PORT).
  - Files are fetched one after the other on a host; hosts fetch in parallel (Ansible forks). Proxy settings of
    the environment are ignored. Two runs on one host are serialised by a lock file in O(dest).
  - Sets the host facts C(ferry_artifacts) (artifact name to absolute path on the host, from O(artifacts)) and
    C(ferry_image_store) (C(<dest>/images) when C(images/index.json) is among O(files), else null).
author: Ferry developers (@ferry-airgap)
options:
  url:
    description:
      - Base URL of the bundle server (C(http://DEPLOY:8765)). File C(<path>) is fetched from
        C(<url>/<token>/<path>) (C(<url>/<path>) without O(token)).
      - No C(user:password@) (the bundle server takes O(token)); a URL with one is refused, its password masked.
      - May be omitted when nothing needs fetching (for example in check mode).
    type: str
  token:
    description:
      - The bundle server's token (M(ferry.airgap.bundle_serve) O(ferry.airgap.bundle_serve#module:token)). Kept out
        of the task's logs and results.
    type: str
  dest:
    description: The host-local mirror directory.
    type: path
    default: /var/lib/ferry/bundle
  files:
    description: The files the host needs, each C({path, size, sha256}) (RV(ferry.airgap.bundle_select#module:files)).
    type: list
    elements: dict
    required: true
  artifacts:
    description: Artifact name to its path relative to the bundle root (RV(ferry.airgap.bundle_select#module:artifacts)), for the C(ferry_artifacts) fact.
    type: dict
    default: {}
  timeout:
    description: Seconds to wait for the server to connect or send data.
    type: int
    default: 60
  retries:
    description: How many more times a failed transfer is tried.
    type: int
    default: 3
  retry_delay:
    description: Seconds before the first retry; doubled for each following one.
    type: float
    default: 1.0
  prune:
    description:
      - Remove files under C(<dest>/images/blobs) and C(<dest>/artifacts) that O(files) does not list (including
        stale C(.part) files). Files elsewhere in O(dest) are never removed.
    type: bool
    default: false
extends_documentation_fragment:
  - ferry.airgap.attributes
  - ferry.airgap.attributes.atomic_write
attributes:
  check_mode:
    support: full
    details:
      - Files at O(dest) are read (and hashed when their stamp does not hold) to tell what would be fetched;
        nothing is written and the server is not contacted.
  diff_mode:
    support: none
    details: RV(fetched) and RV(pruned) tell what changed.
seealso:
  - module: ferry.airgap.bundle_select
  - module: ferry.airgap.bundle_serve
"""

EXAMPLES = r"""
- name: Pull this host's files from the deploy node
  ferry.airgap.bundle_pull:
    url: "http://{{ deploy_address }}:8765"
    token: "{{ serve_token }}"
    dest: /var/lib/ferry/bundle
    files: "{{ selection.files }}"
    artifacts: "{{ selection.artifacts }}"
"""

RETURN = r"""
fetched:
  description: Paths (relative to O(dest)) written by this run, or that would be in check mode.
  returned: always
  type: list
  elements: str
  sample: [artifacts/x86_64/runc/runc.amd64, images/blobs/sha256/0178b906...]
resumed:
  description: Paths whose download continued from a C(.part) with a C(Range) request.
  returned: always
  type: list
  elements: str
  sample: []
present:
  description:
    - Number of files already present with the right size and sha256 (not fetched again).
    - Not called C(skipped), which Ansible reads as a skipped task.
  returned: always
  type: int
  sample: 31
pruned:
  description: Paths removed by O(prune) (or that would be in check mode).
  returned: always
  type: list
  elements: str
  sample: []
bytes_transferred:
  description: Bytes actually read from the network (0 in check mode).
  returned: always
  type: int
  sample: 63412385
bytes_fetched:
  description: Total size of RV(fetched).
  returned: always
  type: int
  sample: 63412385
bytes_total:
  description: Total size of O(files).
  returned: always
  type: int
  sample: 116168155
ansible_facts:
  description: Facts set on the host.
  returned: always
  type: dict
  contains:
    ferry_artifacts:
      description: Artifact name to the absolute path of its file on the host.
      type: dict
      returned: always
      sample: {runc: /var/lib/ferry/bundle/artifacts/x86_64/runc/runc.amd64}
    ferry_image_store:
      description: The host's OCI image layout (C(<dest>/images)), null when no image was distributed.
      type: str
      returned: always
      sample: /var/lib/ferry/bundle/images
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import DistributeError, redact_url, url_secrets
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.pull import (
    FULL_ERRNOS, Mirror, check_files, host_facts, local_write_error)


def _run(module, mirror, files, result):
    p = module.params
    todo = mirror.plan(files)
    candidates = mirror.prune_candidates(files) if p['prune'] else []
    if module.check_mode:
        result['fetched'] = [rel for rel, dummy, dummy2 in todo]
        result['bytes_fetched'] = sum(size for dummy, size, dummy2 in todo)
        result['pruned'] = candidates
        return
    if todo and not p['url']:
        raise DistributeError('%d files are missing at %s (%s...) and no url was given to fetch them from' % (
            len(todo), p['dest'], todo[0][0]))
    for rel, size, sha in todo:
        mirror.fetch(rel, size, sha)
    mirror.prune(candidates)
    result['pruned'] = candidates
    mirror.save_stamps()


def _check_url(module, url):
    """Fail for a URL the bundle server cannot have: not http://, or with userinfo (its password masked first)."""
    if not url:
        return
    module.no_log_values.update(url_secrets(url))
    if redact_url(url) != url:
        module.fail_json(msg='url must not carry user:password@ (the bundle server takes a token option), got %s'
                         % redact_url(url, [module.params['token']]))
    if not url.startswith('http://'):
        module.fail_json(msg='url must be an http:// URL of the bundle server, got %s' % redact_url(url, [module.params['token']]))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str'),
            token=dict(type='str', no_log=True),
            dest=dict(type='path', default='/var/lib/ferry/bundle'),
            files=dict(type='list', elements='dict', required=True),
            artifacts=dict(type='dict', default={}),
            timeout=dict(type='int', default=60),
            retries=dict(type='int', default=3),
            retry_delay=dict(type='float', default=1.0),
            prune=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    _check_url(module, p['url'])
    result = dict(changed=False, fetched=[], resumed=[], present=0, pruned=[], bytes_transferred=0, bytes_fetched=0,
                  bytes_total=0)
    mirror = Mirror(p['dest'], p['url'], timeout=p['timeout'], retries=max(0, p['retries']),
                    retry_delay=max(0.0, p['retry_delay']), token=p['token'])
    error = None
    try:
        files = check_files(p['files'])
        result['bytes_total'] = sum(size for dummy, size, dummy2 in files)
        paths, store = host_facts(p['dest'], p['artifacts'], files)
        result['ansible_facts'] = dict(ferry_artifacts=paths, ferry_image_store=store)
        if not module.check_mode:
            mirror.lock()
        mirror.load_stamps()
        try:
            _run(module, mirror, files, result)
        except BaseException:
            if not module.check_mode:  # keep what was verified, but the first error is the one to report
                try:
                    mirror.save_stamps()
                except (DistributeError, OSError):
                    pass
            raise
        finally:
            if not module.check_mode:
                mirror.unlock()
    except DistributeError as exc:
        error = redact_url(exc, [p['token']])
    except (IOError, OSError) as exc:
        if exc.errno in FULL_ERRNOS:
            error = str(local_write_error(exc, p['dest'], 'the mirror'))
        else:
            error = redact_url('cannot write the mirror %s: %s' % (p['dest'], exc), [p['token']])
    result['present'] = mirror.present
    result['resumed'] = mirror.resumed
    result['bytes_transferred'] = mirror.bytes_transferred
    if not module.check_mode:
        result['fetched'] = mirror.fetched
        result['bytes_fetched'] = mirror.bytes_fetched
    result['changed'] = bool(result['fetched'] or result['pruned'])
    if error is not None:
        module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
