# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reader of untrusted psql scripts, and the restricted psql replay built on it."""

from __future__ import annotations

import os
import re
import sys
import time

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _psqlscript
from ansible_collections.lifeboat.backup.plugins.module_utils._psqlscript import PsqlScript, ScriptError

# What pg_dumpall 15.18 writes, trimmed: its own \restrict lines, \connect in every form.
DUMPALL = b"""--
-- PostgreSQL database cluster dump
--

\\restrict EvVoMY6ztEVcffGAidTjxBMQXsqbJABOYog9pk5m4ebgdHvAOgO0GbnHHFlWigR

SET standard_conforming_strings = on;
CREATE ROLE "we""ird";

\\unrestrict EvVoMY6ztEVcffGAidTjxBMQXsqbJABOYog9pk5m4ebgdHvAOgO0GbnHHFlWigR

\\connect template1

\\restrict IAu5FbHF
COMMENT ON DATABASE template1 IS 'line one
\\connect not_a_command
line three';
\\unrestrict IAu5FbHF
CREATE DATABASE "a=b" WITH TEMPLATE = template0;
\\unrestrict x2Yk1Iau
\\encoding SQL_ASCII
\\connect -reuse-previous=on "dbname='a=b \\\\ it\\'s ""q""'"
\\restrict x2Yk1Iau
CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $fn$
\\connect inside_dollar_quotes
SELECT 'x' $fn$;
/* a comment /* nested */
\\connect inside_a_comment */
COPY public.t (a, b) FROM stdin;
1\tline\\\\with\\tescapes
\\N\t\\connect inside_copy_data
\\.
SELECT E'it\\'s \\\\
\\connect inside_an_escape_string';
\\unrestrict x2Yk1Iau
\\connect "Mixed.Case"
SELECT 1;
\\connect postgres
SELECT 2;
"""


def run(data, chunk=None, **kwargs):
    """Feed ``data`` in chunks of ``chunk`` bytes; return the events with adjacent sql merged."""
    script = PsqlScript(**kwargs)
    events = []
    pieces = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        events += script.feed(piece)
    events += script.finish()
    merged = []
    for event in events:
        if event[0] == "sql" and merged and merged[-1][0] == "sql":
            merged[-1] = ("sql", merged[-1][1] + event[1])
        else:
            merged.append(event)
    return merged


@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 5, 7, 64, 4096])
def test_dumpall_is_split_at_its_connect_lines_only(chunk):
    events = run(DUMPALL, chunk, allow_connect=True)
    connects = [e for e in events if e[0] == "connect"]
    assert connects == [("connect", "template1", 12), ("connect", "a=b \\ it's \"q\"", 22),
                        ("connect", "Mixed.Case", 36), ("connect", "postgres", 38)]
    sql = b"".join(e[1] for e in events if e[0] == "sql")
    # pg_dump's key lines and \encoding become empty lines, the connect lines go; the rest passes unchanged
    lines = DUMPALL.split(b"\n")
    blanked = [5, 10, 14, 18, 20, 21, 23, 35]
    assert all(re.match(rb"\\(restrict|unrestrict|encoding) ", lines[n - 1]) for n in blanked)
    kept = [(n, line) for n, line in enumerate(lines, 1) if n not in (12, 22, 36, 38)]
    expected = b"\n".join(b"" if n in blanked else line for n, line in kept)
    assert sql == expected
    assert b"\\connect inside_dollar_quotes" in sql
    assert b"\\connect inside_copy_data" in sql


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_plain_scripts_may_not_connect(chunk):
    with pytest.raises(ScriptError) as info:
        run(DUMPALL, chunk)
    assert info.value.command == "\\connect"
    assert info.value.line == 12


@pytest.mark.parametrize("text, command, line", [
    (b"SELECT 1;\n\\! id > /tmp/x\n", "\\!", 2),
    (b"\\copy t from '/etc/shadow'\n", "\\copy", 1),
    (b"SELECT 1;\n\n\\o /some/file\nSELECT 2;\n", "\\o", 3),
    (b"\\i /etc/passwd\n", "\\i", 1),
    (b"\\setenv PAGER 'sh -c id'\n", "\\setenv", 1),
    (b"SELECT 1 \\g /tmp/x\n", "\\g", 1),
    (b"SELECT 'a';\\gexec\n", "\\gexec", 1),
    (b"SELECT 'a\nb' \\gset\n", "\\gset", 2),
    (b"SELECT 1; \\restrict abc\n", "\\restrict", 1),
    (b"\\restrict abc `id`\n", "\\restrict", 1),
    (b"\\connect host=evil dbname=x\n", "\\connect", 1),
    (b"\\c x\n", "\\c", 1),
    (b"SELECT /* c */ 1;\n\\\\\n", "\\\\", 2),
    (b"COPY t FROM stdin;\nrow\n\\.\n\\! id\n", "\\!", 4),
    (b"SELECT $$a$$ || $q$\n$q$;\n\\lo_export 1 /tmp/x\n", "\\lo_export", 3),
])
def test_meta_commands_are_refused_with_their_name(text, command, line):
    with pytest.raises(ScriptError) as info:
        run(text, allow_connect=True)
    assert info.value.command == command
    assert info.value.line == line
    assert str(info.value) == (
        "The set's SQL holds the psql meta-command %s at line %d; a restore never runs client-side commands "
        "from a set, so it refuses this one (the set may have been tampered with)." % (command, line))


@pytest.mark.parametrize("text, forbidden", [
    # psql (before the 2026 fixes) runs backquotes in \unrestrict's argument even in restricted mode: the
    # bytes are refused wherever they stand, since psql may read a failed COPY's data as commands
    (b"COPY nonexistent FROM stdin;\n\\unrestrict `touch /tmp/x`\n\\.\n", "\\unrestrict"),
    (b"SELECT '\\unrestrict `id`';\n", "\\unrestrict"),
    (b"SELECT $$\n\\unrestrict `id`\n$$;\n", "\\unrestrict"),
    (b"-- \\unrestrict `id`\n", "\\unrestrict"),
    # psql re-reads an interpolated variable's value as script text
    (b"DO $$BEGIN RAISE EXCEPTION E'\\x5cunrestrict `id`'; END$$;\nSELECT :LAST_ERROR_MESSAGE;\n",
     ":LAST_ERROR_MESSAGE"),
    (b"SELECT 'x' || :DBNAME;\n", ":DBNAME"),
])
def test_what_restricted_psql_would_still_run_is_refused_anywhere(text, forbidden):
    for chunk in (None, 1, 4):
        with pytest.raises(ScriptError) as info:
            run(text, chunk, allow_connect=True)
        assert info.value.command == forbidden


@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_a_dollar_inside_an_identifier_opens_no_quote(chunk):
    # psql reads a$b$ as one identifier, 1$a$ as a number and a dollar quote
    with pytest.raises(ScriptError) as info:
        run(b"SELECT 1;\nSELECT a$b$ FROM t;\n\\! id\n", chunk)
    assert info.value.command == "\\!"
    assert run(b"SELECT 1;\nSELECT 1$a$\n\\! in a quote\n$a$;\n", chunk) == [
        ("sql", b"SELECT 1;\nSELECT 1$a$\n\\! in a quote\n$a$;\n")]


@pytest.mark.parametrize("chunk", [None, 1, 2])
def test_an_escape_string_is_told_from_a_word_ending_in_e(chunk):
    # E'...' takes backslash escapes; a word ending in e followed by '...' does not exist, but 'x' after
    # the word "the" is a plain string in which a backslash is just a backslash
    assert run(b"SELECT 1;\nSELECT E'\\'';\n", chunk) == [("sql", b"SELECT 1;\nSELECT E'\\'';\n")]
    with pytest.raises(ScriptError):
        run(b"SELECT 1;\nSELECT note'\\';\n\\! id\n", chunk)


def test_quoted_variable_forms_and_casts_pass():
    text = b"SELECT 'a'::text, :'DBNAME', :\"DBNAME\", a[1:2], $1 FROM t;\n"
    assert run(text) == [("sql", text)]


def test_pg_dump_key_lines_only_at_a_statement_start():
    # inside a statement psql would take it as part of the query: refuse rather than guess
    with pytest.raises(ScriptError):
        run(b"SELECT 1\n\\restrict abc\n;\n")
    assert run(b"SELECT 1;\n\\restrict abc\n") == [("sql", b"SELECT 1;\n\n")]


@pytest.mark.parametrize("chunk", [None, 1, 2, 3])
def test_copy_data_ends_only_at_a_line_that_is_exactly_backslash_dot(chunk):
    text = (b"COPY t (a) FROM stdin;\n\\.x\n \\.\nx\\.\n\\.\r\nSELECT 1;\n"
            b"copy t from STDIN;\n\\! not a command\n\\.\n")
    assert run(text, chunk) == [("sql", text)]
    with pytest.raises(ScriptError) as info:
        run(text + b"\\! now a command\n", chunk)
    assert info.value.line == 10


def test_copy_to_stdout_is_no_copy_in():
    with pytest.raises(ScriptError):
        run(b"COPY t TO stdout;\n\\! id\n")


def test_statements_are_split_at_top_level_semicolons():
    text = (b"SET a = 1;\nCOMMENT ON DATABASE d IS 'x;\ny';\n\\connect d\nCREATE RULE r AS ON INSERT TO t DO "
            b"(INSERT INTO u VALUES (1); INSERT INTO u VALUES (2));\nSELECT $$;$$;")
    assert _psqlscript.split_statements(text) == [
        "SET a = 1;", "\nCOMMENT ON DATABASE d IS 'x;\ny';",
        "\nCREATE RULE r AS ON INSERT TO t DO (INSERT INTO u VALUES (1); INSERT INTO u VALUES (2));",
        "\nSELECT $$;$$;"]


def test_memory_stays_bounded_and_the_reader_is_fast():
    row = b"12345\tsome text with a \\\\ backslash\t\\N\n"
    block = row * (1024 * 1024 // len(row))
    script = PsqlScript()
    started = time.monotonic()
    script.feed(b"COPY t (a, b, c) FROM stdin;\n")
    for dummy in range(32):
        events = script.feed(block)
        assert sum(len(e[1]) for e in events) >= len(block) - 64
        assert len(script.buf) < 64
    events = script.feed(b"\\.\nSELECT 1;\n") + script.finish()
    assert time.monotonic() - started < 5
    assert events[-1] == ("sql", b"\\.\nSELECT 1;\n") or b"SELECT 1;" in b"".join(e[1] for e in events)


def test_an_overlong_unfinished_line_is_not_kept():
    script = PsqlScript()
    script.feed(b"SELECT '" + b"x" * (3 * _psqlscript.MAX_LINE))
    assert len(script.buf) <= 1


# ---------------------------------------------------------------------- replay with a stand-in psql

FAKE_PSQL = r'''#!%(python)s
import os, sys
argv = sys.argv[1:]
db = argv[argv.index("-d") + 1]
data = b""
mode = os.environ.get("FAKE_MODE", "")
if mode == "quit":
    sys.exit(2)
data = sys.stdin.buffer.read()
with open(os.path.join(%(log)r, "%%d.in" %% os.getpid()), "wb") as handle:
    handle.write(db.encode() + b"\n" + data)
sys.stderr.write("psql:<stdin>:3: ERROR:  boom\nDETAIL:  more\n" if b"fail" in data else "")
sys.exit(3 if b"fail" in data else 0)
'''


@pytest.fixture
def fake_psql(tmp_path):
    log = tmp_path / "log"
    log.mkdir()
    path = tmp_path / "psql"
    path.write_text(FAKE_PSQL % {"python": sys.executable, "log": str(log)})
    path.chmod(0o755)

    def inputs():
        found = []
        for name in sorted(os.listdir(str(log)), key=lambda n: os.path.getmtime(os.path.join(str(log), n))):
            with open(os.path.join(str(log), name), "rb") as handle:
                db, data = handle.read().split(b"\n", 1)
            found.append((db.decode(), data))
        return found

    return str(path), inputs


def replay(fake, data, env=None, allow_connect=True, chunk=5):
    path, dummy = fake
    seen = []

    def argv_for(db):
        seen.append(db)
        return [path, "-d", "dbname=" + db, "-f", "-"]

    def env_for(db):
        return dict(os.environ, **(env or {}))

    run_ = _psqlscript.Replay(argv_for, env_for, "postgres", allow_connect=allow_connect)
    try:
        for i in range(0, len(data), chunk):
            run_.feed(data[i:i + chunk])
        run_.finish()
    except _psqlscript.ReplayError as exc:
        exc.messages = list(exc.session.messages())
        raise
    finally:
        sessions = list(run_.sessions)
        run_.close()
    return seen, sessions


def test_replay_runs_one_restricted_psql_per_database(fake_psql):
    dummy, inputs = fake_psql
    seen, sessions = replay(fake_psql, b"SELECT 1;\n\\connect app\nSELECT 2;\n\\connect \"b c\"\nSELECT 3;\n")
    assert seen == ["postgres", "app", "b c"]
    got = inputs()
    assert [db for db, data in got] == ["dbname=postgres", "dbname=app", "dbname=b c"]
    keys = set()
    for (db, data), body in zip(got, [b"SELECT 1;\n", b"SELECT 2;\n", b"SELECT 3;\n"]):
        first, rest = data.split(b"\n", 1)
        assert re.match(rb"^\\restrict [0-9a-f]{64}$", first)
        keys.add(first)
        assert rest == body
    assert len(keys) == 3  # a fresh key per psql
    assert [s.returncode for s in sessions] == [0, 0, 0]
    assert [s.first_line for s in sessions] == [1, 3, 5]


def test_replay_checks_every_exit_status_and_maps_lines(fake_psql):
    with pytest.raises(_psqlscript.ReplayError) as info:
        replay(fake_psql, b"SELECT 1;\n\\connect app\nSELECT 2;\n-- fail\nSELECT 3;\n\\connect other\nSELECT 4;\n")
    session = info.value.session
    assert session.db == "app" and session.returncode == 3
    assert info.value.messages == [(4, "ERROR", "psql:<stdin>:3: ERROR:  boom")]


def test_replay_stops_when_psql_stops_reading(fake_psql):
    with pytest.raises(_psqlscript.ReplayError) as info:
        replay(fake_psql, b"SELECT 1;\n" * 300000, env={"FAKE_MODE": "quit"}, chunk=1024 * 1024)
    assert info.value.session.returncode == 2


def test_replay_refuses_before_psql_sees_the_command(fake_psql):
    dummy, inputs = fake_psql
    with pytest.raises(ScriptError):
        replay(fake_psql, b"SELECT 1;\n\\! touch /tmp/x\n", allow_connect=False, chunk=1000)
    assert all(b"touch" not in data for db, data in inputs())
