-- lifeboat.backup test harness (scripts/harness/pg.py): sequences, constraints, indexes and a view; drops the generator schema
-- Run by psql.
SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM customers), false);
SELECT setval(pg_get_serial_sequence('orders', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM orders), false);
SELECT setval(pg_get_serial_sequence('documents', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM documents), false);
SET maintenance_work_mem = '256MB';
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk
    FOREIGN KEY (customer_id) REFERENCES customers (id);
ALTER TABLE orders ADD CONSTRAINT orders_product_fk
    FOREIGN KEY (product_id) REFERENCES products (id);
ALTER TABLE documents ADD CONSTRAINT documents_customer_fk
    FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE SET NULL;
CREATE UNIQUE INDEX customers_email_key ON customers (lower(email));
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_ordered_at_idx ON orders (ordered_at);
CREATE INDEX documents_kind_idx ON documents ((attrs ->> 'kind'));
CREATE VIEW customer_order_totals AS
    SELECT c.id, c.name, c.country, count(o.id) AS orders, coalesce(sum(o.amount), 0) AS total
    FROM customers c LEFT JOIN orders o ON o.customer_id = c.id
    GROUP BY c.id, c.name, c.country;
COMMENT ON TABLE documents IS 'Sample documents: jsonb, bytea, NULLs and non-ASCII text — ünïcødé ✓';
DROP SCHEMA lifeboat_gen CASCADE;
ANALYZE;
