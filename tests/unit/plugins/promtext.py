# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A strict parser of the Prometheus text exposition format (0.0.4), for tests.

Stricter than Prometheus itself: every family has exactly one HELP and one TYPE line before its
samples, its samples are contiguous, no series appears twice, label values use only the three
escapes the format defines, and the text is UTF-8 ending in a line feed.
"""

from __future__ import annotations

import math
import re

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
HELP_RE = re.compile(r"^# HELP (%s) (.*)$" % NAME)
TYPE_RE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)
SAMPLE_RE = re.compile(r"^(%s)(\{.*\})? (\S+)$" % NAME)
VALUE_RE = re.compile(r"^([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]Inf|NaN)$")


class ParseError(ValueError):
    pass


def _labels(text, lineno):
    labels = {}
    pos = 1
    end = len(text) - 1
    while pos < end:
        match = re.compile(LABEL).match(text, pos)
        if not match or text[match.end():match.end() + 2] != '="':
            raise ParseError("line %d: bad label at %r" % (lineno, text[pos:]))
        name = match.group(0)
        pos = match.end() + 2
        value = []
        while True:
            if pos >= end:
                raise ParseError("line %d: unterminated label value" % lineno)
            char = text[pos]
            if char == "\\":
                nxt = text[pos + 1:pos + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ParseError("line %d: bad escape \\%s" % (lineno, nxt))
                value.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif char == '"':
                pos += 1
                break
            elif char == "\n":
                raise ParseError("line %d: raw line feed in a label value" % lineno)
            else:
                value.append(char)
                pos += 1
        if name in labels:
            raise ParseError("line %d: label %s twice" % (lineno, name))
        labels[name] = "".join(value)
        if pos < end:
            if text[pos] != ",":
                raise ParseError("line %d: expected a comma at %r" % (lineno, text[pos:]))
            pos += 1
    return labels


def parse(data):
    """Bytes or text -> {family: {"help", "type", "samples": [(labels dict, float)]}}; ParseError if not strict."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    if not data.endswith("\n"):
        raise ParseError("the text does not end with a line feed")
    families = {}
    current = None
    closed = set()
    seen = set()
    for lineno, line in enumerate(data[:-1].split("\n"), 1):
        if not line:
            raise ParseError("line %d: empty line" % lineno)
        if line.startswith("#"):
            help_match = HELP_RE.match(line)
            type_match = TYPE_RE.match(line)
            if help_match:
                name = help_match.group(1)
                if name in families:
                    raise ParseError("line %d: second HELP for %s" % (lineno, name))
                if current is not None:
                    closed.add(current)
                families[name] = {"help": help_match.group(2), "type": None, "samples": []}
                current = name
            elif type_match:
                name = type_match.group(1)
                if name != current or families[name]["type"] is not None or families[name]["samples"]:
                    raise ParseError("line %d: TYPE for %s out of place" % (lineno, name))
                families[name]["type"] = type_match.group(2)
            else:
                raise ParseError("line %d: comment that is neither HELP nor TYPE" % lineno)
            continue
        match = SAMPLE_RE.match(line)
        if not match:
            raise ParseError("line %d: not a sample: %r" % (lineno, line))
        name = match.group(1)
        if name != current or name in closed or families[name]["type"] is None:
            raise ParseError("line %d: sample of %s outside its family" % (lineno, name))
        labels = _labels(match.group(2), lineno) if match.group(2) else {}
        if not VALUE_RE.match(match.group(3)):
            raise ParseError("line %d: bad value %r" % (lineno, match.group(3)))
        value = float(match.group(3))
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise ParseError("line %d: series repeated" % lineno)
        seen.add(key)
        if math.isnan(value) and families[name]["type"] == "counter":
            raise ParseError("line %d: NaN counter" % lineno)
        families[name]["samples"].append((labels, value))
    for name, family in families.items():
        if not family["samples"]:
            raise ParseError("family %s has no samples" % name)
    return families


def value(families, name, **labels):
    """The one sample of ``name`` whose labels include ``labels``; KeyError when none or several."""
    found = [v for l, v in families.get(name, {"samples": []})["samples"]
             if all(l.get(k) == w for k, w in labels.items())]
    if len(found) != 1:
        raise KeyError("%s%r matches %d samples" % (name, labels, len(found)))
    return found[0]
