-- lifeboat.backup test harness (scripts/harness/pg.py): every user table, as schema|name lines
-- Run by psql with -A -t.
SELECT schemaname, tablename FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
  AND schemaname NOT LIKE 'pg\_%'
ORDER BY schemaname COLLATE "C", tablename COLLATE "C";
