-- lifeboat.backup test harness (scripts/harness/pg.py): row count and md5 of one table's rows,
-- independent of physical order and of the session's settings.
-- Run by psql with -A -t -v schema=NAME -v table=NAME; prints count|md5 on its last line.
SET TimeZone = 'UTC';
SET DateStyle = 'ISO, MDY';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 1;
SET bytea_output = 'hex';
SET work_mem = '256MB';
SELECT count(*), coalesce(md5(string_agg(h, '' ORDER BY h COLLATE "C")), '')
FROM (SELECT md5(t::text) AS h FROM :"schema".:"table" t) s;
