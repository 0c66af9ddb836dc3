\set id random(1, 1000000000)
INSERT INTO kv (k, v) VALUES (:id, 'value') ON CONFLICT (k) DO UPDATE SET v = excluded.v;
