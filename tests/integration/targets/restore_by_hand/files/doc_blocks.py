"""Cut every fenced code block out of a Markdown document, keyed by its section.

Usage: doc_blocks.py DOC OUTDIR

Writes OUTDIR/section-N.sh for the sh block of each "## N. ..." section and
prints JSON {"sections": {"N": {"title": ..., "path": ...}}}. A block outside a
numbered section, a second block in one section, or a block in any language
but sh is an error: every shell block of the document must be one the test runs.
"""

import json
import os
import re
import sys


def main():
    doc, outdir = sys.argv[1], sys.argv[2]
    with open(doc, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    sections = {}
    section = None
    block = None
    for number, line in enumerate(lines, 1):
        if block is not None:
            if line.startswith("```"):
                if section is None:
                    sys.exit("%s:%d: a code block outside a numbered section" % (doc, number))
                if "block" in sections[section]:
                    sys.exit("%s:%d: section %s has a second code block" % (doc, number, section))
                sections[section]["block"] = "\n".join(block) + "\n"
                block = None
            else:
                block.append(line)
            continue
        heading = re.match(r"^## (\d+)\. (.+)$", line)
        if heading:
            section = heading.group(1)
            sections[section] = {"title": heading.group(2)}
        elif line.startswith("```"):
            if line.strip() != "```sh":
                sys.exit("%s:%d: a code block that is not sh: %r" % (doc, number, line))
            block = []
    if block is not None:
        sys.exit("%s: an unterminated code block" % doc)
    found = {}
    for key, value in sections.items():
        if "block" not in value:
            continue
        path = os.path.join(outdir, "section-%s.sh" % key)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(value["block"])
        found[key] = {"title": value["title"], "path": path, "first_line": value["block"].split("\n")[0]}
    print(json.dumps({"sections": found}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
