-- Session functions and settings as clients query them. Run against PostgreSQL and a node by
-- the psql test; the outputs must be identical.
SELECT current_user, session_user, user, current_database(), current_catalog;
SELECT current_schema(), current_schemas(true), current_schemas(false);
SELECT pg_backend_pid() > 0 AS has_pid, inet_server_addr(), inet_server_port() > 0 AS has_port;
SELECT current_setting('TimeZone'), current_setting('search_path'), current_setting('nope.x', true) IS NULL AS missing;
SELECT current_setting('nope');
SELECT set_config('application_name', 'myapp', false);
SHOW application_name;
SELECT pg_catalog.set_config('statement_timeout', '5s', false);
SELECT current_setting('statement_timeout');
SHOW search_path;
CREATE TABLE who (id int PRIMARY KEY, name text, db text);
INSERT INTO who VALUES (1, current_user, current_database()) RETURNING name, db;
UPDATE who SET name = name || '@' || current_setting('application_name') WHERE id = 1;
SELECT name, db FROM who;
