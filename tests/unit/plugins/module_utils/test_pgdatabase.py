# -*- coding: utf-8 -*-
# Copyright: lifeboat.backup contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The database entries of an archive: parsed strictly, rebuilt for the name they are restored under."""

from __future__ import annotations

import pytest

from ansible_collections.lifeboat.backup.plugins.module_utils import _pgdatabase

# What pg_restore 15.18 --create renders for a database "a=b" (trimmed of its SET preamble).
RENDERED = b"""--
-- PostgreSQL database dump
--

\\restrict mHl5qOCy

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: a=b; Type: DATABASE; Schema: -; Owner: appowner
--

CREATE DATABASE "a=b" WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = libc LOCALE = 'C.UTF-8';


ALTER DATABASE "a=b" OWNER TO appowner;

\\unrestrict mHl5qOCy
\\encoding SQL_ASCII
\\connect -reuse-previous=on "dbname='a=b'"
\\restrict mHl5qOCy

SET client_encoding = 'UTF8';

COMMENT ON DATABASE "a=b" IS 'it''s a
multi-line comment; with a semicolon';

ALTER DATABASE "a=b" CONNECTION LIMIT = 7;
ALTER DATABASE "a=b" SET work_mem TO '7MB';
ALTER DATABASE "a=b" SET search_path TO 'x, "y z"', 'public';
ALTER DATABASE "a=b" SET "my.setting" TO '1';
ALTER ROLE reader IN DATABASE "a=b" SET statement_timeout TO '5s';

REVOKE CONNECT,TEMPORARY ON DATABASE "a=b" FROM PUBLIC;
GRANT TEMPORARY ON DATABASE "a=b" TO PUBLIC;
GRANT CONNECT ON DATABASE "a=b" TO reader;
SET SESSION AUTHORIZATION reader;
GRANT CONNECT,TEMPORARY ON DATABASE "a=b" TO "we""ird" WITH GRANT OPTION;
RESET SESSION AUTHORIZATION;

\\unrestrict mHl5qOCy
"""


def test_a_whole_database_is_rebuilt_for_another_name():
    entries = _pgdatabase.parse(RENDERED)
    assert entries.name == "a=b"
    assert entries.skipped == []
    assert entries.create_sql('new "é"') == (
        'CREATE DATABASE "new ""é""" TEMPLATE template0 ENCODING \'UTF8\' LOCALE \'C.UTF-8\';')
    assert entries.sql('new "é"') == [
        'ALTER DATABASE "new ""é""" OWNER TO "appowner";',
        'COMMENT ON DATABASE "new ""é""" IS \'it\'\'s a\nmulti-line comment; with a semicolon\';',
        'ALTER DATABASE "new ""é""" CONNECTION LIMIT 7;',
        'ALTER DATABASE "new ""é""" SET "work_mem" TO \'7MB\';',
        'ALTER DATABASE "new ""é""" SET "search_path" TO \'x, "y z"\', \'public\';',
        'ALTER DATABASE "new ""é""" SET "my.setting" TO \'1\';',
        'ALTER ROLE "reader" IN DATABASE "new ""é""" SET "statement_timeout" TO \'5s\';',
        'REVOKE CONNECT,TEMPORARY ON DATABASE "new ""é""" FROM PUBLIC;',
        'GRANT TEMPORARY ON DATABASE "new ""é""" TO PUBLIC;',
        'GRANT CONNECT ON DATABASE "new ""é""" TO "reader";',
        'SET SESSION AUTHORIZATION "reader";',
        'GRANT CONNECT,TEMPORARY ON DATABASE "new ""é""" TO "we""ird" WITH GRANT OPTION;',
        'RESET SESSION AUTHORIZATION;',
    ]


def test_no_owner_keeps_settings_and_comment_only():
    entries = _pgdatabase.parse(RENDERED)
    sql = entries.sql("n", no_owner=True)
    assert sql == [
        'COMMENT ON DATABASE "n" IS \'it\'\'s a\nmulti-line comment; with a semicolon\';',
        'ALTER DATABASE "n" CONNECTION LIMIT 7;',
        'ALTER DATABASE "n" SET "work_mem" TO \'7MB\';',
        'ALTER DATABASE "n" SET "search_path" TO \'x, "y z"\', \'public\';',
        'ALTER DATABASE "n" SET "my.setting" TO \'1\';',
    ]
    assert entries.not_carried(no_owner=True) == [
        'no_owner: owner "appowner" not carried',
        "no_owner: 1 per-role setting(s) not carried",
        "no_owner: 6 privilege statement(s) not carried",
    ]


@pytest.mark.parametrize("statement", [
    # another database
    'ALTER DATABASE postgres OWNER TO evil;',
    'GRANT ALL ON DATABASE postgres TO evil;',
    'ALTER ROLE evil IN DATABASE postgres SET search_path TO \'evil\';',
    # not a form pg_dump writes for a database
    'DROP DATABASE postgres;',
    'ALTER ROLE evil SUPERUSER;',
    'COPY (SELECT 1) TO PROGRAM \'id\';',
    'GRANT pg_execute_server_program TO evil;',
    'ALTER DATABASE "a=b" SET search_path TO DEFAULT;',
    'ALTER DATABASE "a=b" SET work_mem TO current_setting(\'x\');',
    'ALTER DATABASE "a=b" RENAME TO x;',
    'ALTER DATABASE "a=b" OWNER TO evil, other;',
    'COMMENT ON DATABASE "a=b" IS E\'\\x41\';',
    'COMMENT ON DATABASE "a=b" IS \'x\' || \'y\';',
    'GRANT SELECT ON DATABASE "a=b" TO evil;',
    'GRANT CONNECT ON DATABASE "a=b", postgres TO evil;',
    'GRANT CONNECT ON DATABASE "a=b" TO evil GRANTED BY x;',
    'SECURITY LABEL FOR selinux ON DATABASE "a=b" IS \'x\';',
    'CREATE DATABASE other;',
])
def test_anything_else_is_reported_and_not_run(statement):
    entries = _pgdatabase.parse(b'CREATE DATABASE "a=b" WITH TEMPLATE = template0;\n' + statement.encode() + b"\n")
    assert entries.sql("n") == []
    assert entries.skipped and entries.skipped[-1].startswith(statement.split(";")[-1].strip()[:10] or statement[:10])


@pytest.mark.parametrize("create, expected", [
    ("CREATE DATABASE d WITH TEMPLATE = template0 ENCODING = 'LATIN1' LC_COLLATE = 'de_DE' LC_CTYPE = 'de_DE';",
     "CREATE DATABASE \"n\" TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'de_DE' LC_CTYPE 'de_DE';"),
    ("CREATE DATABASE d WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE_PROVIDER = icu LOCALE = 'en_US.UTF-8' "
     "ICU_LOCALE = 'und-x-icu';",
     "CREATE DATABASE \"n\" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu LOCALE 'en_US.UTF-8' "
     "ICU_LOCALE 'und-x-icu';"),
])
def test_encoding_and_locale_are_carried(create, expected):
    assert _pgdatabase.parse(create.encode()).create_sql("n") == expected


@pytest.mark.parametrize("create", [
    "CREATE DATABASE d WITH TEMPLATE = mytemplate ENCODING = 'UTF8';",
    "CREATE DATABASE d WITH TEMPLATE = template0 TABLESPACE = fast;",
    "CREATE DATABASE d WITH TEMPLATE = template0 LOCALE_PROVIDER = evil;",
    "CREATE DATABASE d WITH TEMPLATE = template0 ENCODING = 'UTF8' LOCALE = current_user;",
])
def test_a_create_database_with_anything_more_is_not_carried(create):
    entries = _pgdatabase.parse(create.encode() + b"\nALTER DATABASE d OWNER TO x;\n")
    assert entries.name is None
    assert entries.create_sql("n") == 'CREATE DATABASE "n" TEMPLATE template0;'
    assert entries.sql("n") == []
    assert len(entries.skipped) == 2


def test_statements_are_judged_one_by_one():
    entries = _pgdatabase.parse(b'CREATE DATABASE "a=b";\nCOMMENT ON DATABASE "a=b" IS \'x\'; DROP DATABASE y; --\';\n')
    assert entries.sql("n") == ['COMMENT ON DATABASE "n" IS \'x\';']
    assert entries.skipped == ["DROP DATABASE y;"]


def test_nothing_rendered_is_nothing_carried():
    entries = _pgdatabase.parse(b"")
    assert entries.sql("n") == [] and entries.skipped == []
    assert entries.create_sql("n") == 'CREATE DATABASE "n" TEMPLATE template0;'
