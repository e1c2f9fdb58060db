# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tree lists: the fast index line, hashing on threads in walk order, and a previous tree read in step."""

from __future__ import annotations

import io
import os

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _trees

ODD_PATHS = ["a", "d/f.txt", 'quo"te', "back\\slash", "tab\there", "caf\u00e9/\u65e5\u672c", "nl\nx",
             "bad\udcffname", "\x7f", "sp ace/" + "n" * 255]


@pytest.mark.parametrize("path", ODD_PATHS)
def test_index_line_is_the_canonical_line(path):
    key = _trees.key_of(path)
    fast = _trees.index_line(path, 12, 0o644, "ab" * 32, key)
    assert fast == _manifest.format_index_line(path, 12, 0o644, "ab" * 32)
    assert _trees.index_line(path, 12, 0o644, "ab" * 32) == fast


def test_index_line_checks_lengths_of_a_walked_path():
    long_name = "x" * (_manifest.INDEX_MAX_NAME_BYTES + 1)
    with pytest.raises(_manifest.ManifestError):
        _trees.index_line(long_name, 1, 0o644, "00" * 32, _trees.key_of(long_name))


def make(root, files):
    for path, data in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as handle:
            handle.write(data)


def lists_of(root, known=None, workers=1):
    fd = os.open(root, _trees.DIR_FLAGS)
    try:
        index, links = io.BytesIO(), io.BytesIO()
        found = _trees.write_lists(fd, index, links, known, workers=workers)
        return found, index.getvalue(), links.getvalue()
    finally:
        os.close(fd)


def test_threaded_hashing_writes_the_same_index_in_walk_order(tmp_path, monkeypatch):
    files = dict(("d%d/f%03d" % (i % 3, i), os.urandom(i * 37 % 5000)) for i in range(120))
    make(str(tmp_path), files)
    one = lists_of(str(tmp_path), workers=1)
    monkeypatch.setattr(_trees, "HASH_INLINE_BYTES", 100)
    monkeypatch.setattr(_trees, "HASH_WINDOW", 4)
    many = lists_of(str(tmp_path), workers=3)
    assert many[1] == one[1]
    assert (many[0].files, many[0].bytes, many[0].hashed) == (120, sum(len(v) for v in files.values()), 120)
    entries = list(_manifest.read_index(io.BytesIO(many[1]), {"files": 120, "bytes": many[0].bytes}))
    assert [e["path"] for e in entries] == sorted(files, key=_trees.key_of)


def test_previous_vouches_only_for_the_same_inode(tmp_path):
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    make(old, {"a/linked": b"same", 'a/q"uote\\d': b"also same", "a/copied": b"copy", "b/gone": b"x"})
    found, index, dummy = lists_of(old)
    make(new, {"a/copied": b"copy"})
    os.link(os.path.join(old, "a/linked"), os.path.join(new, "a/linked"))
    os.link(os.path.join(old, 'a/q"uote\\d'), os.path.join(new, 'a/q"uote\\d'))
    previous = _trees.Previous(os.open(old, _trees.DIR_FLAGS), io.BytesIO(index))
    try:
        known = {}

        def record(entry):
            known[entry.path] = previous.same(entry)
            return known[entry.path]
        fresh = lists_of(new, record)
    finally:
        previous.close()
    assert known["a/copied"] is None
    assert known["a/linked"][0] == 4 and known['a/q"uote\\d'][0] == 9
    assert fresh[0].hashed == 1
    assert fresh[1] == lists_of(new)[1]


def test_previous_with_a_broken_index_vouches_for_nothing(tmp_path):
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    make(old, {"f": b"data"})
    os.makedirs(new)
    os.link(os.path.join(old, "f"), os.path.join(new, "f"))
    for index in (b'{"mode":420,"path":"f","sha256":"' + b"0" * 64 + b'","size":4} \n', b"\xff\n", b"[1]\n" * 3):
        previous = _trees.Previous(os.open(old, _trees.DIR_FLAGS), io.BytesIO(index))
        try:
            found = lists_of(new, previous.same)[0]
        finally:
            previous.close()
        assert found.hashed == 1
