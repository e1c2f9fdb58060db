-- lifeboat.backup test harness (scripts/harness/pg.py): pg_database_size|size of the user relations
-- Run by psql with -A -t.
SELECT pg_database_size(current_database()),
       (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm'));
