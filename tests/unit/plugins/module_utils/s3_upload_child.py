# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A backup run in a process of its own, for test_store_s3.py: memory is measured, or the run is killed.

    python s3_upload_child.py COLLECTIONS_ROOT SPEC_JSON SET_ID SIZE

Takes the source's lock, streams ``head -c SIZE /dev/urandom`` through the
pipeline into payload ``big.bin`` of set SET_ID of the s3 store SPEC_JSON,
commits, and prints one JSON line: size, sha256, the resident set size before
the upload and its peak (VmHWM, KiB).
"""

from __future__ import annotations

import datetime
import json
import sys


def _memory_kib(field):
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def main(argv):
    root, spec, set_id, size = argv[1], json.loads(argv[2]), argv[3], int(argv[4])
    sys.path.insert(0, root)
    # pylint: disable=import-outside-toplevel
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
    _AnsibleCollectionFinder(paths=[root])._install()  # pylint: disable=protected-access
    from ansible_collections.lifeboat.backup.plugins.module_utils import _manifest
    from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline
    from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds

    store = _store_kinds.open_store(spec)
    started = datetime.datetime.now(datetime.timezone.utc)
    with store.lock("db1", "app") as lock:
        lock.update(set_id)
        writer = store.begin("db1", "app", set_id)
        try:
            baseline = _memory_kib("VmRSS")
            sink = writer.open("big.bin")
            written, digest = _pipeline.run_to_sink(
                [_pipeline.Stage("head", ["head", "-c", str(size), "/dev/urandom"])], sink)
            sink.close()
            manifest = _manifest.new_manifest(set_id, "db1", "app", "test", "head")
            _manifest.add_file(manifest, "big.bin", written, digest)
            _manifest.finish(manifest, started, datetime.datetime.now(datetime.timezone.utc))
            writer.commit(_manifest.dumps(manifest), ["big.bin"])
        finally:
            writer.abort()
    print(json.dumps({"size": written, "sha256": digest, "rss_before_kib": baseline,
                      "peak_kib": _memory_kib("VmHWM")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
