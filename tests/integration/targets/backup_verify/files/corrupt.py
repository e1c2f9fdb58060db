"""Damage a file in place, as a bad disk or a cut transfer would.

Usage: corrupt.py flip FILE      invert every bit of the byte in the middle
       corrupt.py truncate FILE  cut the file to half its size
"""

import os
import sys


def main():
    mode, path = sys.argv[1], sys.argv[2]
    size = os.path.getsize(path)
    if size < 2:
        print("corrupt.py: %s is too small to damage" % path, file=sys.stderr)
        return 1
    if mode == "flip":
        with open(path, "r+b") as handle:
            handle.seek(size // 2)
            byte = handle.read(1)
            handle.seek(size // 2)
            handle.write(bytes([byte[0] ^ 0xFF]))
    elif mode == "truncate":
        os.truncate(path, size // 2)
    else:
        print("corrupt.py: unknown mode %s" % mode, file=sys.stderr)
        return 2
    print("%s %s at size %d" % (mode, path, size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
