-- More changes: rows in the MyISAM table, the new table and the non-ASCII database.
USE shop;
UPDATE orders SET amount = amount + 1 WHERE id % 17 = 0;
DELETE FROM returns WHERE id > 40;
INSERT INTO audit_log (what) VALUES ('second change');
USE `café_ünï`;
UPDATE `menü` SET data = JSON_SET(data, '$.vegan', true) WHERE id % 2 = 0;
DELETE FROM `menü` WHERE id > 90;
