#!/usr/bin/env python
"""compare_trees.py A B: compare two directory trees entry by entry (type, mode, owner, size, SHA-256,
symlink target, hard-link groups); print the differences and exit 1 when there are any."""

from __future__ import annotations

import hashlib
import os
import stat
import sys


def walk(root):
    entries = {}
    inodes = {}
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            entry = {"mode": stat.S_IMODE(st.st_mode), "type": stat.S_IFMT(st.st_mode), "uid": st.st_uid,
                     "gid": st.st_gid}
            if stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256()
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
                entry.update(size=st.st_size, sha256=digest.hexdigest())
                inodes.setdefault(st.st_ino, []).append(rel)
            entries[rel] = entry
    links = sorted(sorted(group) for group in inodes.values() if len(group) > 1)
    return entries, links


def main():
    a, links_a = walk(sys.argv[1])
    b, links_b = walk(sys.argv[2])
    problems = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a or rel not in b:
            problems.append("%s only in %s" % (rel, sys.argv[1] if rel in a else sys.argv[2]))
        elif a[rel] != b[rel]:
            problems.append("%s differs: %r != %r" % (rel, a[rel], b[rel]))
    if links_a != links_b:
        problems.append("hard links differ: %r != %r" % (links_a, links_b))
    for problem in problems:
        print(problem)
    print("%d entries compared, %d differences" % (len(a), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
