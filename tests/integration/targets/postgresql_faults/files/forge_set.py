"""Forge a backup set the way someone with write access to a store could: change the payload, then
rewrite the manifest so that sizes and SHA-256 match again.

Usage:
  forge_set.py --set-dir DIR [--identity FILE --recipient AGE1...] ACTION

Actions (directory-format sets, whose payload is a tar; NAME @data is the largest .dat member):
  --tar-symlink NAME TARGET    replace member NAME (or add it) by a symbolic link to TARGET
  --tar-hardlink NAME TARGET   ... by a hard link to TARGET
  --tar-fifo NAME              ... by a FIFO
  --tar-chardev NAME           ... by a character device (1, 3)
  --tar-file NAME              add a regular file NAME (e.g. an absolute path or one with ..)
Actions for SQL payloads (plain and pg_dumpall sets):
  --sql-append TEXT            append TEXT (a line) to the SQL

The payload is decoded with the set's own tools (age with --identity, zstd or
gzip, from its file name suffixes) and encoded again the same way (age to
--recipient). Prints the JSON of the new manifest's file entry.
"""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile


def run(argv, data):
    return subprocess.run(argv, input=data, stdout=subprocess.PIPE, check=True).stdout


def decode(name, data, identity):
    if name.endswith(".age"):
        data = run(["age", "--decrypt", "-i", identity], data)
        name = name[:-4]
    if name.endswith(".zst"):
        data = run(["zstd", "-q", "-d", "-c"], data)
    elif name.endswith(".gz"):
        data = run(["gzip", "-d", "-c"], data)
    return data


def encode(name, data, recipient):
    plain = name[:-4] if name.endswith(".age") else name
    if plain.endswith(".zst"):
        data = run(["zstd", "-q", "-c"], data)
    elif plain.endswith(".gz"):
        data = run(["gzip", "-c"], data)
    if name.endswith(".age"):
        data = run(["age", "--encrypt", "-r", recipient], data)
    return data


def forge_tar(data, kind, name, target):
    source = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    if name == "@data":
        name = max((m for m in source.getmembers() if m.isreg() and m.name.endswith(".dat")),
                   key=lambda m: m.size).name
    forge_tar.member = name
    out = io.BytesIO()
    replaced = False
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as forged:
        for member in source.getmembers():
            if member.name == name and kind != "file":
                replaced = True
                forged.addfile(evil(kind, member.name, target))
            elif member.isreg():
                forged.addfile(member, source.extractfile(member))
            else:
                forged.addfile(member)
        if not replaced:
            if kind == "file":
                info = tarfile.TarInfo(name)
                payload = b"forged\n"
                info.size = len(payload)
                forged.addfile(info, io.BytesIO(payload))
            else:
                forged.addfile(evil(kind, name, target))
    return out.getvalue()


def evil(kind, name, target):
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, target
    elif kind == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, target
    elif kind == "fifo":
        info.type = tarfile.FIFOTYPE
    elif kind == "chardev":
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--set-dir", required=True)
    parser.add_argument("--identity")
    parser.add_argument("--recipient")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--tar-symlink", nargs=2, metavar=("NAME", "TARGET"))
    group.add_argument("--tar-hardlink", nargs=2, metavar=("NAME", "TARGET"))
    group.add_argument("--tar-fifo", metavar="NAME")
    group.add_argument("--tar-chardev", metavar="NAME")
    group.add_argument("--tar-file", metavar="NAME")
    group.add_argument("--sql-append", metavar="TEXT")
    args = parser.parse_args()

    manifest_path = os.path.join(args.set_dir, "manifest.json")
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    entry = manifest["files"][0]
    path = os.path.join(args.set_dir, entry["name"])
    with open(path, "rb") as handle:
        data = decode(entry["name"], handle.read(), args.identity)
    if args.sql_append is not None:
        data = data + b"\n" + args.sql_append.encode("utf-8") + b"\n"
    elif args.tar_symlink:
        data = forge_tar(data, "symlink", *args.tar_symlink)
    elif args.tar_hardlink:
        data = forge_tar(data, "hardlink", *args.tar_hardlink)
    elif args.tar_fifo:
        data = forge_tar(data, "fifo", args.tar_fifo, None)
    elif args.tar_chardev:
        data = forge_tar(data, "chardev", args.tar_chardev, None)
    else:
        data = forge_tar(data, "file", args.tar_file, None)
    data = encode(entry["name"], data, args.recipient)
    with open(path, "wb") as handle:
        handle.write(data)
    entry["size"] = len(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    manifest["bytes"] = sum(f["size"] for f in manifest["files"])
    with open(manifest_path, "w") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write("\n")
    print(json.dumps(dict(entry, member=getattr(forge_tar, "member", None))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
