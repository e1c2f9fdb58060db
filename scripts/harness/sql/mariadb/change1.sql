-- Changes between backups: an UPDATE, a DELETE and a new table.
USE shop;
UPDATE customers SET email = CONCAT('changed-', id, '@example.org') WHERE id % 10 = 0;
DELETE FROM orders WHERE id % 13 = 0;
CREATE TABLE returns (id INT PRIMARY KEY, order_id INT, reason VARCHAR(100)) ENGINE=InnoDB;
INSERT INTO returns SELECT seq, seq * 3, CONCAT('reason ', seq) FROM seq_1_to_50;
INSERT INTO orders (customer_id, amount, note) VALUES (2, 99.99, 'after first backup');
