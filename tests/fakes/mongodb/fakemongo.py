# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake of the command-line contract of mongodump and mongorestore (MongoDB Database Tools 100.x).

No MongoDB server or tool can be installed on the machines that test this
collection, so the modules are exercised against this stand-in. It mimics, from
the tools' documentation and source (mongo-tools, common/options and
mongodump/mongorestore): the flags each tool accepts (an unknown one fails with
``error parsing command line options: unknown option `x``` and exit status 1),
``--config`` YAML (password, uri, sslPEMKeyPassword; other keys rejected),
``--archive`` to stdout and from stdin, the log lines (timestamp, tab, message)
and the ``Failed: ...`` lines and exit status 1 for a wrong password and an
unreachable host, and mongodump's silence (exit 0, no namespace dumped) for a
database that does not exist.

The "server" at host H, port P is the directory ``$LIFEBOAT_FAKE_MONGO_ROOT/H_P``:
``server.json`` ({"replica_set", "users": [{"user", "db", "password"}],
"oplog_time": [t, i], "oplog_during_dump": [entries]}) and
``data/<db>/<collection>.jsonl`` (one JSON document per line; names
percent-encoded). No such directory means the host is unreachable.

The archive is a STAND-IN, not MongoDB's binary archive format: UTF-8 lines,
``LIFEBOAT-FAKE-MONGO-ARCHIVE 1``, then ``NS {"db", "collection"}``, ``DOC {...}``
lines, ``OPLOG {...}`` lines, and ``END <number of DOC and OPLOG lines>``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import urllib.parse

MAGIC = "LIFEBOAT-FAKE-MONGO-ARCHIVE 1"
VERSION = "100.9.4"

COMMON_VALUE = {"host", "port", "username", "password", "authenticationDatabase", "authenticationMechanism",
                "config", "uri", "db", "collection", "sslCAFile", "sslPEMKeyFile", "sslPEMKeyPassword", "sslCRLFile",
                "gssapiServiceName", "gssapiHostName", "awsSessionToken", "numThreads", "dialTimeout",
                "socketTimeout", "serverSelectionTimeout", "compressors", "verbose"}
COMMON_BOOL = {"help", "version", "quiet", "ssl", "sslAllowInvalidCertificates", "sslAllowInvalidHostnames",
               "sslFIPSMode", "tlsInsecure"}
SHORT = {"d": "db", "c": "collection", "h": "host", "u": "username", "p": "password", "o": "out", "q": "query",
         "j": "numParallelCollections"}
TOOLS = {
    "mongodump": (
        {"query", "queryFile", "readPreference", "out", "excludeCollection", "excludeCollectionsWithPrefix",
         "numParallelCollections"},
        {"forceTableScan", "gzip", "oplog", "dumpDbUsersAndRoles", "viewsAsCollections"},
    ),
    "mongorestore": (
        {"oplogLimit", "oplogFile", "dir", "writeConcern", "numParallelCollections", "numInsertionWorkersPerCollection",
         "excludeCollection", "excludeCollectionsWithPrefix", "nsExclude", "nsInclude", "nsFrom", "nsTo", "readPreference"},
        {"objcheck", "oplogReplay", "restoreDbUsersAndRoles", "gzip", "drop", "dryRun", "noIndexRestore",
         "convertLegacyIndexes", "noOptionsRestore", "keepIndexVersion", "maintainInsertionOrder", "stopOnError",
         "bypassDocumentValidation", "preserveUUID", "fixDottedHashIndex"},
    ),
}
OPTIONAL_VALUE = {"archive"}
REPEATABLE = {"excludeCollection", "excludeCollectionsWithPrefix", "nsExclude", "nsInclude", "nsFrom", "nsTo"}


class Failure(Exception):
    pass


def log(message):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    sys.stderr.write("%s\t%s\n" % (now, message))
    sys.stderr.flush()


def q(text):
    """Go's %#q."""
    return "`%s`" % text if "`" not in text else json.dumps(text)


def parse_args(tool, argv):
    values, bools = TOOLS[tool]
    values = values | COMMON_VALUE
    bools = bools | COMMON_BOOL
    opts = {"verbose": 0}
    positional = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
        elif arg.startswith("-") and len(arg) > 1 and arg != "-":
            letter = arg[1]
            if letter == "v":
                opts["verbose"] += len(arg) - 1
                continue
            if letter not in SHORT:
                raise Failure("error parsing command line options: unknown option %s" % q(letter))
            name, eq, value = SHORT[letter], "=" if len(arg) > 2 else "", arg[2:].lstrip("=")
        else:
            positional.append(arg)
            continue
        if name == "verbose":
            opts["verbose"] += 1
            continue
        if name in OPTIONAL_VALUE:
            opts[name] = value if eq else "-"
        elif name in bools:
            if eq:
                raise Failure("error parsing command line options: bool flag `--%s' cannot have an argument" % name)
            opts[name] = True
        elif name in values:
            if not eq:
                if index >= len(argv):
                    raise Failure("error parsing command line options: expected argument for flag `--%s'" % name)
                value = argv[index]
                index += 1
            if name in REPEATABLE:
                opts.setdefault(name, []).append(value)
            else:
                opts[name] = value
        else:
            raise Failure("error parsing command line options: unknown option %s" % q(name))
    if opts.get("config"):
        try:
            with open(opts["config"], "rb") as handle:
                text = handle.read().decode("utf-8")
        except OSError as exc:
            raise Failure("error opening file with --config: %s" % exc)
        config = parse_yaml(text, opts["config"])
        for key, value in config.items():
            opts.setdefault(key, value)
    if positional:
        if len(positional) > 1 or not positional[0].startswith("mongodb"):
            raise Failure("error parsing positional arguments: provide only one MongoDB connection string. "
                          "Connection strings must begin with mongodb:// or mongodb+srv:// schemes")
        opts["uri"] = positional[0]
    return opts


def parse_yaml(text, path):
    try:
        import yaml
        data = yaml.safe_load(text) or {}
    except ImportError:
        raise Failure("the fake needs PyYAML to read --config")
    except yaml.YAMLError as exc:
        raise Failure("error parsing config file %s: yaml: %s" % (path, str(exc).splitlines()[0]))
    if not isinstance(data, dict):
        raise Failure("error parsing config file %s: yaml: unmarshal errors" % path)
    for key in data:
        if key not in ("password", "uri", "sslPEMKeyPassword", "destinationPassword"):
            raise Failure("error parsing config file %s: yaml: unmarshal errors:\n  line 1: field %s not found in "
                          "type struct" % (path, key))
    return dict((k, str(v)) for k, v in data.items())


def connect(opts):
    """The server directory, after checking reachability and credentials."""
    user = opts.get("username")
    password = opts.get("password")
    auth_db = opts.get("authenticationDatabase")
    replica_set = None
    if opts.get("uri"):
        parts = urllib.parse.urlsplit(opts["uri"])
        hosts = parts.netloc.rpartition("@")[2]
        if parts.username:
            user = urllib.parse.unquote(parts.username)
        if parts.password is not None:
            password = urllib.parse.unquote(parts.password)
        query = urllib.parse.parse_qs(parts.query)
        auth_db = query.get("authSource", [auth_db])[0]
        replica_set = query.get("replicaSet", [None])[0]
        host = hosts.split(",")[0]
    else:
        host = opts.get("host") or "localhost"
        if "/" in host:
            replica_set, host = host.split("/", 1)
            host = host.split(",")[0]
        if ":" not in host:
            host = "%s:%s" % (host, opts.get("port") or "27017")
    name, port = host.rsplit(":", 1)
    address = "%s:%s" % (name, port)
    root = os.environ.get("LIFEBOAT_FAKE_MONGO_ROOT", "")
    server = os.path.join(root, "%s_%s" % (name, port))
    state_path = os.path.join(server, "server.json")
    if not root or not os.path.isfile(state_path):
        raise Failure("can't create session: failed to connect to mongodb://%s/: server selection error: server "
                      "selection timeout, current topology: { Type: Single, Servers: [{ Addr: %s, Type: Unknown, "
                      "Last error: dial tcp %s: connect: connection refused }, ] }" % (address, address, address))
    with open(state_path) as handle:
        state = json.load(handle)
    if replica_set and replica_set != state.get("replica_set"):
        raise Failure("can't create session: failed to connect to mongodb://%s/?replicaSet=%s: server selection "
                      "error: server selection timeout, current topology: { Type: ReplicaSetNoPrimary }"
                      % (address, replica_set))
    users = state.get("users") or []
    if users:
        mechanism = opts.get("authenticationMechanism") or "SCRAM-SHA-256"
        ok = any(u["user"] == user and u["password"] == password and u.get("db", "admin") == (auth_db or "admin")
                 for u in users)
        if not user:
            raise Failure("(Unauthorized) command listDatabases requires authentication")
        if not ok:
            raise Failure("can't create session: failed to connect to mongodb://%s/: connection() error occurred "
                          "during connection handshake: auth error: sasl conversation error: unable to authenticate "
                          "using mechanism \"%s\": (AuthenticationFailed) Authentication failed." % (address, mechanism))
    return server, state


def enc(name):
    return urllib.parse.quote(name, safe="")


def dec(name):
    return urllib.parse.unquote(name)


def databases(server):
    data = os.path.join(server, "data")
    return sorted(dec(n) for n in os.listdir(data)) if os.path.isdir(data) else []


def collections(server, db):
    path = os.path.join(server, "data", enc(db))
    return sorted(dec(n[:-6]) for n in os.listdir(path) if n.endswith(".jsonl")) if os.path.isdir(path) else []


def coll_path(server, db, coll):
    return os.path.join(server, "data", enc(db), enc(coll) + ".jsonl")


def read_docs(server, db, coll):
    with open(coll_path(server, db, coll)) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def matches(doc, query):
    for key, cond in query.items():
        if isinstance(cond, dict) and "$in" in cond:
            if doc.get(key) not in cond["$in"]:
                return False
        elif doc.get(key) != cond:
            return False
    return True


def dump(opts):
    if opts.get("out"):
        raise Failure("the fake supports --archive only")
    if "archive" not in opts:
        raise Failure("the fake supports --archive only")
    if opts.get("oplog") and (opts.get("db") or opts.get("collection")):
        raise Failure("bad option: --oplog mode only supported on full dumps")
    if opts.get("collection") and not opts.get("db"):
        raise Failure("cannot dump a collection without a specified database")
    if opts.get("query") and not opts.get("collection"):
        raise Failure("cannot dump using a query without a specified collection")
    if opts.get("excludeCollection") and not opts.get("db"):
        raise Failure("--db is required when --excludeCollection is specified")
    server, state = connect(opts)
    if opts.get("oplog") and not state.get("replica_set"):
        raise Failure("error getting oplog start: mongo: no documents in result")
    query = json.loads(opts["query"]) if opts.get("query") else None
    targets = []
    if opts.get("collection"):
        if opts["collection"] not in collections(server, opts["db"]):
            log("namespace with DB %s and collection %s does not exist" % (q(opts["db"]), q(opts["collection"])))
            return 0
        targets = [(opts["db"], opts["collection"])]
    else:
        for db in ([opts["db"]] if opts.get("db") else databases(server)):
            for coll in collections(server, db):
                if coll not in (opts.get("excludeCollection") or []):
                    targets.append((db, coll))
    where = "archive on stdout" if opts["archive"] == "-" else "archive %s" % q(opts["archive"])
    out = sys.stdout.buffer if opts["archive"] == "-" else open(opts["archive"], "wb")
    lines = 0
    out.write((MAGIC + "\n").encode())
    if opts.get("oplog"):
        start = state.get("oplog_time") or [1, 1]
        if opts["verbose"]:
            log("checking if oplog entry {%d %d} still exists" % tuple(start))
    for db, coll in targets:
        log("writing %s to %s" % (q(db + "." + coll), where))
        out.write(("NS %s\n" % json.dumps({"db": db, "collection": coll})).encode())
        count = 0
        for doc in read_docs(server, db, coll):
            if query is not None and not matches(doc, query):
                continue
            out.write(("DOC %s\n" % json.dumps(doc)).encode())
            count += 1
            lines += 1
            if os.environ.get("LIFEBOAT_FAKE_MONGO_FAIL_AFTER") and lines >= int(os.environ["LIFEBOAT_FAKE_MONGO_FAIL_AFTER"]):
                out.flush()
                raise Failure("error writing data for collection %s to disk: error reading collection: "
                              "connection(%s) incomplete read of message header: EOF" % (q(db + "." + coll), db))
        log("done dumping %s (%d %s)" % (q(db + "." + coll), count, "document" if count == 1 else "documents"))
    if opts.get("oplog"):
        entries = state.get("oplog_during_dump") or []
        log("writing captured oplog to %s" % q(""))
        for entry in entries:
            out.write(("OPLOG %s\n" % json.dumps(entry)).encode())
            lines += 1
        log("\tdumped %d oplog %s" % (len(entries), "entry" if len(entries) == 1 else "entries"))
    out.write(("END %d\n" % lines).encode())
    out.flush()
    return 0


def ns_regex(pattern):
    import re
    regex = ""
    for index, part in enumerate(pattern.split("*")):
        regex += ("(.*?)" if index else "") + re.escape(part)
    return re.compile("^%s$" % regex, re.S)


def rename(namespace, sources, targets):
    for source, target in zip(sources, targets):
        match = ns_regex(source).match(namespace)
        if match:
            parts = target.split("*")
            return parts[0] + "".join(match.group(i + 1) + part for i, part in enumerate(parts[1:]))
    return namespace


def restore(opts):
    if opts.get("archive") != "-":
        raise Failure("the fake supports --archive from stdin only")
    if len(opts.get("nsFrom") or []) != len(opts.get("nsTo") or []):
        raise Failure("Different number of asterisks in from and to")
    try:
        server, state = connect(opts)
    except Failure as exc:
        sys.stderr.write("%s\terror connecting to host: %s\n" % ("2026-01-01T00:00:00.000+0000",
                                                                 str(exc).split(": ", 1)[-1]))
        return 1
    stream = sys.stdin.buffer
    if stream.readline().decode("utf-8", "replace").rstrip("\n") != MAGIC:
        raise Failure("stream or file does not appear to be a mongodump archive")
    log("preparing collections to restore from")
    ok = failed = counted = 0
    current = None
    oplog = []
    done = False
    include = opts.get("nsInclude") or []
    exclude = opts.get("nsExclude") or []
    for raw in stream:
        line = raw.decode("utf-8").rstrip("\n")
        kind, dummy, rest = line.partition(" ")
        if kind == "END":
            if int(rest) != counted:
                raise Failure("corruption found in archive; ParserConsumer.BodyBSON() ( EOF )")
            done = True
            break
        counted += kind in ("DOC", "OPLOG")
        if kind == "NS":
            ns = json.loads(rest)
            source = ns["db"] + "." + ns["collection"]
            skip = (include and not any(ns_regex(p).match(source) for p in include)) or any(
                ns_regex(p).match(source) for p in exclude)
            target = rename(source, opts.get("nsFrom") or [], opts.get("nsTo") or [])
            db, dot, coll = target.partition(".")
            current = None if skip else (db, coll)
            if current is not None:
                path = coll_path(server, db, coll)
                if opts.get("drop") and os.path.exists(path):
                    log("dropping collection %s before restoring" % q(target))
                    os.unlink(path)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if not os.path.exists(path):
                    open(path, "w").close()
                log("restoring %s from archive on stdin" % q(target))
        elif kind == "DOC":
            if current is None:
                continue
            doc = json.loads(rest)
            existing = read_docs(server, *current)
            if any(d.get("_id") == doc.get("_id") for d in existing):
                failed += 1
                message = ("E11000 duplicate key error collection: %s.%s index: _id_ dup key: { _id: %s }"
                           % (current[0], current[1], json.dumps(doc.get("_id"))))
                if opts.get("stopOnError"):
                    log("Failed: %s.%s: error restoring from archive on stdin: %s" % (current[0], current[1], message))
                    log("%d document(s) restored successfully. %d document(s) failed to restore." % (ok, failed))
                    return 1
                log("continuing through error: %s" % message)
                continue
            with open(coll_path(server, *current), "a") as handle:
                handle.write(json.dumps(doc) + "\n")
            ok += 1
        elif kind == "OPLOG":
            oplog.append(json.loads(rest))
        else:
            raise Failure("corruption found in archive; ParserConsumer.HeaderBSON() ( unexpected line )")
    if not done:
        raise Failure("corruption found in archive; ParserConsumer.BodyBSON() ( EOF )")
    if opts.get("oplogReplay"):
        log("replaying oplog")
        for entry in oplog:
            db, dot, coll = rename(entry["ns"], opts.get("nsFrom") or [], opts.get("nsTo") or []).partition(".")
            if entry.get("op") == "i":
                os.makedirs(os.path.dirname(coll_path(server, db, coll)), exist_ok=True)
                with open(coll_path(server, db, coll), "a") as handle:
                    handle.write(json.dumps(entry["o"]) + "\n")
        log("applied %d oplog %s" % (len(oplog), "entry" if len(oplog) == 1 else "entries"))
    log("%d document(s) restored successfully. %d document(s) failed to restore." % (ok, failed))
    return 0


def main(tool, argv):
    try:
        opts = parse_args(tool, argv)
    except Failure as exc:
        log(str(exc))
        log("try '%s --help' for more information" % tool)
        return 1
    if opts.get("version"):
        sys.stdout.write("%s version: %s\ngit version: fake\nGo version: go1.21\n" % (tool, VERSION))
        return 0
    try:
        return dump(opts) if tool == "mongodump" else restore(opts)
    except Failure as exc:
        log("Failed: %s" % exc)
        return 1


# ------------------------------------------------------------------ test harness

def harness(argv):
    """init / seed / checksum / set for the tests: python fakemongo.py COMMAND --root R --port P ..."""
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["init", "seed", "checksum", "set"])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", default="27017")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db")
    parser.add_argument("--coll", action="append", default=[])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--user")
    parser.add_argument("--password-file")
    parser.add_argument("--replica-set")
    parser.add_argument("--json", help="for set: a JSON object merged into server.json")
    args = parser.parse_args(argv)
    server = os.path.join(args.root, "%s_%s" % (args.host, args.port))
    state_path = os.path.join(server, "server.json")
    if args.command == "init":
        os.makedirs(os.path.join(server, "data"), exist_ok=True)
        users = []
        if args.user:
            with open(args.password_file) as handle:
                users.append({"user": args.user, "db": "admin", "password": handle.read().rstrip("\n")})
        with open(state_path, "w") as handle:
            json.dump({"replica_set": args.replica_set, "users": users, "oplog_time": [1764547200, 1],
                       "oplog_during_dump": []}, handle)
    elif args.command == "set":
        with open(state_path) as handle:
            state = json.load(handle)
        state.update(json.loads(args.json))
        with open(state_path, "w") as handle:
            json.dump(state, handle)
    elif args.command == "seed":
        for coll in args.coll:
            path = coll_path(server, args.db, coll)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as handle:
                for index in range(args.count):
                    doc = {"_id": index, "name": "doc %d of %s\n\"quoted\" \u00e9" % (index, coll),
                           "blob": hashlib.sha256(("%s%d" % (coll, index)).encode()).hexdigest() * 4}
                    handle.write(json.dumps(doc) + "\n")
    else:
        result = {}
        for coll in collections(server, args.db):
            docs = sorted(read_docs(server, args.db, coll), key=lambda d: json.dumps(d.get("_id"), sort_keys=True))
            result[coll] = hashlib.sha256("\n".join(json.dumps(d, sort_keys=True) for d in docs).encode()).hexdigest()
        sys.stdout.write(json.dumps({"collections": result, "count": len(result)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(harness(sys.argv[1:]))
