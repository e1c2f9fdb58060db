"""Write a mysqldump set whose payload is the given SQL file (a hostile payload), through the core's BackupJob.

usage: forge_set.py STORE_DIR HOST SOURCE DATABASE SQL_FILE
"""
import os
import sys

root = os.environ["ANSIBLE_COLLECTIONS_PATH"].split(":")[0]
sys.path.insert(0, root)

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds  # noqa: E402

store_dir, host, source, database, sql_file = sys.argv[1:6]
store = _store_kinds.open_store({"kind": "dir", "path": store_dir})
job = _jobs.BackupJob(store, host, source, "mysql", "mysqldump")


class Forged(object):
    """An engine whose one payload is the SQL file as it is."""

    def produce(self, ctx):
        yield _jobs.Payload("dump.sql", [_jobs._pipeline.Stage("cat", ["cat", sql_file])])

    def record(self, ctx, manifest):
        manifest["options"] = {"databases": [database], "payload": "dump.sql"}


manifest, extras = job.run(Forged())
print(manifest["set_id"])
