# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""The database-level entries of a pg_dump archive, read strictly.

A custom or directory archive holds, besides the objects inside a database,
entries about the database itself: its encoding and locale, owner, settings
(``ALTER DATABASE ... SET``, ``ALTER ROLE ... IN DATABASE ... SET``),
comment and access privileges. ``pg_restore`` renders them only with
``--create``; the restore module renders just those entries (``--create``
with a schema filter that matches nothing) and hands the SQL to
:func:`parse`.

That SQL comes from an untrusted set. Nothing of it is run as it is: each
statement must match one of the forms pg_dump writes, about the archive's own
database, and is rebuilt here from its parts with fresh quoting for the name
it is restored under. Every other statement is reported and not run.
"""

from __future__ import annotations

import re

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._psqlscript import split_statements

_TOKEN = re.compile(r"""
    (?P<space>\s+|--[^\n]*)
  | (?P<qident>"(?:[^"]|"")*")
  | (?P<string>'(?:[^']|'')*')
  | (?P<word>[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*)
  | (?P<number>-?[0-9]+)
  | (?P<punct>[=,;.()])
""", re.X)

CREATE_OPTIONS = ("encoding", "locale", "lc_collate", "lc_ctype", "locale_provider", "icu_locale", "icu_rules",
                  "builtin_locale")
LOCALE_PROVIDERS = ("libc", "icu", "builtin")
PRIVILEGES = ("connect", "temporary", "temp", "create", "all")
LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z))+")
SESSION_SETUP = re.compile(r"\A\s*(SET\s+(?!SESSION\s+AUTHORIZATION\b)|SELECT\s+pg_catalog\.set_config\s*\()", re.I)


class EntryError(LifeboatError):
    """A database entry does not have a form this module carries."""


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def quote_literal(value):
    return "'%s'" % value.replace("'", "''")


def _ascii_lower(text):
    return "".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in text)


def tokenize(statement):
    """(kind, value) tokens; kind is ident (value folded as the server would), string, number, punct or word."""
    tokens = []
    pos = 0
    text = statement.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise EntryError("unexpected text %r" % text[pos:pos + 20])
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "space":
            continue
        if kind == "qident":
            tokens.append(("ident", value[1:-1].replace('""', '"')))
        elif kind == "string":
            tokens.append(("string", value[1:-1].replace("''", "'")))
        elif kind == "word":
            tokens.append(("word", _ascii_lower(value)))
        else:
            tokens.append((kind, value))
    if tokens and tokens[-1] == ("punct", ";"):
        tokens.pop()
    return tokens


class _Reader(object):
    """Consumes the tokens of one statement; every mismatch raises EntryError."""

    def __init__(self, tokens):
        self.tokens = tokens
        self.pos = 0

    def peek(self, offset=0):
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else (None, None)

    def keyword(self, *words):
        for word in words:
            kind, value = self.peek()
            if kind != "word" or value != word:
                raise EntryError("expected %s" % word.upper())
            self.pos += 1

    def maybe(self, *words):
        for offset, word in enumerate(words):
            if self.peek(offset) != ("word", word):
                return False
        self.pos += len(words)
        return True

    def name(self):
        kind, value = self.peek()
        if kind not in ("ident", "word") or not value:
            raise EntryError("expected a name")
        self.pos += 1
        return value

    def punct(self, char):
        if self.peek() != ("punct", char):
            raise EntryError("expected %s" % char)
        self.pos += 1

    def maybe_punct(self, char):
        if self.peek() == ("punct", char):
            self.pos += 1
            return True
        return False

    def string(self):
        kind, value = self.peek()
        if kind != "string":
            raise EntryError("expected a string literal")
        self.pos += 1
        return value

    def end(self):
        if self.pos != len(self.tokens):
            raise EntryError("unexpected %r" % (self.peek()[1],))


class DatabaseEntries(object):
    """What an archive says about its database, parsed; ``sql()`` rebuilds it for another name."""

    def __init__(self):
        self.name = None
        self.create = []          # [(option, value)]
        self.owner = None
        self.settings = []        # [(guc, [values])]
        self.role_settings = []   # [(role, guc, [values])]
        self.connection_limit = None
        self.is_template = None
        self.has_comment = False
        self.comment = None
        self.acl = []             # [("grant"|"revoke"|"become"|"reset", ...)]
        self.skipped = []         # statements not carried, shortened, for the operator

    # -------------------------------------------------------------- parsing

    def add(self, statement):
        statement = LEADING_COMMENTS.sub("", statement)
        if not statement.strip() or SESSION_SETUP.match(statement):
            return
        try:
            tokens = tokenize(statement)
            if not tokens:
                return
            self._add(_Reader(tokens))
        except EntryError:
            text = " ".join(statement.split())
            self.skipped.append(text if len(text) <= 200 else text[:197] + "...")

    def _database(self, reader):
        name = reader.name()
        if self.name is None or name != self.name:
            raise EntryError("not the archive's database")
        return name

    def _add(self, r):
        """Match one statement; only a statement that matched to its end changes anything."""
        action = self._match(r)
        r.end()
        action()

    def _set(self, **changes):
        def apply():
            for key, value in changes.items():
                setattr(self, key, value)
        return apply

    def _append(self, items, item):
        return lambda: items.append(item)

    def _match(self, r):
        if r.maybe("create", "database"):
            if self.name is not None:
                raise EntryError("a second CREATE DATABASE")
            name = r.name()
            r.maybe("with")
            options = []
            while r.peek()[0] is not None:
                key = r.name()
                r.maybe_punct("=")
                kind, value = r.peek()
                if kind not in ("string", "word", "ident"):
                    raise EntryError("bad option value")
                r.pos += 1
                options.append((key, kind, value))
            for key, kind, value in options:
                if key == "template":
                    if value != "template0":
                        raise EntryError("template other than template0")
                elif key == "locale_provider":
                    if kind != "word" or value not in LOCALE_PROVIDERS:
                        raise EntryError("unknown locale provider")
                elif key not in CREATE_OPTIONS or kind != "string":
                    raise EntryError("option %s is not carried" % key)
            return self._set(name=name, create=[(k, v) for k, dummy, v in options if k != "template"])
        if r.maybe("alter", "database"):
            self._database(r)
            if r.maybe("owner", "to"):
                return self._set(owner=r.name())
            if r.maybe("set"):
                return self._append(self.settings, self._setting(r))
            if r.maybe("connection", "limit") or r.maybe("with", "connection", "limit"):
                r.maybe_punct("=")
                kind, value = r.peek()
                if kind != "number":
                    raise EntryError("bad connection limit")
                r.pos += 1
                return self._set(connection_limit=int(value))
            if r.maybe("is_template") or r.maybe("with", "is_template"):
                r.maybe_punct("=")
                kind, value = r.peek()
                if kind != "word" or value not in ("true", "false"):
                    raise EntryError("bad is_template")
                r.pos += 1
                return self._set(is_template=value == "true")
            raise EntryError("unknown ALTER DATABASE")
        if r.maybe("alter", "role"):
            role = r.name()
            r.keyword("in", "database")
            self._database(r)
            r.keyword("set")
            guc, values = self._setting(r)
            return self._append(self.role_settings, (role, guc, values))
        if r.maybe("comment", "on", "database"):
            self._database(r)
            r.keyword("is")
            comment = None if r.maybe("null") else r.string()
            return self._set(comment=comment, has_comment=True)
        if r.peek() in (("word", "grant"), ("word", "revoke")):
            return self._append(self.acl, self._acl(r))
        if r.maybe("set", "session", "authorization"):
            return self._append(self.acl, ("become", r.name()))
        if r.maybe("reset", "session", "authorization"):
            return self._append(self.acl, ("reset",))
        raise EntryError("unknown statement")

    def _setting(self, r):
        parts = [r.name()]
        while r.maybe_punct("."):
            parts.append(r.name())
        guc = ".".join(parts)
        if not r.maybe("to"):
            r.punct("=")
        values = []
        while True:
            kind, value = r.peek()
            if kind == "string":
                values.append(("string", value))
            elif kind == "number":
                values.append(("number", value))
            else:
                raise EntryError("a setting value must be a literal")
            r.pos += 1
            if not r.maybe_punct(","):
                break
        return guc, values

    def _acl(self, r):
        grant = r.maybe("grant")
        if not grant:
            r.keyword("revoke")
        grant_option_for = (not grant) and r.maybe("grant", "option", "for")
        privileges = []
        while True:
            word = r.name()
            if word not in PRIVILEGES or r.peek()[0] == "ident":
                raise EntryError("unknown privilege")
            if word == "all":
                r.maybe("privileges")
            privileges.append("TEMPORARY" if word == "temp" else word.upper())
            if not r.maybe_punct(","):
                break
        r.keyword("on", "database")
        self._database(r)
        r.keyword("to" if grant else "from")
        kind, grantee = r.peek()
        r.name()
        public = kind == "word" and grantee == "public"
        with_option = grant and r.maybe("with", "grant", "option")
        cascade = (not grant) and r.maybe("cascade")
        return ("grant" if grant else "revoke", privileges, None if public else grantee, with_option,
                grant_option_for, cascade)

    # -------------------------------------------------------------- output

    def create_sql(self, name):
        """CREATE DATABASE for ``name`` with the archive's encoding and locale."""
        sql = "CREATE DATABASE %s TEMPLATE template0" % quote_ident(name)
        for key, value in self.create:
            if key == "locale_provider":
                if value != "libc":  # the default: leave it out for servers that predate the option
                    sql += " LOCALE_PROVIDER %s" % value
            else:
                sql += " %s %s" % (key.upper(), quote_literal(value))
        return sql + ";"

    def sql(self, name, no_owner=False):
        """The statements that give database ``name`` the archive's properties, in pg_restore's order."""
        db = quote_ident(name)
        out = []
        if self.owner is not None and not no_owner:
            out.append("ALTER DATABASE %s OWNER TO %s;" % (db, quote_ident(self.owner)))
        if self.has_comment:
            out.append("COMMENT ON DATABASE %s IS %s;" % (
                db, "NULL" if self.comment is None else quote_literal(self.comment)))
        if self.connection_limit is not None:
            out.append("ALTER DATABASE %s CONNECTION LIMIT %d;" % (db, self.connection_limit))
        if self.is_template is not None:
            out.append("ALTER DATABASE %s IS_TEMPLATE %s;" % (db, "true" if self.is_template else "false"))
        for guc, values in self.settings:
            out.append("ALTER DATABASE %s SET %s TO %s;" % (db, quote_ident(guc), _values(values)))
        if not no_owner:
            for role, guc, values in self.role_settings:
                out.append("ALTER ROLE %s IN DATABASE %s SET %s TO %s;"
                           % (quote_ident(role), db, quote_ident(guc), _values(values)))
            for entry in self.acl:
                out.append(_acl_sql(entry, db))
        return out

    def not_carried(self, no_owner=False):
        """Sentences for what the archive holds and the restore leaves out."""
        notes = ["not carried: %s" % text for text in self.skipped]
        if no_owner:
            if self.owner is not None:
                notes.append("no_owner: owner %s not carried" % quote_ident(self.owner))
            if self.role_settings:
                notes.append("no_owner: %d per-role setting(s) not carried" % len(self.role_settings))
            if self.acl:
                notes.append("no_owner: %d privilege statement(s) not carried" % len(self.acl))
        return notes


def _values(values):
    return ", ".join(quote_literal(v) if kind == "string" else str(int(v)) for kind, v in values)


def _acl_sql(entry, db):
    if entry[0] == "become":
        return "SET SESSION AUTHORIZATION %s;" % quote_ident(entry[1])
    if entry[0] == "reset":
        return "RESET SESSION AUTHORIZATION;"
    verb, privileges, grantee, with_option, grant_option_for, cascade = entry
    who = "PUBLIC" if grantee is None else quote_ident(grantee)
    if verb == "grant":
        return "GRANT %s ON DATABASE %s TO %s%s;" % (",".join(privileges), db, who,
                                                     " WITH GRANT OPTION" if with_option else "")
    option = "GRANT OPTION FOR " if grant_option_for else ""
    return "REVOKE %s%s ON DATABASE %s FROM %s%s;" % (option, ",".join(privileges), db, who,
                                                      " CASCADE" if cascade else "")


def parse(script):
    """Parse what ``pg_restore --create`` renders for the database entries (bytes) into DatabaseEntries."""
    entries = DatabaseEntries()
    for statement in split_statements(script, allow_connect=True):
        entries.add(statement)
    return entries
