-- pgbench's tables at scale 1, created with plain SQL both servers accept (pgbench -i loads
-- with COPY and sets storage parameters). Same schema and rows as pgbench -i -s 1.
DROP TABLE IF EXISTS pgbench_history;
DROP TABLE IF EXISTS pgbench_tellers;
DROP TABLE IF EXISTS pgbench_accounts;
DROP TABLE IF EXISTS pgbench_branches;
CREATE TABLE pgbench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, filler char(88));
CREATE TABLE pgbench_tellers (tid int NOT NULL PRIMARY KEY, bid int, tbalance int, filler char(84));
CREATE TABLE pgbench_accounts (aid int NOT NULL PRIMARY KEY, bid int, abalance int, filler char(84));
CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
INSERT INTO pgbench_branches (bid, bbalance) VALUES (1, 0);
INSERT INTO pgbench_tellers (tid, bid, tbalance) WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 10) SELECT x, 1, 0 FROM n;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler) WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50000) SELECT x, 1, 0, '' FROM n;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler) WITH RECURSIVE n(x) AS (SELECT 50001 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) SELECT x, 1, 0, '' FROM n;
