# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The core's releaser hook: retention releases a set's external references before deleting it, and keeps
a set (with its parents) whose references cannot be released. Real dir store; the releaser is the
test's own object, since the hook is for any kind of reference."""

from __future__ import annotations

import datetime

from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _retention
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_dir
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import at, set_id_time

CHAIN = ["20261101T030000Z-full", "20261102T030000Z-incremental", "20261103T030000Z-incremental",
         "20261104T030000Z-full"]


def external_set(store, set_id, parent=None):
    manifest = _manifest.new_manifest(set_id, "vm1", "disks", "lvm", "snapshot",
                                      _manifest.SET_ID_RE.match(set_id).group(2), parent)
    _manifest.add_external(manifest, "lvm-snapshot", "vg0/snap-" + set_id[:8], location="vg0")
    started = set_id_time(set_id)
    _manifest.finish(manifest, started, started + datetime.timedelta(seconds=5))
    writer = store.begin("vm1", "disks", set_id)
    writer.commit(_manifest.dumps(manifest), [])
    return manifest


class Releaser(object):
    kinds = ("lvm-snapshot",)

    def __init__(self, refuse=(), fail=()):
        self.refuse, self.fail = set(refuse), set(fail)
        self.released = []

    def check(self, manifest):
        return ["%s is busy" % manifest["set_id"]] if manifest["set_id"] in self.refuse else []

    def release(self, manifest):
        if manifest["set_id"] in self.fail:
            return [], ["deleting %s failed" % manifest["set_id"]]
        refs = [dict(kind=r["kind"], id=r["id"], location=r["location"]) for r in manifest["external"]]
        self.released += refs
        return refs, []


def make_store(tmp_path):
    store = _store_dir.DirStore({"path": str(tmp_path)})
    parent = None
    for set_id in CHAIN:
        external_set(store, set_id, parent if set_id.endswith("incremental") else None)
        parent = set_id
    return store


def apply(store, releasers, check_mode=False):
    return _retention.apply_source(store, "vm1", "disks", _retention.check_policy({"keep_last": 1}),
                                   at("20261105T000000Z"), check_mode=check_mode, releasers=releasers)


def test_released_before_delete_and_reported(tmp_path):
    store = make_store(tmp_path)
    releaser = Releaser()
    planned = apply(store, [releaser], check_mode=True)
    assert [r["set_id"] for r in planned["external_released"]] == CHAIN[2::-1] and releaser.released == []
    report = apply(store, [releaser])
    assert report["deleted"] == CHAIN[2::-1]
    assert [r["id"] for r in report["external_released"]] == ["vg0/snap-" + s[:8] for s in CHAIN[2::-1]]
    assert releaser.released == [dict(kind="lvm-snapshot", id="vg0/snap-" + s[:8], location="vg0")
                                 for s in CHAIN[2::-1]]
    assert store.set_ids("vm1", "disks") == [CHAIN[3]]


def test_a_set_that_cannot_be_released_is_kept_with_its_parents(tmp_path):
    store = make_store(tmp_path)
    report = apply(store, [Releaser(refuse=[CHAIN[1]])])
    assert report["deleted"] == [CHAIN[2]]  # the child goes; the busy set and its full stay
    assert report["external_kept"] == [{"set_id": CHAIN[1], "reason": "%s is busy" % CHAIN[1]}]
    actions = dict((e["set_id"], e["action"]) for e in report["plan"])
    assert actions == {CHAIN[0]: "keep", CHAIN[1]: "keep", CHAIN[2]: "delete", CHAIN[3]: "keep"}
    assert store.set_ids("vm1", "disks") == [CHAIN[0], CHAIN[1], CHAIN[3]]


def test_a_failed_release_keeps_the_set_and_the_next_run_finishes(tmp_path):
    store = make_store(tmp_path)
    report = apply(store, [Releaser(fail=[CHAIN[0]])])
    assert report["deleted"] == [CHAIN[2], CHAIN[1]]
    assert report["external_kept"] == [{"set_id": CHAIN[0], "reason": "deleting %s failed" % CHAIN[0]}]
    assert store.set_ids("vm1", "disks") == [CHAIN[0], CHAIN[3]]
    assert store.list_objects("vm1", "disks") == []  # no deletion mark is left behind
    again = apply(store, [Releaser()])
    assert again["deleted"] == [CHAIN[0]] and store.set_ids("vm1", "disks") == [CHAIN[3]]


def test_without_a_releaser_for_the_kind_nothing_changes(tmp_path):
    store = make_store(tmp_path)
    report = apply(store, [])
    assert report["deleted"] == CHAIN[2::-1] and report["external_released"] == [] == report["external_kept"]
