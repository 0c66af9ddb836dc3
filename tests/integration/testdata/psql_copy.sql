-- COPY through psql: \copy both ways (text, CSV, headers, NULLs, escapes, a file), COPY TO
-- STDOUT of tables and queries, errors with their context, and atomicity. Run against
-- PostgreSQL and a node by the psql test; the outputs must be identical.
CREATE TABLE items (id integer PRIMARY KEY, name text, qty integer, price numeric(10,2), ok boolean);
\copy items from stdin
1	apple	3	1.50	t
2	\N	\N	\N	\N
3	tab\there\\back\nslash	-7	0.1	false
4		0	100	on
\.
\copy items from 'psql_copy.csv' with (format csv, header)
SELECT id, name, qty, price, ok FROM items ORDER BY id;
\copy items to stdout
\copy items (id, name) to stdout with (format csv, header)
\copy (SELECT id, name FROM items WHERE id > 10 ORDER BY id) to stdout with csv
COPY (SELECT id, price, ok FROM items ORDER BY id DESC LIMIT 3) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE (price), NULL 'NULL');
COPY items (id, qty) TO STDOUT (DELIMITER '|', NULL '');
-- Errors: nothing of a failed COPY is written.
\copy items (id, name) from stdin
20	fine
21	also fine
x	bad
\.
\copy items (id, name) from stdin
22	one	extra
\.
\copy items (id, name, qty) from stdin
23	missing
\.
\copy items from stdin with (format csv)
24,"unterminated
\.
COPY items (id, nope) FROM STDIN;
SELECT count(*) FROM items;
-- In a transaction block: COPY is part of the block.
BEGIN;
\copy items (id, name) from stdin
30	in block
\.
SELECT count(*) FROM items;
ROLLBACK;
BEGIN;
\copy items (id, name) from stdin with (format csv)
31,committed
\.
COMMIT;
SELECT id, name FROM items WHERE id >= 30;
-- Arrays: their text form in COPY's text and CSV formats, both ways; a malformed one is 22P02.
CREATE TABLE shelves (id int PRIMARY KEY, tags text[], counts int[]);
\copy shelves from stdin
1	{a,"b c",NULL}	{1,2}
2	{}	\N
3	{"x\\"y"}	{ 3 , 4 }
\.
\copy shelves to stdout
\copy shelves to stdout with (format csv)
\copy shelves from stdin
4	{a	{1}
\.
SELECT id, tags, counts, cardinality(tags) FROM shelves ORDER BY id;
