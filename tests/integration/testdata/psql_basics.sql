-- Basic statements through psql: command tags, results and errors must read as in Postgres.
CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, qty integer);
INSERT INTO items VALUES (1, 'apple', 3), (2, 'pear', 5), (3, 'fig', NULL);
INSERT INTO items SELECT id + 10, name || '-copy', qty FROM items;
UPDATE items SET qty = 7 WHERE id > 10;
DELETE FROM items WHERE id = 13;
SELECT id, name, qty FROM items WHERE qty IS NOT NULL ORDER BY id;
SELECT count(*), sum(qty), min(name), max(id) FROM items;
SELECT name, qty FROM items ORDER BY qty DESC, name LIMIT 2;
INSERT INTO items VALUES (1, 'duplicate', 0);
SELEC 1;
SELECT * FROM no_such_table;
SELECT 1 + 1 AS two;
INSERT INTO items VALUES (20, 'kiwi', 1) RETURNING id, name;
DROP TABLE items;
