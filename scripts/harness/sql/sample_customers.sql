-- lifeboat.backup test harness (scripts/harness/pg.py): one batch of customers, ids :lo to :hi
-- Run by psql with -v lo=N -v hi=N.
INSERT INTO customers (id, name, email, country, city, created_at, balance, notes)
SELECT g,
       lifeboat_gen.pick(ARRAY['Anna', 'José', 'Zoë', 'Łukasz', 'Søren', 'Ørjan', 'Chloé',
                               'Jürgen', 'Ἀλέξανδρος', 'Дмитрий', '太郎', 'Aisha', 'Mateo', 'Nguyễn'])
         || ' ' ||
       lifeboat_gen.pick(ARRAY['Müller', 'García', 'Kowalski', 'Østergaard', 'Dubois', 'Smith',
                               'Иванов', '山田', 'Papadopoulos', 'O''Brien', 'Nakamura', 'Çelik']),
       'user' || g || '@example.' || lifeboat_gen.pick(ARRAY['com', 'org', 'de', 'fr', 'jp']),
       lifeboat_gen.pick(ARRAY['DE', 'FR', 'PL', 'DK', 'NO', 'ES', 'JP', 'GR', 'RU', 'US', 'BR']),
       CASE WHEN random() < 0.1 THEN NULL ELSE
       lifeboat_gen.pick(ARRAY['Zürich', 'Kraków', 'São Paulo', 'Århus', 'Москва', '東京',
                               'Αθήνα', 'Paris', 'Reykjavík', 'Málaga', 'Berlin']) END,
       timestamptz '2019-01-01 00:00:00+00' + random() * interval '1500 days',
       round((random() * 10000 - 2000)::numeric, 2),
       CASE WHEN random() < 0.2 THEN NULL ELSE lifeboat_gen.rtext(60 + (random() * 200)::int) END
FROM generate_series(:lo, :hi) g;
