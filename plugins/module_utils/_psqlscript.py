# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to this collection. It may change without notice.

"""A streaming reader of psql scripts that come from an untrusted backup set.

Plain-format and pg_dumpall sets are SQL scripts for psql. psql also runs
client-side meta-commands (``\\!``, ``\\copy``, ``\\o``, ...) found in a script,
as the user that runs it. A restore therefore runs every script in psql's
restricted mode (``\\restrict KEY`` written first, with a fresh random key),
and feeds it through :class:`PsqlScript`, which:

* follows psql's lexical states (quotes, dollar quotes, comments, COPY data)
  to find the backslash commands psql would see;
* drops only pg_dump's own lines (``\\restrict KEY`` and ``\\unrestrict KEY``,
  and for pg_dumpall sets ``\\encoding SQL_ASCII``), and turns pg_dumpall's
  ``\\connect`` lines into a *database name* the caller connects to with its
  own host, port and user;
* refuses every other backslash command, naming it, before psql sees it;
* refuses, wherever it stands, any ``\\unrestrict`` and any ``:DBNAME`` or
  ``:LAST_ERROR_MESSAGE`` in what reaches psql: a psql older than the fixes
  of 2026 evaluates backquotes in ``\\unrestrict``'s argument even in
  restricted mode, and re-reads the value of an interpolated variable as
  script text. That check does not depend on this reader agreeing with psql
  about quotes, so a set that makes them disagree gains nothing.

Memory stays bounded whatever the size of the script: bytes are passed on as
they are read, and only an unfinished token (at most ``MAX_LINE`` bytes) is
kept between chunks.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import tempfile

from ansible_collections.lifeboat.backup.plugins.module_utils._common import LifeboatError
from ansible_collections.lifeboat.backup.plugins.module_utils._runner import Runner

MAX_LINE = 64 * 1024
MAX_TOKEN = 4096
MAX_STATEMENT = 1024 * 1024

NEUTRAL, SQUOTE, ESTRING, DQUOTE, DOLLAR, LINE_COMMENT, BLOCK_COMMENT, COPY_DATA = range(8)

_SPECIAL = re.compile(rb"[-'\"$/\\\n;()A-Za-z_\x80-\xff]")
# Once a statement's first word is known (and it is no COPY), words no longer matter.
_FAST_SPECIAL = re.compile(rb"[-'\"$/\\\n;()]")
_IDENT_BYTES = bytes(bytearray(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$") + bytearray(range(0x80, 0x100)))
CONTEXT = 64
_NON_SPACE = re.compile(rb"[^ \t\r\f\n]")
_WORD = re.compile(rb"[A-Za-z_\x80-\xff][A-Za-z0-9_$\x80-\xff]*")
_DOLLAR = re.compile(rb"\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$")
_DOLLAR_PREFIX = re.compile(rb"\$[A-Za-z_\x80-\xff]?[A-Za-z0-9_\x80-\xff]*\Z")
_ESTRING_STOP = re.compile(rb"['\\]")
_BLOCK_STOP = re.compile(rb"/\*|\*/")
_COMMAND_NAME = re.compile(rb"\\([A-Za-z0-9_]+|.)", re.S)

_KEY_LINE = re.compile(rb"\\(restrict|unrestrict) [A-Za-z0-9]{1,256}[ \t]*\Z")
_ENCODING_LINE = re.compile(rb"\\encoding SQL_ASCII[ \t]*\Z")
_CONNECT_PLAIN = re.compile(rb"\\connect ([A-Za-z0-9_.$\x80-\xff]+)[ \t]*\Z")
_CONNECT_QUOTED = re.compile(rb"\\connect \"((?:[^\"]|\"\")+)\"[ \t]*\Z")
_CONNECT_CONNINFO = re.compile(rb"\\connect -reuse-previous=on \"((?:[^\"]|\"\")+)\"[ \t]*\Z")
_CONNINFO_DBNAME = re.compile(rb"dbname=(?:([A-Za-z0-9_.]+)|'((?:[^'\\]|\\.)*)')\Z", re.S)

# What must never reach psql, wherever it stands (see the module docstring).
FORBIDDEN = (b"\\unrestrict", b":DBNAME", b":LAST_ERROR_MESSAGE")
_GUARD_TAIL = max(len(f) for f in FORBIDDEN) - 1


class ScriptError(LifeboatError):
    """The script holds something a restore refuses; ``command`` names it, ``line`` is 1-based."""

    def __init__(self, message, command=None, line=None):
        super(ScriptError, self).__init__(message)
        self.command = command
        self.line = line


def refused(command, line):
    return ScriptError(
        "The set's SQL holds the psql meta-command %s at line %d; a restore never runs client-side "
        "commands from a set, so it refuses this one (the set may have been tampered with)."
        % (command, line), command=command, line=line)


def _copy_end(head, final):
    """Whether the COPY data line starting with ``head`` (up to 4 bytes) is the end marker; None: undecided."""
    if not head:
        return None if not final else False
    if head[:1] != b"\\":
        return False
    if len(head) < 2:
        return None if not final else False
    if head[1:2] != b".":
        return False
    rest = head[2:]
    if rest[:1] == b"\n" or rest[:2] == b"\r\n":
        return True
    if rest in (b"", b"\r"):
        return True if final else None
    return False


def _decode(raw):
    return raw.decode("utf-8", "replace")


def _connect_name(line):
    """The database a pg_dumpall ``\\connect`` line names, or None for any other form."""
    match = _CONNECT_PLAIN.match(line)
    if match:
        return match.group(1)
    match = _CONNECT_QUOTED.match(line)
    if match:
        return match.group(1).replace(b'""', b'"')
    match = _CONNECT_CONNINFO.match(line)
    if match:
        conninfo = _CONNINFO_DBNAME.match(match.group(1).replace(b'""', b'"'))
        if conninfo:
            if conninfo.group(1) is not None:
                return conninfo.group(1)
            return re.sub(rb"\\(.)", rb"\1", conninfo.group(2), flags=re.S)
    return None


class PsqlScript(object):
    """Feed chunks of a psql script; get back what to send to psql.

    ``feed(data)`` and ``finish()`` return a list of events:

    * ``("sql", bytes)``: pass these bytes on to the current psql;
    * ``("connect", name, line)``: (pg_dumpall sets, ``allow_connect``) end the
      current psql and start a new one on database ``name`` (a str);
    * ``("end",)``: (with ``statements``) a top-level statement ended with the
      bytes before it.

    ``line`` is the line of the input that the next ``sql`` event starts at.
    Raises ScriptError for anything refused.
    """

    def __init__(self, allow_connect=False, statements=False):
        self.allow_connect = allow_connect
        self.statements = statements
        self.buf = b""
        self.state = NEUTRAL
        self.line = 1              # line number at self.buf[0]
        self.line_start = True     # self.buf[0] starts a line
        self.stmt_empty = True     # no token since the last top-level ';'
        self.stmt_copy = False     # the statement's first word is COPY
        self.prev_word = None
        self.from_stdin = False
        self.pending_copy = False  # COPY ... FROM stdin ended: data follows from the next line
        self.paren = 0
        self.dollar = None
        self.depth = 0
        self.ctx = b""             # the last bytes before self.buf, for looking back
        self.guard_tail = b""
        self.emit_line = 1         # input line of the first byte of the next sql event
        self.events = []

    # ------------------------------------------------------------------ output

    def _emit(self, data, first_line):
        if not data:
            return
        self._guard(data, first_line)
        self.events.append(("sql", data))

    def _guard(self, data, first_line):
        window = self.guard_tail + data
        for forbidden in FORBIDDEN:
            at = window.find(forbidden)
            if at >= 0:
                offset = at - len(self.guard_tail)
                line = first_line + data.count(b"\n", 0, max(0, offset))
                text = _decode(forbidden)
                if forbidden.startswith(b"\\"):
                    raise refused(text, line)
                raise ScriptError(
                    "The set's SQL holds the psql variable reference %s at line %d, which could make psql run "
                    "client-side commands; a restore refuses it (the set may have been tampered with)."
                    % (text, line), command=text, line=line)
        self.guard_tail = window[-_GUARD_TAIL:]

    # ------------------------------------------------------------------ input

    def feed(self, data):
        self.buf += data
        return self._run(final=False)

    def finish(self):
        return self._run(final=True)

    def _run(self, final):
        self.events = []
        buf = self.buf
        i = 0
        out = 0                   # start of the bytes not yet emitted
        out_line = self.line      # their first line
        line = self.line          # line number at i
        line_start = 0 if self.line_start else -1
        end = len(buf)
        need_more = False
        while i < end and not need_more:
            state = self.state
            if state == NEUTRAL:
                fast = not (self.stmt_empty or self.stmt_copy)
                match = (_FAST_SPECIAL if fast else _SPECIAL).search(buf, i)
                if not match:
                    if not fast and _NON_SPACE.search(buf, i):
                        self._token()
                    i = end
                    break
                k = match.start()
                if not fast and _NON_SPACE.search(buf, i, k):
                    self._token()
                i = k
                c = buf[k:k + 1]
                if c == b"\n":
                    line += 1
                    i = k + 1
                    line_start = i
                    if self.pending_copy:
                        self.pending_copy = False
                        self.state = COPY_DATA
                elif c == b"-" or c == b"/":
                    if k + 1 >= end and not final:
                        need_more = True
                    elif c == b"-" and buf[k + 1:k + 2] == b"-":
                        self.state = LINE_COMMENT
                        i = k + 2
                    elif c == b"/" and buf[k + 1:k + 2] == b"*":
                        self.state = BLOCK_COMMENT
                        self.depth = 1
                        i = k + 2
                    else:
                        self._token()
                        i = k + 1
                elif c == b"'":
                    self.state = ESTRING if self._run_before(buf, k) in (b"e", b"E") else SQUOTE
                    self._token()
                    i = k + 1
                elif c == b'"':
                    self.state = DQUOTE
                    self._token()
                    i = k + 1
                elif c == b"$":
                    run = self._run_before(buf, k)
                    match = _DOLLAR.match(buf, k)
                    if run and not run[:1].isdigit():
                        i = k + 1  # inside an identifier such as a$b
                    elif match and match.end() - k <= MAX_TOKEN:
                        self.state = DOLLAR
                        self.dollar = match.group(0)
                        self._token()
                        i = match.end()
                    elif not final and _DOLLAR_PREFIX.match(buf, k) and end - k < MAX_TOKEN:
                        need_more = True
                    else:
                        self._token()
                        i = k + 1
                elif c == b";":
                    self._token()
                    i = k + 1
                    if self.paren == 0:
                        if self.stmt_copy and self.from_stdin:
                            self.pending_copy = True
                        self.stmt_empty = True
                        self.stmt_copy = self.from_stdin = False
                        self.prev_word = None
                        if self.statements:
                            self._emit(buf[out:i], out_line)
                            self.events.append(("end",))
                            out, out_line = i, line
                elif c == b"(" or c == b")":
                    self._token()
                    self.paren = self.paren + 1 if c == b"(" else max(0, self.paren - 1)
                    i = k + 1
                elif c == b"\\":
                    stop = buf.find(b"\n", k)
                    if stop < 0:
                        if not final and end - k < MAX_LINE:
                            need_more = True
                            continue
                        stop = end
                    text = buf[k:stop]
                    if text.endswith(b"\r"):
                        text = text[:-1]
                    action = self._meta(text, k == line_start, line)
                    # The whole line goes: emit what came before it. A dropped line leaves an
                    # empty line, so that psql's line numbers stay those of the set.
                    self._emit(buf[out:k], out_line)
                    if action is not None:
                        self.events.append(action)
                    elif stop < end:
                        self.events.append(("sql", b"\n"))
                    i = min(stop + 1, end)
                    if stop < end:
                        line += 1
                        line_start = i
                    out, out_line = i, line
                else:
                    match = _WORD.match(buf, k)
                    if match.end() == end and not final and end - k < MAX_TOKEN:
                        need_more = True
                    else:
                        self._word(match.group(0), match.end())
                        i = match.end()
            elif state == SQUOTE or state == DQUOTE:
                quote = b"'" if state == SQUOTE else b'"'
                k = buf.find(quote, i)
                if k < 0:
                    line += buf.count(b"\n", i, end)
                    i = end
                elif k + 1 >= end and not final:
                    line += buf.count(b"\n", i, k)
                    i = k
                    need_more = True
                elif buf[k + 1:k + 2] == quote:
                    line += buf.count(b"\n", i, k)
                    i = k + 2
                else:
                    line += buf.count(b"\n", i, k)
                    i = k + 1
                    self.state = NEUTRAL
            elif state == ESTRING:
                match = _ESTRING_STOP.search(buf, i)
                if not match:
                    line += buf.count(b"\n", i, end)
                    i = end
                    continue
                k = match.start()
                line += buf.count(b"\n", i, k)
                i = k
                if k + 1 >= end and not final:
                    need_more = True
                elif buf[k:k + 1] == b"\\":
                    line += buf.count(b"\n", k + 1, k + 2)
                    i = k + 2
                elif buf[k + 1:k + 2] == b"'":
                    i = k + 2
                else:
                    i = k + 1
                    self.state = NEUTRAL
            elif state == DOLLAR:
                k = buf.find(self.dollar, i)
                if k < 0:
                    keep = max(i, end - len(self.dollar) + 1)
                    line += buf.count(b"\n", i, keep)
                    i = keep
                    need_more = not final
                    if final:
                        i = end
                else:
                    line += buf.count(b"\n", i, k)
                    i = k + len(self.dollar)
                    self.state = NEUTRAL
                    self.dollar = None
            elif state == LINE_COMMENT:
                k = buf.find(b"\n", i)
                if k < 0:
                    i = end
                else:
                    i = k
                    self.state = NEUTRAL
            elif state == BLOCK_COMMENT:
                match = _BLOCK_STOP.search(buf, i)
                if not match:
                    keep = end - 1 if (not final and buf.endswith((b"/", b"*"))) else end
                    keep = max(i, keep)
                    line += buf.count(b"\n", i, keep)
                    i = keep
                    need_more = keep < end
                    continue
                k = match.start()
                line += buf.count(b"\n", i, k)
                i = k + 2
                self.depth += 1 if match.group(0) == b"/*" else -1
                if self.depth == 0:
                    self.state = NEUTRAL
            else:  # COPY_DATA
                if i != line_start:
                    # In the middle of a data line: skip to its end.
                    k = buf.find(b"\n", i)
                    if k < 0:
                        i = end
                    else:
                        line += 1
                        i = line_start = k + 1
                    continue
                ends = _copy_end(buf[i:i + 4], final)
                if ends is None:
                    need_more = True
                elif ends:
                    self.state = NEUTRAL
                    i += 2
                else:
                    # Jump to the next line that starts with "\." (found at C speed).
                    k = buf.find(b"\n\\.", i)
                    if k < 0:
                        k = buf.rfind(b"\n", i)
                        if k < 0:
                            i = end
                            continue
                    line += buf.count(b"\n", i, k + 1)
                    i = line_start = k + 1
        self._emit(buf[out:i], out_line)
        self.buf = buf[i:]
        self.line = line
        self.line_start = (line_start == i)
        self.ctx = (self.ctx + buf[max(0, i - CONTEXT):i])[-CONTEXT:]
        events, self.events = self.events, []
        return events

    # ------------------------------------------------------------------ helpers

    def _token(self):
        """A token other than a word: the statement is no longer empty and no word precedes."""
        self.stmt_empty = False
        self.prev_word = None

    def _run_before(self, buf, k):
        """The identifier characters right before ``buf[k]`` (at most CONTEXT of them)."""
        prefix = buf[k - CONTEXT:k] if k >= CONTEXT else self.ctx[-(CONTEXT - k):] + buf[:k]
        return prefix[len(prefix.rstrip(_IDENT_BYTES)):]

    def _word(self, word, end):
        lower = word.lower()
        if self.stmt_empty:
            self.stmt_copy = lower == b"copy"
            self.stmt_empty = False
        elif self.stmt_copy and self.prev_word == b"from" and lower == b"stdin":
            self.from_stdin = True
        self.prev_word = lower

    def _meta(self, text, at_line_start, line):
        """Judge one backslash command line; return an event, None to drop it, or raise."""
        whole = at_line_start and self.stmt_empty and self.paren == 0
        if whole and _KEY_LINE.match(text):
            return None
        if whole and self.allow_connect:
            if _ENCODING_LINE.match(text):
                return None
            name = _connect_name(text)
            if name is not None:
                try:
                    decoded = name.decode("utf-8")
                except UnicodeDecodeError:
                    decoded = None
                if decoded and "\n" not in decoded and "\r" not in decoded and len(name) <= 63:
                    return ("connect", decoded, line)
        command = _COMMAND_NAME.match(text)
        raise refused(_decode(command.group(0) if command else text[:1]), line)


def split_statements(data, allow_connect=True):
    """Split a whole (small) script into its top-level statements, as str, meta-command lines dropped."""
    script = PsqlScript(allow_connect=allow_connect, statements=True)
    statements = []
    current = []
    size = 0
    for event in script.feed(data) + script.finish():
        if event[0] == "sql":
            current.append(event[1])
            size += len(event[1])
            if size > MAX_STATEMENT:
                raise ScriptError("A statement of the set's database entries is larger than %d bytes." % MAX_STATEMENT)
        elif event[0] == "end":
            statements.append(b"".join(current).decode("utf-8", "replace"))
            current, size = [], 0
    rest = b"".join(current).decode("utf-8", "replace")
    if rest.strip():
        statements.append(rest)
    return statements


# ---------------------------------------------------------------------- replay

LOG_LINE = re.compile(r"psql:<stdin>:(\d+): (ERROR|FATAL|PANIC|error|fatal):\s*(.*)\Z", re.S)
CLIENT_FAILURE = re.compile(r"(psql: error: |FATAL:|PANIC:|server closed the connection|connection to server)")
MAX_LOG_LINE = 64 * 1024


class ReplayError(LifeboatError):
    """A psql of the replay failed or stopped reading; ``session`` tells which."""

    def __init__(self, message, session=None):
        super(ReplayError, self).__init__(message)
        self.session = session


class Session(object):
    """One restricted psql of a replay, on one database."""

    def __init__(self, db, first_line, proc, log):
        self.db = db
        self.first_line = first_line   # line of the set that psql reads as its line 2
        self.proc = proc
        self.log = log                 # psql's stderr, spooled whole
        self.returncode = None

    def set_line(self, psql_line):
        """The line of the set that psql calls ``psql_line`` (its line 1 is the \\restrict line)."""
        return self.first_line + psql_line - 2

    def messages(self):
        """(set line or None, kind, first line of the message) for every error psql reported, read as a stream."""
        self.log.flush()
        self.log.seek(0)
        at_start = True
        while True:
            raw = self.log.readline(MAX_LOG_LINE)
            if not raw:
                return
            start, at_start = at_start, raw.endswith(b"\n")
            if not start:
                continue
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            match = LOG_LINE.match(text)
            if match:
                yield self.set_line(int(match.group(1))), match.group(2), text
            elif CLIENT_FAILURE.search(text):
                yield None, "FATAL", text


class Replay(object):
    """Replays a psql script from a set, fed block by block.

    Each psql starts with ``\\restrict KEY`` (a fresh random key) on its stdin
    before any byte of the set, so that psql refuses meta-commands; the script
    goes through :class:`PsqlScript` first. With ``allow_connect`` (pg_dumpall
    sets) a ``\\connect`` of the set ends the current psql and starts a new one
    on that database, through ``argv_for(db)`` and ``env_for(db)``: the
    caller's host, port and user, the set's database name only. Every psql's
    exit status is checked; its stderr is spooled to a temporary file for
    :meth:`Session.messages`.
    """

    def __init__(self, argv_for, env_for, first_db, allow_connect=False, spool_dir=None, runner=None, pass_fds=()):
        self.argv_for = argv_for
        self.env_for = env_for
        self.spool_dir = spool_dir
        self.runner = runner or Runner()
        self.pass_fds = tuple(pass_fds or ())
        self.script = PsqlScript(allow_connect=allow_connect)
        self.sessions = []
        self.current = None
        self.next_db = first_db
        self.next_line = 1

    @property
    def started(self):
        return bool(self.sessions)

    def _start(self):
        log = tempfile.TemporaryFile(dir=self.spool_dir)
        try:
            proc = self.runner.popen(self.argv_for(self.next_db), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=log, env=self.env_for(self.next_db), pass_fds=self.pass_fds)
        except BaseException:
            log.close()
            raise
        session = Session(self.next_db, self.next_line, proc, log)
        self.sessions.append(session)
        self.current = session
        self._write(b"\\restrict %s\n" % secrets.token_hex(32).encode("ascii"))
        return session

    def _write(self, data):
        fd = self.current.proc.stdin.fileno()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except BrokenPipeError:
            session = self._end()
            raise ReplayError("psql on %s stopped reading the set (exit status %s)."
                              % (session.db, session.returncode), session)
        finally:
            view.release()

    def _end(self):
        session, self.current = self.current, None
        try:
            session.proc.stdin.close()
        except OSError:
            pass
        session.returncode = session.proc.wait()
        return session

    def _handle(self, event):
        if event[0] == "sql":
            if self.current is None:
                self._start()
            self._write(event[1])
        elif event[0] == "connect":
            if self.current is not None:
                self._check(self._end())
            self.next_db, self.next_line = event[1], event[2] + 1

    def _check(self, session):
        if session.returncode != 0:
            raise ReplayError("psql on %s failed (exit status %s)." % (session.db, session.returncode), session)

    def feed(self, block):
        for event in self.script.feed(block):
            self._handle(event)

    def finish(self):
        """Flush the script, end the last psql, check it; returns the sessions."""
        for event in self.script.finish():
            self._handle(event)
        if self.current is not None:
            self._check(self._end())
        return self.sessions

    def abort(self):
        """Stop the running psql at once (its open transaction is rolled back by the server)."""
        session, self.current = self.current, None
        if session is not None:
            try:
                session.proc.kill()
            except OSError:
                pass
            try:
                session.proc.stdin.close()
            except OSError:
                pass
            session.returncode = session.proc.wait()

    def close(self):
        self.abort()
        for session in self.sessions:
            session.log.close()
