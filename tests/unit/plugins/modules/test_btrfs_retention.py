# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""backup_retention releasing the read-only snapshots btrfs send sets keep on their host, on a real btrfs
filesystem in a loop file (scripts/btrfsloop.py): sets written by btrfs_snapshot, deleted by retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ansible_collections.lifeboat.backup.plugins.modules import backup_retention
from ansible_collections.lifeboat.backup.plugins.modules import btrfs_snapshot
from ansible_collections.lifeboat.backup.tests.unit.plugins.helpers import run_module

HARNESS = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..",
                                        "scripts", "btrfsloop.py"))


@pytest.fixture(scope="module")
def btrfs_mount(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("btrfsloop"))
    out = subprocess.run([sys.executable, HARNESS, "start", "--dir", directory, "--size", "200M"],
                         stdout=subprocess.PIPE, check=True, text=True).stdout
    try:
        yield json.loads(out)["mount"]
    finally:
        subprocess.run([sys.executable, HARNESS, "stop", "--dir", directory, "--remove"], check=True)


@pytest.fixture
def volume(btrfs_mount, tmp_path):
    """A fresh subvolume with a few files, its snapshot directory and a store."""
    name = tmp_path.name
    subvolume = os.path.join(btrfs_mount, name)
    subprocess.run(["btrfs", "subvolume", "create", subvolume], stdout=subprocess.PIPE, check=True)
    with open(os.path.join(subvolume, "a"), "wb") as handle:
        handle.write(os.urandom(10000))
    return dict(subvolume=subvolume, snapdir=os.path.join(btrfs_mount, name + "-snaps"),
                store=dict(kind="dir", path=str(tmp_path / "store")))


def send(monkeypatch, tmp_path, volume, set_type):
    time.sleep(1.1)  # set ids are to the second: one set a second keeps their order plain
    with open(os.path.join(volume["subvolume"], "f-%s" % set_type), "ab") as handle:
        handle.write(os.urandom(1000))
    result = run_module(monkeypatch, tmp_path, btrfs_snapshot, dict(
        subvolume=volume["subvolume"], snapshot_dir=volume["snapdir"], source="data", store=volume["store"],
        host="h1", type=set_type))
    assert not result.failed, result.result
    return result.result


def retention(monkeypatch, tmp_path, volume, check_mode=False, **extra):
    args = dict(store=volume["store"], host="h1", policy=dict(keep_last=1), btrfs_snapshot_dirs=[volume["snapdir"]])
    args.update(extra)
    result = run_module(monkeypatch, tmp_path, backup_retention, args, check_mode=check_mode)
    assert not result.failed, result.result
    return result.result


def snapshots(volume):
    return sorted(os.listdir(os.path.join(volume["snapdir"], "data")))


def manifest_path(volume, set_id):
    return os.path.join(volume["store"]["path"], "h1", "data", set_id, "manifest.json")


def edit_manifest(volume, set_id, change):
    path = manifest_path(volume, set_id)
    with open(path) as handle:
        data = json.load(handle)
    change(data["external"][0])
    with open(path, "w") as handle:
        json.dump(data, handle)


def test_retention_deletes_the_snapshot_of_a_deleted_set_and_keeps_the_parent_of_a_kept_one(
        monkeypatch, tmp_path, volume):
    full = send(monkeypatch, tmp_path, volume, "full")
    first = send(monkeypatch, tmp_path, volume, "differential")
    second = send(monkeypatch, tmp_path, volume, "differential")
    # The module kept the full (the parent of every differential) and the set that was newest when it ran.
    assert snapshots(volume) == sorted([full["set_id"], first["set_id"], second["set_id"]])

    check = retention(monkeypatch, tmp_path, volume, check_mode=True)
    assert [e["set_id"] for e in check["deleted"]] == [first["set_id"]]
    assert [e["set_id"] for e in check["external_released"]] == [first["set_id"]]
    assert snapshots(volume) == sorted([full["set_id"], first["set_id"], second["set_id"]])

    done = retention(monkeypatch, tmp_path, volume)
    assert done["changed"]
    assert [e["set_id"] for e in done["deleted"]] == [first["set_id"]]
    released = done["external_released"]
    assert released == [dict(kind="btrfs-snapshot", id=first["manifest"]["external"][0]["id"], host="h1",
                             source="data", set_id=first["set_id"],
                             location=os.path.join(volume["snapdir"], "data", first["set_id"]))]
    # The full stays: the kept differential is sent against it, and so will the next one be.
    assert snapshots(volume) == sorted([full["set_id"], second["set_id"]])
    assert done["external_kept"] == []

    again = retention(monkeypatch, tmp_path, volume)
    assert not again["changed"] and again["external_released"] == []
    nxt = send(monkeypatch, tmp_path, volume, "differential")
    assert nxt["parent_set_id"] == full["set_id"]


def test_a_snapshot_already_gone_counts_as_released(monkeypatch, tmp_path, volume):
    old = send(monkeypatch, tmp_path, volume, "full")
    send(monkeypatch, tmp_path, volume, "full")
    subprocess.run(["btrfs", "subvolume", "delete", os.path.join(volume["snapdir"], "data", old["set_id"])],
                   stdout=subprocess.PIPE, check=True)
    check = retention(monkeypatch, tmp_path, volume, check_mode=True)
    assert [e["set_id"] for e in check["deleted"]] == [old["set_id"]]
    assert check["external_released"] == []  # nothing is left to release, and check mode says so
    done = retention(monkeypatch, tmp_path, volume)
    assert [e["set_id"] for e in done["deleted"]] == [old["set_id"]]
    assert done["external_kept"] == [] and done["external_released"] == []


def test_a_forged_location_is_not_followed_and_keeps_the_set(monkeypatch, tmp_path, volume):
    old = send(monkeypatch, tmp_path, volume, "full")
    new = send(monkeypatch, tmp_path, volume, "full")
    victim = os.path.join(volume["snapdir"], "data", new["set_id"])
    # The old set's manifest now names the newest set's snapshot (with its UUID): never followed.
    edit_manifest(volume, old["set_id"], lambda ref: ref.update(location=victim, id=new["manifest"]["external"][0]["id"]))
    done = retention(monkeypatch, tmp_path, volume)
    assert done["deleted"] == []
    assert done["external_kept"][0]["set_id"] == old["set_id"]
    assert "is not <snapshot_dir>/data/%s" % old["set_id"] in done["external_kept"][0]["reason"]
    assert snapshots(volume) == sorted([old["set_id"], new["set_id"]])


def test_a_snapshot_that_is_not_the_recorded_one_is_kept(monkeypatch, tmp_path, volume):
    old = send(monkeypatch, tmp_path, volume, "full")
    new = send(monkeypatch, tmp_path, volume, "full")
    edit_manifest(volume, old["set_id"], lambda ref: ref.update(id=new["manifest"]["external"][0]["id"]))
    done = retention(monkeypatch, tmp_path, volume)
    assert done["deleted"] == []
    assert "is not the read-only snapshot set %s recorded" % old["set_id"] in done["external_kept"][0]["reason"]
    assert snapshots(volume) == sorted([old["set_id"], new["set_id"]])


def test_an_unknown_snapshot_directory_or_another_host_is_not_acted_on(monkeypatch, tmp_path, volume):
    old = send(monkeypatch, tmp_path, volume, "full")
    new = send(monkeypatch, tmp_path, volume, "full")
    # Without the directory the module used, the recorded snapshot is not one of ours: the set is kept.
    done = retention(monkeypatch, tmp_path, volume, btrfs_snapshot_dirs=[])
    assert done["deleted"] == [] and "btrfs_snapshot_dirs" in done["external_kept"][0]["reason"]
    # Retention over every host of the store, run on a machine named otherwise: the set of h1 is deleted,
    # but its snapshot lives on h1 and is not touched here.
    monkeypatch.setattr("socket.gethostname", lambda: "backupserver")
    done = retention(monkeypatch, tmp_path, volume, host=None)
    assert [e["set_id"] for e in done["deleted"]] == [old["set_id"]]
    assert done["external_released"] == [] and done["external_kept"] == []
    assert snapshots(volume) == sorted([old["set_id"], new["set_id"]])
