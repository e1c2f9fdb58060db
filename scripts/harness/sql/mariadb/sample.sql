-- Sample data for the MariaDB round trips: two databases, one of them with a non-ASCII name.
-- InnoDB and MyISAM tables, JSON and BLOB columns, a view, a procedure, a function and triggers.
CREATE DATABASE IF NOT EXISTS shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE DATABASE IF NOT EXISTS `café_ünï` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE shop;
CREATE TABLE customers (
  id INT PRIMARY KEY AUTO_INCREMENT,
  name VARCHAR(100) NOT NULL,
  email VARCHAR(200),
  prefs JSON CHECK (JSON_VALID(prefs)),
  created TIMESTAMP NOT NULL DEFAULT '2026-01-01 00:00:00'
) ENGINE=InnoDB;
CREATE TABLE orders (
  id INT PRIMARY KEY AUTO_INCREMENT,
  customer_id INT NOT NULL,
  amount DECIMAL(12,2) NOT NULL,
  note TEXT,
  receipt BLOB,
  FOREIGN KEY (customer_id) REFERENCES customers(id)
) ENGINE=InnoDB;
CREATE TABLE audit_log (
  id INT PRIMARY KEY AUTO_INCREMENT,
  what VARCHAR(200) NOT NULL
) ENGINE=MyISAM;
INSERT INTO customers (name, email, prefs)
  SELECT CONCAT('customer ', seq, ' ', IF(seq % 7 = 0, 'Zoë Ångström', 'plain')),
         CONCAT('c', seq, '@example.com'),
         JSON_OBJECT('tier', seq % 3, 'tags', JSON_ARRAY('a', seq), 'note', 'naïve "quoted" \\ value')
  FROM seq_1_to_500;
INSERT INTO orders (customer_id, amount, note, receipt)
  SELECT 1 + seq % 500, seq * 1.25, REPEAT(CONCAT('line ', seq, '; '), 1 + seq % 5),
         UNHEX(SHA2(CONCAT('receipt', seq), 512))
  FROM seq_1_to_2000;
INSERT INTO orders (customer_id, amount, note, receipt) VALUES (1, 0, NULL, UNHEX('00FF00FF0A0D5C27'));
CREATE VIEW big_orders AS SELECT o.id, c.name, o.amount FROM orders o JOIN customers c ON c.id = o.customer_id
  WHERE o.amount > 2000;
DELIMITER //
CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW
BEGIN
  INSERT INTO audit_log (what) VALUES (CONCAT('order ', NEW.id));
END//
CREATE PROCEDURE customer_total(IN cid INT, OUT total DECIMAL(14,2))
BEGIN
  SELECT COALESCE(SUM(amount), 0) INTO total FROM orders WHERE customer_id = cid;
END//
CREATE FUNCTION tier_name(t INT) RETURNS VARCHAR(10) DETERMINISTIC
BEGIN
  RETURN ELT(t + 1, 'bronze', 'silver', 'gold');
END//
DELIMITER ;
INSERT INTO audit_log (what) VALUES ('seeded');
USE `café_ünï`;
CREATE TABLE `menü` (
  id INT PRIMARY KEY,
  `naïve` VARCHAR(50),
  data JSON
) ENGINE=InnoDB;
INSERT INTO `menü` SELECT seq, CONCAT('crème brûlée ', seq), JSON_OBJECT('kcal', seq * 10) FROM seq_1_to_100;
