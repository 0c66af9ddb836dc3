\d
\dt
\dt ord*
\di
\di *_key
\dv
\ds
\dn
\du
\df
\dt nothing_here
\d orders
\d items
\d tags
\d active_items
\d nothing_here
\d+ items
\d+ orders
\d+ tags
\d+ active_items
\d shipments
\dT
\dT+
\d deliveries
\d+ deliveries
\d orders
\conninfo
SELECT conname, contype, conkey, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'shipments'::regclass AND conname <> 'shipments_light' ORDER BY 1;
SELECT i.relname, x.indkey, pg_get_indexdef(x.indexrelid), pg_get_expr(x.indpred, x.indrelid), pg_get_indexdef(x.indexrelid, 1, true), pg_get_indexdef(x.indexrelid, 0, true) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = 'shipments'::regclass ORDER BY 1;
SELECT table_catalog, table_schema, table_name, table_type, is_typed FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name;
SELECT * FROM information_schema.tables WHERE table_name = 'orders' AND table_schema = current_schema();
SELECT c.table_name, column_name, ordinal_position, column_default, is_nullable, data_type, character_maximum_length, character_octet_length, numeric_precision, numeric_precision_radix, numeric_scale, datetime_precision, udt_name, is_identity, is_generated, is_updatable FROM information_schema.columns AS c JOIN information_schema.tables AS t ON t.table_name = c.table_name WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, ordinal_position;
SELECT constraint_name, table_name, constraint_type, is_deferrable, initially_deferred, enforced, nulls_distinct FROM information_schema.table_constraints WHERE table_schema = 'public' AND constraint_type <> 'CHECK' ORDER BY table_name, constraint_name;
SELECT constraint_name, table_name, column_name, ordinal_position, position_in_unique_constraint FROM information_schema.key_column_usage WHERE table_schema = 'public' ORDER BY table_name, constraint_name, ordinal_position;
SELECT constraint_name, unique_constraint_name, match_option, update_rule, delete_rule FROM information_schema.referential_constraints ORDER BY 1;
SELECT schema_name, schema_owner FROM information_schema.schemata ORDER BY 1;
SELECT count(*) FROM information_schema.routines WHERE routine_schema = 'public';
SELECT c.relname, d.objsubid, d.description FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_description d ON d.objoid = c.oid WHERE c.relname IN ('orders', 'items', 'orders_placed') ORDER BY 1, 2;
SELECT obj_description('items'::regclass, 'pg_class'), col_description('items'::regclass, 3), col_description('orders'::regclass, 3);
CREATE TABLE cm (id int, name text);
COMMENT ON COLUMN cm.name IS 'called';
COMMENT ON COLUMN cm.nope IS 'x';
COMMENT ON TABLE nope IS 'x';
ALTER TABLE cm RENAME COLUMN name TO title;
ALTER TABLE cm RENAME TO cm2;
SELECT col_description('cm2'::regclass, 2);
DROP TABLE cm2;
CREATE TABLE cm2 (id int, title text);
SELECT col_description('cm2'::regclass, 2) IS NULL AS gone;
DROP TABLE cm2;
SELECT to_regclass('items') = 'items'::regclass AS same, to_regclass('public.orders') IS NOT NULL AS qualified, to_regclass('ITEMS') IS NOT NULL AS folded, to_regclass('"ITEMS"') IS NULL AS quoted, to_regclass('nothing') IS NULL AS missing;
SELECT has_table_privilege('items', 'SELECT'), has_schema_privilege('public', 'USAGE'), has_database_privilege('postgres', 'CONNECT');
CREATE TABLE CaseT (Id int PRIMARY KEY, "Mixed" text, Other_Col int DEFAULT 7);
CREATE INDEX CaseT_Other ON CaseT (Other_Col);
ALTER TABLE CaseT ADD COLUMN Added int;
INSERT INTO CASET (ID, "Mixed") VALUES (1, 'x');
\d caset
SELECT * FROM CaseT;
SELECT Id, OTHER_COL FROM caset;
CREATE VIEW CaseV AS SELECT Id AS Ident FROM CaseT;
SELECT * FROM casev;
DROP VIEW CaseV;
DROP TABLE CaseT;
SELECT schemaname, tablename, tableowner, tablespace, hasindexes, hasrules, rowsecurity FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename;
SELECT schemaname, tablename, indexname, tablespace, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY tablename, indexname;
SELECT schemaname, viewname, viewowner, definition FROM pg_catalog.pg_views WHERE schemaname = 'public';
