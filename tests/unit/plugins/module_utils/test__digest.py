# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_digest: hashing and the two JSON encodings."""

import hashlib
import io

from ansible_collections.ferry.airgap.plugins.module_utils import _digest as D


def test_file_and_stream_hash_agree_and_report_progress(tmp_path):
    data = b'x' * (D.BUF_SIZE + 5)
    (tmp_path / 'f').write_bytes(data)
    seen = []
    assert D.sha256_file(str(tmp_path / 'f'), seen.append) == (hashlib.sha256(data).hexdigest(), len(data))
    assert seen == [D.BUF_SIZE, 5]
    assert D.sha256_stream(io.BytesIO(data))[0] == D.sha256_bytes(data)
    assert D.sha256_digest(data) == 'sha256:' + D.sha256_bytes(data)


def test_split_digest_accepts_only_sha256_hex():
    good = 'sha256:' + 'a' * 64
    assert D.split_digest(good) == 'a' * 64
    for bad in ('sha512:' + 'a' * 64, 'sha256:' + 'A' * 64, 'sha256:' + 'a' * 63, 'a' * 64, None, 3,
                'sha256:../' + 'a' * 61):
        assert D.split_digest(bad) is None


def test_json_encodings_are_stable():
    doc = {'b': [1, {'d': 2, 'c': 'é'}], 'a': None}
    assert D.canonical_json(doc) == b'{"a":null,"b":[1,{"c":"\\u00e9","d":2}]}'
    assert D.pretty_json(doc).endswith(b'}\n') and D.pretty_json(doc).startswith(b'{\n  "a": null,')
    assert D.pretty_json(doc) == D.pretty_json(dict(reversed(list(doc.items()))))


def test_file_mismatch_names_what_differs(tmp_path):
    path = tmp_path / 'f'
    path.write_bytes(b'abc')
    good = D.sha256_bytes(b'abc')
    assert D.file_mismatch(str(path), 3, good) is None
    assert D.file_mismatch(str(path), 4, good) == ('size', 3)
    assert D.file_mismatch(str(path), 3, 'f' * 64) == ('sha256', good)
