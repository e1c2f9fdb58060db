-- lifeboat.backup test harness (scripts/harness/pg.py): one batch of orders, ids :lo to :hi, for customers 1 to :customers
-- Run by psql with -v lo=N -v hi=N -v customers=N.
INSERT INTO orders (id, customer_id, product_id, quantity, amount, status, ordered_at,
                    shipped_at, note)
SELECT g, c, 1 + floor(random() * 1000)::int, q, round((q * (1 + random() * 500))::numeric, 2),
       s, t,
       CASE WHEN s IN ('shipped', 'delivered') THEN t + random() * interval '10 days' END,
       CASE WHEN random() < 0.5 THEN NULL ELSE lifeboat_gen.rtext(20 + (random() * 120)::int) END
FROM (SELECT g,
             1 + floor(random() * :customers)::bigint AS c,
             1 + floor(random() * 9)::int AS q,
             lifeboat_gen.pick(ARRAY['new', 'paid', 'shipped', 'delivered', 'delivered',
                                     'cancelled']) AS s,
             timestamptz '2020-01-01 00:00:00+00' + random() * interval '1400 days' AS t
      FROM generate_series(:lo, :hi) g) x;
