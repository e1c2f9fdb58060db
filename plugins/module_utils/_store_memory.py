# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The ``memory`` store: the contract in a dictionary, for unit tests of the core.

It is registered but not offered to users (the ``store`` option's choices
leave it out). It keeps the same rules as the real kinds: partial sets are
invisible, the manifest is written last, objects are put-if-absent.
"""

from __future__ import annotations

import hashlib
import io
import socket
import time

from ansible_collections.lifeboat.backup.plugins.module_utils._common import utcnow
from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
from ansible_collections.lifeboat.backup.plugins.module_utils import _stores

_SPACES = {}


class MemorySink(_stores.Sink):
    def __init__(self, files, name):
        self.files = files
        self.name = name
        self.buffer = io.BytesIO()

    def write(self, data):
        self.buffer.write(bytes(data))

    def close(self):
        self.files[self.name] = self.buffer.getvalue()

    def abort(self):
        pass


class MemorySetWriter(_stores.SetWriter):
    def __init__(self, store, host, source, set_id):
        self.store = store
        self.key = (host, source)
        self.set_id = set_id
        self.files = {}
        self.committed = False
        partials = store.space["partials"].setdefault(self.key, {})
        if set_id in partials or set_id in store.space["sets"].get(self.key, {}):
            raise _stores.StoreError("Set %s/%s/%s already exists." % (host, source, set_id))
        partials[set_id] = self.files

    def open(self, name):
        _stores.check_file_name(name)
        if name in self.files:
            raise _stores.StoreError("%s was already written." % name)
        self.files[name] = b""
        return MemorySink(self.files, name)

    def commit(self, raw_manifest, names):
        if sorted(self.files) != sorted(names):
            raise _stores.StoreError("Refusing to commit: the files written %s differ from the manifest %s."
                                     % (sorted(self.files), sorted(names)))
        entry = dict(self.files)
        entry[_manifest.MANIFEST_NAME] = bytes(raw_manifest)
        self.store.space["partials"][self.key].pop(self.set_id, None)
        self.store.space["sets"].setdefault(self.key, {})[self.set_id] = entry
        self.committed = True

    def abort(self):
        if not self.committed:
            self.store.space["partials"].get(self.key, {}).pop(self.set_id, None)


class MemoryLock(_stores.Lock):
    def __init__(self, store, host, source, ttl, now=None):
        self.store = store
        self.key = (host, source)
        self.ttl = ttl
        self.now = now or utcnow
        self.stale = None
        self.held = False

    def acquire(self):
        locks = self.store.space["locks"]
        info = locks.get(self.key)
        if info is not None:
            state = _stores.lock_holder_state(info, socket.gethostname(), self.now())
            if state == "live":
                raise _stores.LockedError(_stores.locked_message(info, "memory lock"))
            self.stale = _stores.stale_report(info, state)
        locks[self.key] = _stores.lock_info(self.now(), self.ttl)
        self.held = True
        return self

    def update(self, set_id):
        if self.held:
            self.store.space["locks"][self.key]["set_id"] = set_id

    def release(self):
        if self.held:
            self.store.space["locks"].pop(self.key, None)
            self.held = False


class MemoryStore(_stores.Store):
    """Sets in a dictionary shared by every MemoryStore with the same ``name``."""

    kind = "memory"
    capabilities = frozenset(["conditional_put"])

    def __init__(self, spec, runner=None):
        self.name = spec.get("name") or "default"
        self.space = _SPACES.setdefault(self.name, {"sets": {}, "partials": {}, "locks": {}, "objects": {}})

    @staticmethod
    def reset(name=None):
        if name is None:
            _SPACES.clear()
        else:
            _SPACES.pop(name, None)

    def describe(self):
        return {"kind": self.kind, "name": self.name}

    def location(self, host=None, source=None, set_id=None, name=None):
        return "memory://%s/%s" % (self.name, "/".join(p for p in (host, source, set_id, name) if p))

    def exists(self):
        return True

    def hosts(self):
        keys = set(self.space["sets"]) | set(self.space["partials"])
        return sorted(set(h for h, s in keys))

    def sources(self, host):
        keys = set(self.space["sets"]) | set(self.space["partials"])
        return sorted(set(s for h, s in keys if h == host))

    def listing(self, host, source):
        key = (host, source)
        return _stores.Listing(list(self.space["sets"].get(key, {})),
                               [s + _stores.PARTIAL_SUFFIX for s in self.space["partials"].get(key, {})])

    def _set(self, host, source, set_id):
        entry = self.space["sets"].get((host, source), {}).get(set_id)
        if entry is None:
            raise FileNotFoundError(set_id)
        return entry

    def read_manifest_bytes(self, host, source, set_id):
        try:
            raw = self._set(host, source, set_id)[_manifest.MANIFEST_NAME]
        except FileNotFoundError:
            raise _manifest.ManifestError("The manifest of set %s/%s/%s is missing: the set is incomplete."
                                          % (host, source, set_id))
        if len(raw) > _stores.MAX_MANIFEST_BYTES:
            raise _manifest.ManifestError("The manifest of set %s/%s/%s is more than the limit of %d bytes."
                                          % (host, source, set_id, _stores.MAX_MANIFEST_BYTES))
        return raw

    def open_payload(self, host, source, set_id, name):
        _stores.check_file_name(name)
        files = self._set(host, source, set_id)
        if name not in files or name == _manifest.MANIFEST_NAME:
            raise FileNotFoundError(name)
        return io.BytesIO(files[name])

    def payload_names(self, host, source, set_id):
        return sorted(n for n in self._set(host, source, set_id) if n != _manifest.MANIFEST_NAME)

    def begin(self, host, source, set_id):
        _manifest.check_name(host, "host")
        _manifest.check_name(source, "source")
        _stores.check_set_id(set_id)
        return MemorySetWriter(self, host, source, set_id)

    def delete_set(self, host, source, set_id):
        self.space["sets"].get((host, source), {}).pop(set_id, None)

    def remove_partials(self, host, source):
        partials = self.space["partials"].pop((host, source), {})
        return sorted(s + _stores.PARTIAL_SUFFIX for s in partials)

    def lock(self, host, source, ttl=86400.0):
        return MemoryLock(self, host, source, ttl)

    def put_object(self, host, source, name, reader):
        _stores.check_object_name(name)
        data = reader.read()
        objects = self.space["objects"].setdefault((host, source), {})
        if name in objects:
            if hashlib.sha256(objects[name]).digest() != hashlib.sha256(data).digest():
                raise _stores.ObjectExistsError("Object %s of %s/%s already exists with different content." % (name, host, source))
            return "identical"
        objects[name] = data
        self.space.setdefault("object_times", {})[(host, source, name)] = time.time()
        return "created"

    def open_object(self, host, source, name):
        _stores.check_object_name(name)
        try:
            return io.BytesIO(self.space["objects"][(host, source)][name])
        except KeyError:
            raise FileNotFoundError(name)

    def stat_object(self, host, source, name):
        _stores.check_object_name(name)
        try:
            data = self.space["objects"][(host, source)][name]
        except KeyError:
            raise FileNotFoundError(2, "Object %s does not exist." % name)
        # None for an object a test put into the space behind the store's back.
        return {"size": len(data), "modified": self.space.get("object_times", {}).get((host, source, name))}

    def list_objects(self, host, source, prefix=""):
        return sorted(n for n in self.space["objects"].get((host, source), {}) if n.startswith(prefix))

    def delete_object(self, host, source, name):
        self.space["objects"].get((host, source), {}).pop(name, None)
        self.space.get("object_times", {}).pop((host, source, name), None)


_stores.register_kind("memory", MemoryStore, dict(name=dict(type="str")), public=False)
