-- lifeboat.backup test harness (scripts/harness/pg.py): one batch of documents, ids :lo to :hi, for customers 1 to :customers
-- Run by psql with -v lo=N -v hi=N -v customers=N.
INSERT INTO documents (id, customer_id, title, attrs, content, body, created_at)
SELECT g,
       CASE WHEN random() < 0.05 THEN NULL ELSE 1 + floor(random() * :customers)::bigint END,
       lifeboat_gen.pick(ARRAY['Rechnung', 'Facture', 'Umowa', 'Отчёт', '報告書', 'Πρόταση',
                               'Kvittering', 'Invoice', 'Nota fiscal']) || ' №' || g || ' — '
         || lifeboat_gen.pick(ARRAY['Zürich', 'Kraków', 'São Paulo', 'Århus', 'Москва', '東京',
                                    'Αθήνα', 'Paris', 'Reykjavík', 'Málaga']),
       CASE WHEN random() < 0.1 THEN NULL ELSE jsonb_build_object(
           'kind', lifeboat_gen.pick(ARRAY['invoice', 'contract', 'report', 'receipt', 'scan']),
           'pages', 1 + floor(random() * 40)::int,
           'score', round(random()::numeric, 4),
           'signed', random() < 0.5,
           'tags', jsonb_build_array(lifeboat_gen.pick(ARRAY['urgent', 'archiv', 'privé', 'важно']),
                                     lifeboat_gen.pick(ARRAY['2021', '2022', '2023', 'Q4'])),
           'reviewer', CASE WHEN random() < 0.3 THEN NULL
                            ELSE lifeboat_gen.pick(ARRAY['Grüße', 'Łucja', 'Ἑλένη', '花子']) END,
           'checksum', md5(g::text)) END,
       CASE WHEN random() < 0.05 THEN NULL ELSE lifeboat_gen.rbytes(200 + (random() * 800)::int) END,
       CASE WHEN random() < 0.1 THEN NULL ELSE lifeboat_gen.rtext(200 + (random() * 700)::int) END,
       timestamptz '2020-01-01 00:00:00+00' + random() * interval '1400 days'
FROM generate_series(:lo, :hi) g;
