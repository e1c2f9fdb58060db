"""Backup-side fixtures of the postgresql_pitr target: WAL archiving through the collection's
archive command, and a base backup set written through the core's BackupJob.

usage: fixture.py archive-command STORE_DIR HOST SOURCE COMMAND_DIR PYTHON
       fixture.py basebackup STORE_DIR HOST SOURCE SOCKET_DIR PORT BIN_DIR

archive-command installs the WAL command for the postgres user and prints the archive_command line.
basebackup runs pg_basebackup (tar, WAL fetched) as postgres and prints the manifest as JSON.
"""
import json
import os
import pwd
import re
import subprocess
import sys
import tempfile

root = os.environ["ANSIBLE_COLLECTIONS_PATH"].split(":")[0]
sys.path.insert(0, root)
# The collection loader, as in a module run: the archive command bundles module_utils read through it.
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder  # noqa: E402

_AnsibleCollectionFinder(paths=[root])._install()

from ansible_collections.lifeboat.backup.plugins.module_utils import _jobs  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils import _pipeline  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils import _store_kinds  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils import _wal  # noqa: E402
from ansible_collections.lifeboat.backup.plugins.module_utils._common import format_ts, utcnow  # noqa: E402

POSTGRES = pwd.getpwnam("postgres")


def archive_command(store_dir, host, source, command_dir, python):
    prefix = _wal.install(None, command_dir, {"kind": "dir", "path": store_dir}, host, source,
                          python=python, uid=POSTGRES.pw_uid, gid=POSTGRES.pw_gid)
    print(_wal.archive_command(prefix))


def as_postgres(argv):
    return ["runuser", "-u", "postgres", "--"] + argv


def basebackup(store_dir, host, source, socket_dir, port, bin_dir):
    store = _store_kinds.open_store({"kind": "dir", "path": store_dir})
    log = tempfile.NamedTemporaryFile(prefix="pg_basebackup-", delete=False).name
    os.unlink(log)

    def sql(query):
        return subprocess.run(as_postgres([os.path.join(bin_dir, "psql"), "-X", "-At", "-h", socket_dir, "-p", port,
                                           "-d", "postgres", "-c", query]),
                              check=True, capture_output=True, text=True).stdout.strip()

    class BaseBackup(object):
        def produce(self, ctx):
            self.started = format_ts(utcnow())
            argv = as_postgres([os.path.join(bin_dir, "pg_basebackup"), "-h", socket_dir, "-p", port, "-D", "-",
                                "-Ft", "-X", "fetch", "--checkpoint=fast", "-v"])
            yield _jobs.Payload("base.tar", [_pipeline.Stage("pg_basebackup", argv, sequential=True,
                                                             stderr_path=log)])

        def record(self, ctx, manifest):
            with open(log, encoding="utf-8") as handle:
                text = handle.read()
            start = re.search(r"write-ahead log start point: (\S+) on timeline (\d+)", text)
            stop = re.search(r"write-ahead log end point: (\S+)", text)
            manifest["position"] = {
                "server_version": int(sql("SHOW server_version_num")),
                "system_identifier": sql("SELECT system_identifier FROM pg_control_system()"),
                "timeline": int(start.group(2)),
                "start_lsn": start.group(1),
                "stop_lsn": stop.group(1),
                "start_time": self.started,
                "stop_time": format_ts(utcnow()),
                "objects_prefix": "wal/",
            }

    manifest, extras = _jobs.BackupJob(store, host, source, "postgresql", "pg_basebackup").run(BaseBackup())
    os.unlink(log)
    print(json.dumps(manifest))


if __name__ == "__main__":
    if sys.argv[1] == "archive-command":
        archive_command(*sys.argv[2:7])
    elif sys.argv[1] == "basebackup":
        basebackup(*sys.argv[2:8])
    else:
        sys.exit("unknown command %s" % sys.argv[1])
