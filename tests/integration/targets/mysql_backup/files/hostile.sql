-- A payload that empties a table, then tries a client command: the sandbox must stop it,
-- and the replaced database must come back as it was.
CREATE DATABASE IF NOT EXISTS `shop`;
USE `shop`;
CREATE TABLE IF NOT EXISTS orders (id INT);
DELETE FROM orders;
\! touch /tmp/lifeboat-it/mysql_backup/pwned
SELECT 'not reached';
