//! `pg_catalog` as clients query it (psql's `\d` family, drivers and ORMs): each catalog
//! relation in a query is replaced by a stand-in query over SQLite's own schema
//! (`sqlite_schema`, `pragma_table_xinfo`, `pragma_index_list`, `pragma_index_info`), the
//! sequences table and constant rows. Catalog reads are therefore answered by every node from
//! its own replicated schema, never through the log, and always agree with it: nothing is
//! cached or rebuilt. Rewritten after the internal-name checks, so users still cannot name
//! `sqlite_schema` themselves. The columns' PostgreSQL types are declared here (SQLite knows
//! no type of an expression), and [`column_type`] gives them to the result's description, so
//! a boolean prints `t`, as psql expects. See `docs/compat.md`, "The catalog".

use std::ops::ControlFlow;

use sqlparser::ast::{
    DataType, Expr, FunctionArguments, GroupByExpr, Ident, JoinOperator, ObjectName, Query, Select,
    SelectItem, SetExpr, SetOperator, Statement, TableAlias, TableFactor, Value, Visit, VisitMut,
    VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::columns::{ColumnHint, PgType};

/// `oid` columns are described as `bigint` (there is no `oid` type here); `name` columns as
/// `text`, `"char"` columns as `text`.
const OID: PgType = PgType::Int8;
const NAME: PgType = PgType::Text;
const CHAR: PgType = PgType::Text;
const BOOL: PgType = PgType::Bool;
const INT2: PgType = PgType::Int2;
const INT4: PgType = PgType::Int4;
const TEXT: PgType = PgType::Text;

/// The condition that keeps `s` (a row of `sqlite_schema`) to user objects: not SQLite's own
/// (`sqlite_*`), not the engine's (`_sqlkeeper*`).
const USER_OBJECT: &str = "s.name NOT LIKE 'sqlite!_%' ESCAPE '!' \
     AND s.name NOT LIKE '!_sqlkeeper%' ESCAPE '!'";

/// Joins the enum type (`ut`, a row of the types table, `enums.rs`) a column `p` (a row of
/// `pragma_table_xinfo`) is declared with, if any: SQLite keeps its name, quoted where it must be.
const USER_TYPE_JOIN: &str = "LEFT JOIN _sqlkeeper_types AS ut \
     ON p.type IN (ut.name, '\"' || replace(ut.name, '\"', '\"\"') || '\"')";

/// PostgreSQL's name of an index `il` (a row of `pragma_index_list(s.name)`): SQLite names
/// the indexes of constraints `sqlite_autoindex_*`; PostgreSQL `{table}_pkey` for a primary
/// key and `{table}_{columns}_key` for a unique constraint.
const INDEX_NAME: &str = "(CASE il.origin \
     WHEN 'pk' THEN coalesce(sqlkeeper_constraint_name(s.sql, 'p', (SELECT group_concat(ii.name, ',' \
     ORDER BY ii.seqno) FROM pragma_index_info(il.name) AS ii)), s.name || '_pkey') \
     WHEN 'u' THEN coalesce(sqlkeeper_constraint_name(s.sql, 'u', (SELECT group_concat(ii.name, ',' \
     ORDER BY ii.seqno) FROM pragma_index_info(il.name) AS ii)), s.name || '_' || \
     (SELECT group_concat(ii.name, '_' ORDER BY ii.seqno) FROM pragma_index_info(il.name) AS ii) \
     || '_key') ELSE il.name END)";

/// The name of foreign key `id` (`pragma_foreign_key_list`'s) of table `s`: the name its
/// definition declares (`sqlkeeper_constraint_name`), else PostgreSQL's (`t_a_b_fkey`).
fn foreign_key_name(id: &str) -> String {
    let columns = |sep: &str| {
        format!(
            "(SELECT group_concat(f.\"from\", '{sep}' ORDER BY f.seq) \
             FROM pragma_foreign_key_list(s.name) AS f WHERE f.id = {id})"
        )
    };
    format!(
        "coalesce(sqlkeeper_constraint_name(s.sql, 'f', {}), s.name || '_' || {} || '_fkey')",
        columns(","),
        columns("_")
    )
}

/// The name of the key of `table` on `columns` (comma-separated) that a foreign key references:
/// its primary key (`is_primary`, SQL) or a unique constraint, under its declared name or
/// PostgreSQL's (`t_pkey`, `t_a_b_key`).
fn referenced_key_name(table: &str, columns: &str, is_primary: &str) -> String {
    format!(
        "coalesce(sqlkeeper_constraint_name((SELECT x.sql FROM sqlite_schema AS x \
         WHERE x.type = 'table' AND x.name = {table}), CASE WHEN {is_primary} THEN 'p' ELSE 'u' END, \
         {columns}), CASE WHEN {is_primary} THEN {table} || '_pkey' \
         ELSE {table} || '_' || replace({columns}, ',', '_') || '_key' END)"
    )
}

/// The rows of `pg_settings`: the server's fixed limits and what it was built with, as
/// PostgreSQL 15 reports them (pgjdbc reads `max_index_keys`). Session settings (`SET`) are
/// per connection and are read with `SHOW` and `current_setting`; they are not listed here.
const PG_SETTINGS: &str = "\
    ('block_size', '8192', 'Preset Options', 'internal', 'integer'), \
    ('integer_datetimes', 'on', 'Preset Options', 'internal', 'bool'), \
    ('max_function_args', '100', 'Preset Options', 'internal', 'integer'), \
    ('max_identifier_length', '63', 'Preset Options', 'internal', 'integer'), \
    ('max_index_keys', '32', 'Preset Options', 'internal', 'integer'), \
    ('server_encoding', 'UTF8', 'Client Connection Defaults', 'internal', 'string'), \
    ('standard_conforming_strings', 'on', 'Version and Platform Compatibility', 'user', 'bool')";

/// One catalog relation: its columns with their PostgreSQL types, and the query standing in
/// for it (its result columns are `columns`, in order; a unit test checks they match), or
/// `None` for a relation that has no rows here: its stand-in selects NULLs of its columns and
/// no row ([`stand_in`]), and a query that needs a row of it returns none without running
/// ([`empty_result`]).
struct Relation {
    name: &'static str,
    columns: &'static [(&'static str, PgType)],
    query: Option<fn() -> String>,
}

const RELATIONS: &[Relation] = &[
    Relation {
        name: "pg_class",
        columns: &[
            ("oid", OID),
            ("relname", NAME),
            ("relnamespace", OID),
            ("reltype", OID),
            ("reloftype", OID),
            ("relowner", OID),
            ("relfilenode", OID),
            ("reltablespace", OID),
            ("relpages", INT4),
            ("reltuples", PgType::Float4),
            ("relallvisible", INT4),
            ("reltoastrelid", OID),
            ("relam", OID),
            ("relhasindex", BOOL),
            ("relisshared", BOOL),
            ("relpersistence", CHAR),
            ("relkind", CHAR),
            ("relnatts", INT2),
            ("relchecks", INT2),
            ("relhasrules", BOOL),
            ("relhastriggers", BOOL),
            ("relhassubclass", BOOL),
            ("relrowsecurity", BOOL),
            ("relforcerowsecurity", BOOL),
            ("relispopulated", BOOL),
            ("relreplident", CHAR),
            ("relispartition", BOOL),
            ("relrewrite", OID),
            ("relacl", TEXT),
            ("reloptions", TEXT),
        ],
        query: Some(pg_class),
    },
    Relation {
        name: "pg_attribute",
        columns: &[
            ("attrelid", OID),
            ("attname", NAME),
            ("atttypid", OID),
            ("attnum", INT2),
            ("atttypmod", INT4),
            ("attndims", INT2),
            ("attnotnull", BOOL),
            ("atthasdef", BOOL),
            ("atthasmissing", BOOL),
            ("attidentity", CHAR),
            ("attgenerated", CHAR),
            ("attisdropped", BOOL),
            ("attislocal", BOOL),
            ("attinhcount", INT4),
            ("attcollation", OID),
            ("attacl", TEXT),
            ("attoptions", TEXT),
            ("attstorage", CHAR),
            ("attcompression", CHAR),
            ("attstattarget", INT4),
            ("attlen", INT2),
        ],
        query: Some(pg_attribute),
    },
    Relation {
        name: "pg_description",
        columns: &[
            ("objoid", OID),
            ("classoid", OID),
            ("objsubid", INT4),
            ("description", TEXT),
        ],
        query: Some(pg_description),
    },
    Relation {
        name: "pg_attrdef",
        columns: &[
            ("oid", OID),
            ("adrelid", OID),
            ("adnum", INT2),
            ("adbin", TEXT),
        ],
        query: Some(pg_attrdef),
    },
    Relation {
        name: "pg_constraint",
        columns: &[
            ("oid", OID),
            ("conname", NAME),
            ("connamespace", OID),
            ("contype", CHAR),
            ("condeferrable", BOOL),
            ("condeferred", BOOL),
            ("convalidated", BOOL),
            ("conrelid", OID),
            ("contypid", OID),
            ("conindid", OID),
            ("conparentid", OID),
            ("confrelid", OID),
            ("confupdtype", CHAR),
            ("confdeltype", CHAR),
            ("confmatchtype", CHAR),
            ("conislocal", BOOL),
            ("coninhcount", INT4),
            ("connoinherit", BOOL),
            ("conkey", TEXT),
            ("confkey", TEXT),
        ],
        query: Some(|| project("pg_constraint", &constraints())),
    },
    Relation {
        name: "pg_settings",
        columns: &[
            ("name", TEXT),
            ("setting", TEXT),
            ("unit", TEXT),
            ("category", TEXT),
            ("short_desc", TEXT),
            ("context", TEXT),
            ("vartype", TEXT),
            ("source", TEXT),
            ("boot_val", TEXT),
            ("reset_val", TEXT),
        ],
        query: Some(|| {
            format!(
                "SELECT column1 AS name, column2 AS setting, NULL AS unit, column3 AS category, \
                 '' AS short_desc, column4 AS context, column5 AS vartype, 'default' AS source, \
                 column2 AS boot_val, column2 AS reset_val FROM (VALUES {PG_SETTINGS}) AS v"
            )
        }),
    },
    Relation {
        name: "pg_collation",
        columns: &[
            ("oid", OID),
            ("collname", NAME),
            ("collnamespace", OID),
            ("collprovider", CHAR),
            ("collcollate", TEXT),
            ("collctype", TEXT),
        ],
        query: Some(|| {
            "SELECT CAST(column1 AS oid) AS oid, column2 AS collname, 11 AS collnamespace, \
             column3 AS collprovider, column4 AS collcollate, column4 AS collctype \
             FROM (VALUES (100, 'default', 'd', NULL), (950, 'C', 'c', 'C'), \
             (951, 'POSIX', 'c', 'POSIX')) AS v"
                .into()
        }),
    },
    Relation {
        name: "pg_namespace",
        columns: &[
            ("oid", OID),
            ("nspname", NAME),
            ("nspowner", OID),
            ("nspacl", TEXT),
        ],
        query: Some(|| {
            "SELECT CAST(column1 AS oid) AS oid, column2 AS nspname, column3 AS nspowner, NULL AS nspacl \
             FROM (VALUES (11, 'pg_catalog', 10), (99, 'pg_toast', 10), \
             (2200, 'public', 6171), (13207, 'information_schema', 10)) AS v"
                .into()
        }),
    },
    Relation {
        name: "pg_index",
        columns: &[
            ("indexrelid", OID),
            ("indrelid", OID),
            ("indnatts", INT2),
            ("indnkeyatts", INT2),
            ("indisunique", BOOL),
            ("indnullsnotdistinct", BOOL),
            ("indisprimary", BOOL),
            ("indisexclusion", BOOL),
            ("indimmediate", BOOL),
            ("indisclustered", BOOL),
            ("indisvalid", BOOL),
            ("indcheckxmin", BOOL),
            ("indisready", BOOL),
            ("indislive", BOOL),
            ("indisreplident", BOOL),
            ("indkey", TEXT),
            ("indexprs", TEXT),
            ("indpred", TEXT),
            ("indclass", TEXT),
            ("indoption", TEXT),
        ],
        query: Some(|| project("pg_index", &indexes())),
    },
    Relation {
        name: "pg_am",
        columns: &[
            ("oid", OID),
            ("amname", NAME),
            ("amhandler", TEXT),
            ("amtype", CHAR),
        ],
        query: Some(|| {
            "SELECT CAST(column1 AS oid) AS oid, column2 AS amname, column3 AS amhandler, column4 AS amtype \
             FROM (VALUES (2, 'heap', 'heap_tableam_handler', 't'), \
             (403, 'btree', 'bthandler', 'i')) AS v"
                .into()
        }),
    },
    Relation {
        name: "pg_roles",
        columns: ROLE_COLUMNS,
        query: Some(pg_roles),
    },
    Relation {
        name: "pg_authid",
        columns: ROLE_COLUMNS,
        query: Some(pg_roles),
    },
    Relation {
        name: "pg_auth_members",
        columns: &[
            ("roleid", OID),
            ("member", OID),
            ("grantor", OID),
            ("admin_option", BOOL),
        ],
        // Memberships granted with `GRANT role TO role` (`privileges.rs`), by the superuser.
        query: Some(|| {
            format!(
                "SELECT CAST(r.oid AS oid) AS roleid, CAST(m.oid AS oid) AS member, \
                 CAST(10 AS oid) AS grantor, 0 AS admin_option \
                 FROM {} AS g, ({}) AS r, ({}) AS m \
                 WHERE r.rolname = g.role AND m.rolname = g.member",
                crate::privileges::MEMBERS_TABLE,
                pg_roles(),
                pg_roles()
            )
        }),
    },
    Relation {
        name: "pg_proc",
        columns: &[
            ("oid", OID),
            ("proname", NAME),
            ("pronamespace", OID),
            ("proowner", OID),
            ("prokind", CHAR),
            ("prorettype", OID),
            ("proargtypes", TEXT),
        ],
        query: Some(|| {
            "SELECT 0 AS oid, '' AS proname, 0 AS pronamespace, 0 AS proowner, '' AS prokind, \
             0 AS prorettype, '' AS proargtypes WHERE 0"
                .into()
        }),
    },
    Relation {
        name: "pg_database",
        columns: &[
            ("oid", OID),
            ("datname", NAME),
            ("datdba", OID),
            ("encoding", INT4),
            ("datlocprovider", CHAR),
            ("datistemplate", BOOL),
            ("datallowconn", BOOL),
            ("datconnlimit", INT4),
            ("datcollate", TEXT),
            ("datctype", TEXT),
            ("daticulocale", TEXT),
            ("datacl", TEXT),
        ],
        // The one database; its collation is SQLite's byte order, PostgreSQL's "C".
        query: Some(|| {
            "SELECT 5 AS oid, 'postgres' AS datname, 10 AS datdba, 6 AS encoding, \
             'c' AS datlocprovider, 0 AS datistemplate, 1 AS datallowconn, \
             -1 AS datconnlimit, 'C' AS datcollate, 'C' AS datctype, NULL AS daticulocale, \
             NULL AS datacl"
                .into()
        }),
    },
    Relation {
        name: "pg_type",
        columns: &[
            ("oid", OID),
            ("typname", NAME),
            ("typnamespace", OID),
            ("typowner", OID),
            ("typlen", INT2),
            ("typbyval", BOOL),
            ("typtype", CHAR),
            ("typcategory", CHAR),
            ("typispreferred", BOOL),
            ("typisdefined", BOOL),
            ("typdelim", CHAR),
            ("typrelid", OID),
            ("typelem", OID),
            ("typarray", OID),
            ("typbasetype", OID),
            ("typtypmod", INT4),
            ("typndims", INT4),
            ("typcollation", OID),
            ("typnotnull", BOOL),
            ("typacl", TEXT),
            ("typdefault", TEXT),
        ],
        query: Some(pg_type),
    },
    // The views PostgreSQL defines over its catalog, of the user's objects only (PostgreSQL
    // also lists its own catalog's tables in `pg_tables`).
    Relation {
        name: "pg_tables",
        columns: &[
            ("schemaname", NAME),
            ("tablename", NAME),
            ("tableowner", NAME),
            ("tablespace", NAME),
            ("hasindexes", BOOL),
            ("hasrules", BOOL),
            ("hastriggers", BOOL),
            ("rowsecurity", BOOL),
        ],
        query: Some(|| {
            format!(
                "SELECT 'public' AS schemaname, c.relname AS tablename, \
                 coalesce((SELECT o.owner FROM {} AS o WHERE o.name = c.relname), 'postgres') \
                 AS tableowner, NULL AS tablespace, c.relhasindex AS hasindexes, \
                 c.relhasrules AS hasrules, c.relhastriggers AS hastriggers, \
                 c.relrowsecurity AS rowsecurity FROM ({}) AS c WHERE c.relkind = 'r'",
                crate::privileges::OWNERS_TABLE,
                pg_class()
            )
        }),
    },
    Relation {
        name: "pg_indexes",
        columns: &[
            ("schemaname", NAME),
            ("tablename", NAME),
            ("indexname", NAME),
            ("tablespace", NAME),
            ("indexdef", TEXT),
        ],
        query: Some(|| {
            format!(
                "SELECT 'public' AS schemaname, i.tablename AS tablename, \
                 i.indexname AS indexname, NULL AS tablespace, i.def AS indexdef FROM ({}) AS i",
                index_definitions()
            )
        }),
    },
    Relation {
        name: "pg_views",
        columns: &[
            ("schemaname", NAME),
            ("viewname", NAME),
            ("viewowner", NAME),
            ("definition", TEXT),
        ],
        query: Some(|| {
            format!(
                "SELECT 'public' AS schemaname, s.name AS viewname, \
                 coalesce((SELECT o.owner FROM {} AS o WHERE o.name = s.name), 'postgres') \
                 AS viewowner, sqlkeeper_view_definition(s.sql, 0) AS definition \
                 FROM sqlite_schema AS s WHERE s.type = 'view' AND {USER_OBJECT}",
                crate::privileges::OWNERS_TABLE
            )
        }),
    },
    Relation {
        name: "pg_enum",
        columns: &[
            ("oid", OID),
            ("enumtypid", OID),
            ("enumsortorder", PgType::Float4),
            ("enumlabel", NAME),
        ],
        // The labels of enum types (`enums.rs`); a label's oid is a function of its type's
        // name and its own, as a relation's is.
        query: Some(|| {
            format!(
                "SELECT CAST(pg_relation_oid('enum ' || l.type || '.' || l.label) AS oid) AS oid, \
                 t.oid AS enumtypid, l.sort_order AS enumsortorder, l.label AS enumlabel \
                 FROM {} AS l JOIN {} AS t ON t.name = l.type",
                crate::enums::ENUM_LABELS_TABLE,
                crate::enums::TYPES_TABLE
            )
        }),
    },
];

const VARCHAR: PgType = PgType::Varchar;

/// `information_schema` (SQL standard views PostgreSQL defines over its catalog; reached only
/// qualified, as in PostgreSQL, whose search path does not include it). Objects of schema
/// `public` only: PostgreSQL also lists its own catalogs' tables to a superuser.
const INFORMATION_SCHEMA: &[Relation] = &[
    Relation {
        name: "schemata",
        columns: &[
            ("catalog_name", NAME),
            ("schema_name", NAME),
            ("schema_owner", NAME),
            ("default_character_set_catalog", NAME),
            ("default_character_set_schema", NAME),
            ("default_character_set_name", NAME),
            ("sql_path", VARCHAR),
        ],
        query: Some(|| {
            "SELECT 'postgres' AS catalog_name, column1 AS schema_name, column2 AS schema_owner, \
             NULL AS default_character_set_catalog, NULL AS default_character_set_schema, \
             NULL AS default_character_set_name, NULL AS sql_path \
             FROM (VALUES ('pg_toast', 'postgres'), ('pg_catalog', 'postgres'), \
             ('public', 'pg_database_owner'), ('information_schema', 'postgres')) AS v"
                .into()
        }),
    },
    Relation {
        name: "tables",
        columns: &[
            ("table_catalog", NAME),
            ("table_schema", NAME),
            ("table_name", NAME),
            ("table_type", VARCHAR),
            ("self_referencing_column_name", NAME),
            ("reference_generation", VARCHAR),
            ("user_defined_type_catalog", NAME),
            ("user_defined_type_schema", NAME),
            ("user_defined_type_name", NAME),
            ("is_insertable_into", VARCHAR),
            ("is_typed", VARCHAR),
            ("commit_action", VARCHAR),
        ],
        // Views are read-only here (SQLite's are), so not insertable.
        query: Some(|| {
            format!(
                "SELECT 'postgres' AS table_catalog, 'public' AS table_schema, \
                 s.name AS table_name, \
                 CASE s.type WHEN 'table' THEN 'BASE TABLE' ELSE 'VIEW' END AS table_type, \
                 NULL AS self_referencing_column_name, NULL AS reference_generation, \
                 NULL AS user_defined_type_catalog, NULL AS user_defined_type_schema, \
                 NULL AS user_defined_type_name, \
                 CASE s.type WHEN 'table' THEN 'YES' ELSE 'NO' END AS is_insertable_into, \
                 'NO' AS is_typed, NULL AS commit_action \
                 FROM sqlite_schema AS s WHERE s.type IN ('table', 'view') AND {USER_OBJECT}"
            )
        }),
    },
    Relation {
        name: "columns",
        columns: &[
            ("table_catalog", NAME),
            ("table_schema", NAME),
            ("table_name", NAME),
            ("column_name", NAME),
            ("ordinal_position", INT4),
            ("column_default", VARCHAR),
            ("is_nullable", VARCHAR),
            ("data_type", VARCHAR),
            ("character_maximum_length", INT4),
            ("character_octet_length", INT4),
            ("numeric_precision", INT4),
            ("numeric_precision_radix", INT4),
            ("numeric_scale", INT4),
            ("datetime_precision", INT4),
            ("interval_type", VARCHAR),
            ("interval_precision", INT4),
            ("character_set_catalog", NAME),
            ("character_set_schema", NAME),
            ("character_set_name", NAME),
            ("collation_catalog", NAME),
            ("collation_schema", NAME),
            ("collation_name", NAME),
            ("domain_catalog", NAME),
            ("domain_schema", NAME),
            ("domain_name", NAME),
            ("udt_catalog", NAME),
            ("udt_schema", NAME),
            ("udt_name", NAME),
            ("scope_catalog", NAME),
            ("scope_schema", NAME),
            ("scope_name", NAME),
            ("maximum_cardinality", INT4),
            ("dtd_identifier", NAME),
            ("is_self_referencing", VARCHAR),
            ("is_identity", VARCHAR),
            ("identity_generation", VARCHAR),
            ("identity_start", VARCHAR),
            ("identity_increment", VARCHAR),
            ("identity_maximum", VARCHAR),
            ("identity_minimum", VARCHAR),
            ("identity_cycle", VARCHAR),
            ("is_generated", VARCHAR),
            ("generation_expression", VARCHAR),
            ("is_updatable", VARCHAR),
        ],
        query: Some(information_schema_columns),
    },
    Relation {
        name: "views",
        columns: &[
            ("table_catalog", NAME),
            ("table_schema", NAME),
            ("table_name", NAME),
            ("view_definition", VARCHAR),
            ("check_option", VARCHAR),
            ("is_updatable", VARCHAR),
            ("is_insertable_into", VARCHAR),
            ("is_trigger_updatable", VARCHAR),
            ("is_trigger_deletable", VARCHAR),
            ("is_trigger_insertable_into", VARCHAR),
        ],
        // The definition as `pg_get_viewdef` prints it, not pretty (`viewdef.rs`).
        query: Some(|| {
            format!(
                "SELECT 'postgres' AS table_catalog, 'public' AS table_schema, \
                 s.name AS table_name, sqlkeeper_view_definition(s.sql, 0) AS view_definition, \
                 'NONE' AS check_option, 'NO' AS is_updatable, 'NO' AS is_insertable_into, \
                 'NO' AS is_trigger_updatable, 'NO' AS is_trigger_deletable, \
                 'NO' AS is_trigger_insertable_into \
                 FROM sqlite_schema AS s WHERE s.type = 'view' AND {USER_OBJECT}"
            )
        }),
    },
    Relation {
        name: "table_constraints",
        columns: &[
            ("constraint_catalog", NAME),
            ("constraint_schema", NAME),
            ("constraint_name", NAME),
            ("table_catalog", NAME),
            ("table_schema", NAME),
            ("table_name", NAME),
            ("constraint_type", VARCHAR),
            ("is_deferrable", VARCHAR),
            ("initially_deferred", VARCHAR),
            ("enforced", VARCHAR),
            ("nulls_distinct", VARCHAR),
        ],
        query: Some(|| {
            format!(
                "SELECT 'postgres' AS constraint_catalog, 'public' AS constraint_schema, \
                 c.conname AS constraint_name, 'postgres' AS table_catalog, \
                 'public' AS table_schema, c.tablename AS table_name, \
                 CASE c.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'u' THEN 'UNIQUE' \
                 WHEN 'f' THEN 'FOREIGN KEY' ELSE 'CHECK' END AS constraint_type, 'NO' AS is_deferrable, \
                 'NO' AS initially_deferred, 'YES' AS enforced, \
                 CASE c.contype WHEN 'u' THEN 'YES' END AS nulls_distinct \
                 FROM ({}) AS c",
                constraints()
            )
        }),
    },
    Relation {
        name: "key_column_usage",
        columns: &[
            ("constraint_catalog", NAME),
            ("constraint_schema", NAME),
            ("constraint_name", NAME),
            ("table_catalog", NAME),
            ("table_schema", NAME),
            ("table_name", NAME),
            ("column_name", NAME),
            ("ordinal_position", INT4),
            ("position_in_unique_constraint", INT4),
        ],
        // A foreign key's columns are in the order of the referenced key's.
        query: Some(|| {
            format!(
                "SELECT 'postgres' AS constraint_catalog, 'public' AS constraint_schema, \
                 {INDEX_NAME} AS constraint_name, 'postgres' AS table_catalog, \
                 'public' AS table_schema, s.name AS table_name, ii.name AS column_name, \
                 ii.seqno + 1 AS ordinal_position, NULL AS position_in_unique_constraint \
                 FROM sqlite_schema AS s, pragma_index_list(s.name) AS il, \
                 pragma_index_info(il.name) AS ii \
                 WHERE s.type = 'table' AND {USER_OBJECT} AND il.origin IN ('pk', 'u') \
                 UNION ALL \
                 SELECT 'postgres', 'public', {fk_name}, 'postgres', 'public', s.name, \
                 fk.\"from\", fk.seq + 1, fk.seq + 1 \
                 FROM sqlite_schema AS s, pragma_foreign_key_list(s.name) AS fk \
                 WHERE s.type = 'table' AND {USER_OBJECT}",
                fk_name = foreign_key_name("fk.id")
            )
        }),
    },
    Relation {
        name: "referential_constraints",
        columns: &[
            ("constraint_catalog", NAME),
            ("constraint_schema", NAME),
            ("constraint_name", NAME),
            ("unique_constraint_catalog", NAME),
            ("unique_constraint_schema", NAME),
            ("unique_constraint_name", NAME),
            ("match_option", VARCHAR),
            ("update_rule", VARCHAR),
            ("delete_rule", VARCHAR),
        ],
        // The referenced key is the referenced table's primary key when the columns are its
        // columns, otherwise its unique constraint on them.
        query: Some(|| {
            format!(
                "SELECT 'postgres' AS constraint_catalog, 'public' AS constraint_schema, \
                 c.conname AS constraint_name, 'postgres' AS unique_constraint_catalog, \
                 'public' AS unique_constraint_schema, {} AS unique_constraint_name, \
                 'NONE' AS match_option, c.updrule AS update_rule, c.delrule AS delete_rule \
                 FROM ({}) AS c WHERE c.contype = 'f'",
                referenced_key_name(
                    "c.reftable",
                    "c.refcolumns",
                    "c.refcolumns = (SELECT group_concat(t.name, ',' ORDER BY t.pk) \
                     FROM pragma_table_info(c.reftable) AS t WHERE t.pk > 0)"
                ),
                constraints()
            )
        }),
    },
    Relation {
        name: "routines",
        columns: &[
            ("specific_catalog", NAME),
            ("specific_schema", NAME),
            ("specific_name", NAME),
            ("routine_catalog", NAME),
            ("routine_schema", NAME),
            ("routine_name", NAME),
            ("routine_type", VARCHAR),
            ("data_type", VARCHAR),
            ("routine_body", VARCHAR),
            ("routine_definition", VARCHAR),
            ("external_language", VARCHAR),
        ],
        query: None,
    },
];

/// Every column of every table and view, with the SQL standard's description of its type
/// (`sqlkeeper_type_info`, from the declared type).
fn information_schema_columns() -> String {
    // An enum column is `USER-DEFINED`, its type named by `udt_name`.
    let info = |field: &str| {
        format!("CASE WHEN ut.oid IS NULL THEN sqlkeeper_type_info(p.type, '{field}') END")
    };
    format!(
        "SELECT 'postgres' AS table_catalog, 'public' AS table_schema, s.name AS table_name, \
         p.name AS column_name, p.cid + 1 AS ordinal_position, \
         sqlkeeper_default_expr(p.dflt_value, p.type) AS column_default, \
         CASE WHEN p.\"notnull\" OR p.pk > 0 THEN 'NO' ELSE 'YES' END AS is_nullable, \
         coalesce({}, 'USER-DEFINED') AS data_type, {} AS character_maximum_length, {} AS character_octet_length, \
         {} AS numeric_precision, {} AS numeric_precision_radix, {} AS numeric_scale, \
         {} AS datetime_precision, NULL AS interval_type, NULL AS interval_precision, \
         NULL AS character_set_catalog, NULL AS character_set_schema, \
         NULL AS character_set_name, NULL AS collation_catalog, NULL AS collation_schema, \
         NULL AS collation_name, NULL AS domain_catalog, NULL AS domain_schema, \
         NULL AS domain_name, 'postgres' AS udt_catalog, \
         CASE WHEN ut.oid IS NULL THEN 'pg_catalog' ELSE 'public' END AS udt_schema, \
         coalesce(ut.name, {}) AS udt_name, NULL AS scope_catalog, NULL AS scope_schema, NULL AS scope_name, \
         NULL AS maximum_cardinality, CAST(p.cid + 1 AS text) AS dtd_identifier, \
         'NO' AS is_self_referencing, 'NO' AS is_identity, NULL AS identity_generation, \
         NULL AS identity_start, NULL AS identity_increment, NULL AS identity_maximum, \
         NULL AS identity_minimum, 'NO' AS identity_cycle, 'NEVER' AS is_generated, \
         NULL AS generation_expression, \
         CASE s.type WHEN 'table' THEN 'YES' ELSE 'NO' END AS is_updatable \
         FROM sqlite_schema AS s, pragma_table_xinfo(s.name) AS p {USER_TYPE_JOIN} \
         WHERE s.type IN ('table', 'view') AND {USER_OBJECT} AND p.hidden = 0",
        info("data_type"),
        info("character_maximum_length"),
        info("character_octet_length"),
        info("numeric_precision"),
        info("numeric_precision_radix"),
        info("numeric_scale"),
        info("datetime_precision"),
        info("udt_name"),
    )
}

/// Catalog relations that are always empty here: no row security, extended statistics, publications, user triggers, inheritance, partitions,
/// rewrite rules, extensions or operator classes of their own.
const EMPTY_RELATIONS: &[Relation] = &[
    // No range types exist here (asyncpg's type introspection joins this).
    Relation {
        name: "pg_range",
        columns: &[
            ("rngtypid", OID),
            ("rngsubtype", OID),
            ("rngmultitypid", OID),
            ("rngcollation", OID),
            ("rngsubopc", OID),
            ("rngcanonical", TEXT),
            ("rngsubdiff", TEXT),
        ],
        query: None,
    },
    Relation {
        name: "pg_policy",
        columns: &[
            ("oid", OID),
            ("polname", NAME),
            ("polrelid", OID),
            ("polcmd", CHAR),
            ("polpermissive", BOOL),
            ("polroles", TEXT),
            ("polqual", TEXT),
            ("polwithcheck", TEXT),
        ],
        query: None,
    },
    Relation {
        name: "pg_statistic_ext",
        columns: &[
            ("oid", OID),
            ("stxrelid", OID),
            ("stxname", NAME),
            ("stxnamespace", OID),
            ("stxowner", OID),
            ("stxstattarget", INT4),
            ("stxkeys", TEXT),
            ("stxkind", TEXT),
            ("stxexprs", TEXT),
        ],
        query: None,
    },
    Relation {
        name: "pg_publication",
        columns: &[
            ("oid", OID),
            ("pubname", NAME),
            ("pubowner", OID),
            ("puballtables", BOOL),
            ("pubinsert", BOOL),
            ("pubupdate", BOOL),
            ("pubdelete", BOOL),
            ("pubtruncate", BOOL),
            ("pubviaroot", BOOL),
        ],
        query: None,
    },
    Relation {
        name: "pg_publication_namespace",
        columns: &[("oid", OID), ("pnpubid", OID), ("pnnspid", OID)],
        query: None,
    },
    Relation {
        name: "pg_publication_rel",
        columns: &[
            ("oid", OID),
            ("prpubid", OID),
            ("prrelid", OID),
            ("prqual", TEXT),
            ("prattrs", TEXT),
        ],
        query: None,
    },
    Relation {
        name: "pg_trigger",
        columns: &[
            ("oid", OID),
            ("tgrelid", OID),
            ("tgparentid", OID),
            ("tgname", NAME),
            ("tgfoid", OID),
            ("tgtype", INT2),
            ("tgenabled", CHAR),
            ("tgisinternal", BOOL),
            ("tgconstrrelid", OID),
            ("tgconstrindid", OID),
            ("tgconstraint", OID),
            ("tgdeferrable", BOOL),
            ("tginitdeferred", BOOL),
            ("tgnargs", INT2),
            ("tgattr", TEXT),
            ("tgargs", TEXT),
            ("tgqual", TEXT),
            ("tgoldtable", NAME),
            ("tgnewtable", NAME),
        ],
        query: None,
    },
    // PostgreSQL's two built-in tablespaces; every relation is in the database's default
    // (`reltablespace` 0), as SQLAlchemy's table options reflection reads it.
    Relation {
        name: "pg_tablespace",
        columns: &[
            ("oid", OID),
            ("spcname", NAME),
            ("spcowner", OID),
            ("spcacl", TEXT),
            ("spcoptions", TEXT),
        ],
        query: Some(|| {
            "SELECT CAST(column1 AS oid) AS oid, column2 AS spcname, CAST(10 AS oid) AS spcowner, \
             NULL AS spcacl, NULL AS spcoptions \
             FROM (VALUES (1663, 'pg_default'), (1664, 'pg_global')) AS v"
                .into()
        }),
    },
    Relation {
        name: "pg_inherits",
        columns: &[
            ("inhrelid", OID),
            ("inhparent", OID),
            ("inhseqno", INT4),
            ("inhdetachpending", BOOL),
        ],
        query: None,
    },
    Relation {
        name: "pg_partitioned_table",
        columns: &[
            ("partrelid", OID),
            ("partstrat", CHAR),
            ("partnatts", INT2),
            ("partdefid", OID),
            ("partattrs", TEXT),
            ("partclass", TEXT),
            ("partcollation", TEXT),
            ("partexprs", TEXT),
        ],
        query: None,
    },
    Relation {
        name: "pg_rewrite",
        columns: &[
            ("oid", OID),
            ("rulename", NAME),
            ("ev_class", OID),
            ("ev_type", CHAR),
            ("ev_enabled", CHAR),
            ("is_instead", BOOL),
            ("ev_qual", TEXT),
            ("ev_action", TEXT),
        ],
        query: None,
    },
    Relation {
        name: "pg_depend",
        columns: &[
            ("classid", OID),
            ("objid", OID),
            ("objsubid", INT4),
            ("refclassid", OID),
            ("refobjid", OID),
            ("refobjsubid", INT4),
            ("deptype", CHAR),
        ],
        query: None,
    },
    Relation {
        name: "pg_extension",
        columns: &[
            ("oid", OID),
            ("extname", NAME),
            ("extowner", OID),
            ("extnamespace", OID),
            ("extrelocatable", BOOL),
            ("extversion", TEXT),
            ("extconfig", TEXT),
            ("extcondition", TEXT),
        ],
        query: None,
    },
    Relation {
        name: "pg_opclass",
        columns: &[
            ("oid", OID),
            ("opcmethod", OID),
            ("opcname", NAME),
            ("opcnamespace", OID),
            ("opcowner", OID),
            ("opcfamily", OID),
            ("opcintype", OID),
            ("opcdefault", BOOL),
            ("opckeytype", OID),
        ],
        query: None,
    },
    Relation {
        name: "pg_event_trigger",
        columns: &[
            ("oid", OID),
            ("evtname", NAME),
            ("evtevent", NAME),
            ("evtowner", OID),
            ("evtfoid", OID),
            ("evtenabled", CHAR),
            ("evttags", TEXT),
        ],
        query: None,
    },
    // A sequence's start, bounds and cache are not kept (`_sqlkeeper_sequences` holds its
    // current value and increment): no row rather than invented ones.
    Relation {
        name: "pg_sequence",
        columns: &[
            ("seqrelid", OID),
            ("seqtypid", OID),
            ("seqstart", PgType::Int8),
            ("seqincrement", PgType::Int8),
            ("seqmax", PgType::Int8),
            ("seqmin", PgType::Int8),
            ("seqcache", PgType::Int8),
            ("seqcycle", BOOL),
        ],
        query: None,
    },
    Relation {
        name: "pg_foreign_table",
        columns: &[("ftrelid", OID), ("ftserver", OID), ("ftoptions", TEXT)],
        query: None,
    },
];

const ROLE_COLUMNS: &[(&str, PgType)] = &[
    ("oid", OID),
    ("rolname", NAME),
    ("rolsuper", BOOL),
    ("rolinherit", BOOL),
    ("rolcreaterole", BOOL),
    ("rolcreatedb", BOOL),
    ("rolcanlogin", BOOL),
    ("rolreplication", BOOL),
    ("rolconnlimit", INT4),
    ("rolpassword", TEXT),
    ("rolvaliduntil", PgType::Timestamptz),
    ("rolbypassrls", BOOL),
    ("rolconfig", TEXT),
];

/// The built-in roles, `postgres` (the superuser), `pg_database_owner` (which owns `public`),
/// `pg_read_all_data` and `pg_write_all_data`, and those `CREATE ROLE` made (`roles.rs`; `postgres` has a row there once
/// `ALTER ROLE postgres` changed it). The table's columns are read through expressions: a
/// compound subquery's column takes the declared type of the first arm that has one, and
/// `INTEGER` would hide the columns' catalog types (`bool`).
fn pg_roles() -> String {
    format!(
        "SELECT CAST(column1 AS oid) AS oid, column2 AS rolname, column3 AS rolsuper, 1 AS rolinherit, \
         column3 AS rolcreaterole, column3 AS rolcreatedb, column3 AS rolcanlogin, \
         column3 AS rolreplication, -1 AS rolconnlimit, '********' AS rolpassword, \
         NULL AS rolvaliduntil, column3 AS rolbypassrls, NULL AS rolconfig \
         FROM (VALUES (10, 'postgres', 1), (6171, 'pg_database_owner', 0), \
         (6181, 'pg_read_all_data', 0), (6182, 'pg_write_all_data', 0)) AS v \
         WHERE column2 NOT IN (SELECT name FROM {t}) \
         UNION ALL SELECT CAST(oid AS oid), name || '', superuser + 0, 1, createrole + 0, \
         createdb + 0, login + 0, superuser AND name = 'postgres', -1, '********', NULL, \
         superuser AND name = 'postgres', NULL FROM {t}",
        t = crate::roles::ROLES_TABLE
    )
}

/// The access privileges of the table named by the SQL expression `table`, as PostgreSQL
/// prints an `aclitem[]` (`{owner=arwdDxt/owner,reader=r/owner,=r/owner}`; `=` alone is
/// PUBLIC), from the grants `GRANT` keeps (`privileges.rs`); NULL, PostgreSQL's "the default"
/// (the owner's), for a table nothing was granted on.
fn relacl(table: &str) -> String {
    let owner = format!(
        "coalesce((SELECT o.owner FROM {} AS o WHERE o.name = {table}), 'postgres')",
        crate::privileges::OWNERS_TABLE
    );
    let letters: String = [
        ("INSERT", "a"),
        ("SELECT", "r"),
        ("UPDATE", "w"),
        ("DELETE", "d"),
        ("TRUNCATE", "D"),
        ("REFERENCES", "x"),
        ("TRIGGER", "t"),
    ]
    .iter()
    .map(|(p, l)| format!("CASE WHEN max(g.privilege = '{p}') THEN '{l}' ELSE '' END"))
    .collect::<Vec<_>>()
    .join(" || ");
    format!(
        "(SELECT '{{' || {owner} || '=arwdDxt/' || {owner} || ',' \
         || group_concat(a.item, ',') || '}}' FROM (SELECT \
         CASE g.grantee WHEN 'public' THEN '' ELSE g.grantee END || '=' || {letters} || '/' \
         || {owner} AS item FROM {} AS g WHERE g.kind = 'table' AND g.name = {table} \
         GROUP BY g.grantee ORDER BY g.grantee) AS a HAVING count(*) > 0)",
        crate::privileges::PRIVILEGES_TABLE
    )
}

/// Tables and views, the indexes of every table (those of its constraints under PostgreSQL's
/// names), and sequences.
fn pg_class() -> String {
    let common = "0 AS reloftype, 10 AS relowner, 0 AS relfilenode, 0 AS reltablespace, \
                  0 AS relpages, -1 AS reltuples, 0 AS relallvisible, 0 AS reltoastrelid";
    // A table, view or index is its table's owner's (`privileges.rs`); `postgres` (10) when
    // the superuser made it.
    let owned = common.replace(
        "10 AS relowner",
        &format!(
            "coalesce((SELECT r.oid FROM {} AS o, {} AS r WHERE o.name = s.name \
             AND r.name = o.owner), 10) AS relowner",
            crate::privileges::OWNERS_TABLE,
            crate::roles::ROLES_TABLE
        ),
    );
    let flags = "0 AS relisshared, 'p' AS relpersistence";
    let tail = "0 AS relhastriggers, 0 AS relhassubclass, 0 AS relrowsecurity, \
                0 AS relforcerowsecurity, 1 AS relispopulated";
    let end = "0 AS relispartition, 0 AS relrewrite, NULL AS relacl, NULL AS reloptions";
    let table_end = end.replace("NULL AS relacl", &format!("{} AS relacl", relacl("s.name")));
    // PostgreSQL keeps foreign keys with triggers on both tables, and psql lists a table's
    // foreign keys (and those referencing it) only when it has triggers.
    let triggers = format!(
        "(EXISTS (SELECT 1 FROM pragma_foreign_key_list(s.name)) OR EXISTS (SELECT 1 \
         FROM sqlite_schema AS r, pragma_foreign_key_list(r.name) AS f \
         WHERE r.type = 'table' AND f.\"table\" = s.name)) AS relhastriggers, \
         {}",
        tail.trim_start_matches("0 AS relhastriggers, ")
    );
    format!(
        "SELECT CAST(pg_relation_oid(s.name) AS oid) AS oid, s.name AS relname, \
         2200 AS relnamespace, pg_relation_oid(s.name || '[type]') AS reltype, {owned}, \
         CASE s.type WHEN 'table' THEN 2 ELSE 0 END AS relam, \
         s.type = 'table' AND EXISTS (SELECT 1 FROM pragma_index_list(s.name)) AS relhasindex, \
         {flags}, CASE s.type WHEN 'table' THEN 'r' ELSE 'v' END AS relkind, \
         (SELECT count(*) FROM pragma_table_xinfo(s.name) AS x WHERE x.hidden = 0) AS relnatts, \
         (SELECT json_array_length(sqlkeeper_check_constraints(s.sql))) AS relchecks, s.type = 'view' AS relhasrules, {triggers}, \
         CASE s.type WHEN 'table' THEN 'd' ELSE 'n' END AS relreplident, {table_end} \
         FROM sqlite_schema AS s WHERE s.type IN ('table', 'view') AND {USER_OBJECT} \
         UNION ALL \
         SELECT CAST(pg_relation_oid({INDEX_NAME}) AS oid), {INDEX_NAME}, 2200, 0, {owned}, 403, \
         0, {flags}, \
         'i', (SELECT count(*) FROM pragma_index_info(il.name)), 0, 0, {tail}, 'n', {end} \
         FROM sqlite_schema AS s, pragma_index_list(s.name) AS il \
         WHERE s.type = 'table' AND {USER_OBJECT} \
         UNION ALL \
         SELECT CAST(pg_relation_oid(q.name) AS oid), q.name, 2200, 0, {common}, 0, 0, {flags}, \
         'S', 3, 0, \
         0, {tail}, 'n', {end} FROM _sqlkeeper_sequences AS q"
    )
}

/// One row per index of a table, with the parts of its definition (`head_def`, `keys_def`,
/// `pretty_keys_def`, `predicate_def`;
/// [`index_definitions`] joins them as `pg_get_indexdef` gives them); `indpred` is the
/// predicate in parentheses, as `pg_get_expr` gives it; `indkey` lists its columns' numbers (`0` for an expression), as PostgreSQL's `int2vector`
/// prints them; `indclass` the default operator class (`0`) of each, `indoption` their flags
/// (3, descending with NULLs first, for a `DESC` column; else 0).
fn indexes() -> String {
    format!(
        "SELECT CAST(pg_relation_oid({INDEX_NAME}) AS oid) AS indexrelid, \
         CAST(pg_relation_oid(s.name) AS oid) AS indrelid, \
         (SELECT count(*) FROM pragma_index_info(il.name)) AS indnatts, \
         (SELECT count(*) FROM pragma_index_info(il.name)) AS indnkeyatts, \
         il.\"unique\" AS indisunique, 0 AS indnullsnotdistinct, \
         il.origin = 'pk' AS indisprimary, 0 AS indisexclusion, 1 AS indimmediate, \
         0 AS indisclustered, 1 AS indisvalid, 0 AS indcheckxmin, 1 AS indisready, \
         1 AS indislive, 0 AS indisreplident, \
         (SELECT group_concat(CASE WHEN ii.cid >= 0 THEN ii.cid + 1 ELSE 0 END, ' ' ORDER BY ii.seqno) \
         FROM pragma_index_info(il.name) AS ii) AS indkey, NULL AS indexprs, \
         '(' || sqlkeeper_index_predicate(x.sql) || ')' AS indpred, \
         (SELECT group_concat('0', ' ') FROM pragma_index_info(il.name)) AS indclass, \
         (SELECT group_concat(CASE ix.\"desc\" WHEN 1 THEN 3 ELSE 0 END, ' ' ORDER BY ix.seqno) \
         FROM pragma_index_xinfo(il.name) AS ix WHERE ix.key) AS indoption, \
         'CREATE ' || CASE WHEN il.\"unique\" THEN 'UNIQUE ' ELSE '' END || 'INDEX ' \
         || {INDEX_NAME} || ' ON public.' || s.name || ' USING btree (' AS head_def, \
         s.name AS tablename, {INDEX_NAME} AS indexname, \
         CASE WHEN EXISTS (SELECT 1 FROM pragma_index_info(il.name) AS ij WHERE ij.cid < 0) \
         THEN sqlkeeper_index_keys(x.sql, 0) \
         ELSE (SELECT group_concat(ik.name, ', ' ORDER BY ik.seqno) FROM pragma_index_info(il.name) AS ik) END \
         AS keys_def, \
         CASE WHEN EXISTS (SELECT 1 FROM pragma_index_info(il.name) AS ij WHERE ij.cid < 0) \
         THEN sqlkeeper_index_keys(x.sql, 1) \
         ELSE (SELECT group_concat(ik.name, ', ' ORDER BY ik.seqno) FROM pragma_index_info(il.name) AS ik) END \
         AS pretty_keys_def, sqlkeeper_index_predicate(x.sql) AS predicate_def \
         FROM sqlite_schema AS s, pragma_index_list(s.name) AS il \
         LEFT JOIN sqlite_schema AS x ON x.type = 'index' AND x.name = il.name \
         WHERE s.type = 'table' AND {USER_OBJECT}"
    )
}

/// `pg_index` with each index's definition as `pg_get_indexdef` gives it: `def` (`CREATE INDEX
/// i ON public.t USING btree (a) WHERE (a > 0)`) and, pretty, `prettydef` (`... ON t USING
/// btree (a) WHERE a > 0`). The predicate is the text SQLite keeps, in parentheses where
/// PostgreSQL's non-pretty form has them around it (not around its parts).
fn index_definitions() -> String {
    format!(
        "SELECT i.*, i.head_def || i.keys_def || ')' \
         || coalesce(' WHERE (' || i.predicate_def || ')', '') AS def, \
         replace(i.head_def, ' ON public.', ' ON ') || i.pretty_keys_def || ')' \
         || coalesce(' WHERE ' || i.predicate_def, '') AS prettydef FROM ({}) AS i",
        indexes()
    )
}

/// The primary-key, unique, foreign-key and check constraints of every table, with their
/// definitions (`def`, what `pg_get_constraintdef` gives), under their declared names or
/// PostgreSQL's generated ones (`sqlkeeper_sql::declared_constraints`); and, for
/// `information_schema`, the table's name (`tablename`) and a foreign key's referenced table,
/// columns (comma-separated) and rules (`reftable`, `refcolumns`, `updrule`, `delrule`).
fn constraints() -> String {
    let action = |col: &str| {
        format!(
            "CASE fk.{col} WHEN 'CASCADE' THEN 'c' WHEN 'SET NULL' THEN 'n' \
             WHEN 'SET DEFAULT' THEN 'd' WHEN 'RESTRICT' THEN 'r' ELSE 'a' END"
        )
    };
    let clause = |col: &str, words: &str| {
        format!("CASE fk.{col} WHEN 'NO ACTION' THEN '' ELSE ' {words} ' || fk.{col} END")
    };
    let fk_name = foreign_key_name("fk.id");
    // A reference without columns is to the parent's primary key.
    let to = "coalesce(fk.\"to\", (SELECT t.name FROM pragma_table_info(fk.\"table\") AS t \
              WHERE t.pk = fk.seq + 1))";
    format!(
        "SELECT CAST(pg_relation_oid({INDEX_NAME} || '[constraint]') AS oid) AS oid, \
         {INDEX_NAME} AS conname, 2200 AS connamespace, \
         CASE il.origin WHEN 'pk' THEN 'p' ELSE 'u' END AS contype, 0 AS condeferrable, \
         0 AS condeferred, 1 AS convalidated, CAST(pg_relation_oid(s.name) AS oid) AS conrelid, \
         0 AS contypid, CAST(pg_relation_oid({INDEX_NAME}) AS oid) AS conindid, \
         0 AS conparentid, CAST(0 AS oid) AS confrelid, ' ' AS confupdtype, \
         ' ' AS confdeltype, ' ' AS confmatchtype, 1 AS conislocal, 0 AS coninhcount, \
         0 AS connoinherit, \
         (SELECT '{{' || group_concat(ii.cid + 1, ',' ORDER BY ii.seqno) || '}}' FROM pragma_index_info(il.name) AS ii) \
         AS conkey, NULL AS confkey, \
         CASE il.origin WHEN 'pk' THEN 'PRIMARY KEY (' ELSE 'UNIQUE (' END \
         || (SELECT group_concat(ik.name, ', ' ORDER BY ik.seqno) FROM pragma_index_info(il.name) AS ik) || ')' AS def, \
         s.name AS tablename, NULL AS reftable, NULL AS refcolumns, ' ' AS updrule, ' ' AS delrule \
         FROM sqlite_schema AS s, pragma_index_list(s.name) AS il \
         WHERE s.type = 'table' AND {USER_OBJECT} AND il.origin IN ('pk', 'u') \
         UNION ALL \
         SELECT f.oid, f.conname, 2200, 'f', 0, 0, 1, f.conrelid, 0, \
         coalesce((SELECT CAST(pg_relation_oid({referenced}) AS oid) \
         FROM pragma_index_list(f.reftable) AS ri WHERE ri.\"unique\" AND ri.origin IN ('pk', 'u') \
         AND (SELECT group_concat(rc.name, ',' ORDER BY rc.seqno) FROM pragma_index_info(ri.name) AS rc) \
         = f.refcolumns), 0), \
         0, f.confrelid, f.confupdtype, f.confdeltype, 's', 1, 0, 0, f.conkey, f.confkey, f.def, \
         f.tablename, f.reftable, f.refcolumns, f.updrule, f.delrule FROM ( \
         SELECT CAST(pg_relation_oid({fk_name} || '[constraint]') AS oid) AS oid, {fk_name} AS conname, \
         CAST(pg_relation_oid(s.name) AS oid) AS conrelid, \
         CAST(pg_relation_oid(fk.\"table\") AS oid) AS confrelid, {upd} AS confupdtype, {del} AS confdeltype, \
         '{{' || group_concat((SELECT x.cid + 1 FROM pragma_table_xinfo(s.name) AS x \
         WHERE x.name = fk.\"from\"), ',' ORDER BY fk.seq) || '}}' AS conkey, \
         '{{' || group_concat((SELECT y.cid + 1 FROM pragma_table_xinfo(fk.\"table\") AS y \
         WHERE y.name = {to}), ',' ORDER BY fk.seq) || '}}' AS confkey, \
         'FOREIGN KEY (' || group_concat(fk.\"from\", ', ' ORDER BY fk.seq) || ') REFERENCES ' || fk.\"table\" \
         || '(' || group_concat({to}, ', ' ORDER BY fk.seq) || ')' || {on_update} || {on_delete} AS def, \
         s.name AS tablename, fk.\"table\" AS reftable, group_concat({to}, ',' ORDER BY fk.seq) AS refcolumns, \
         fk.on_update AS updrule, fk.on_delete AS delrule \
         FROM sqlite_schema AS s, pragma_foreign_key_list(s.name) AS fk \
         WHERE s.type = 'table' AND {USER_OBJECT} GROUP BY s.name, fk.id) AS f \
         UNION ALL \
         SELECT CAST(pg_relation_oid(s.name || '.' || json_extract(k.value, '$.name') || '[check]') \
         AS oid), json_extract(k.value, '$.name'), 2200, 'c', 0, 0, 1, \
         CAST(pg_relation_oid(s.name) AS oid), 0, CAST(0 AS oid), 0, CAST(0 AS oid), ' ', ' ', ' ', \
         1, 0, 0, json_extract(k.value, '$.conkey'), NULL, json_extract(k.value, '$.def'), s.name, \
         NULL, NULL, ' ', ' ' \
         FROM sqlite_schema AS s, json_each(sqlkeeper_check_constraints(s.sql)) AS k \
         WHERE s.type = 'table' AND {USER_OBJECT}",
        referenced = referenced_key_name("f.reftable", "f.refcolumns", "ri.origin = 'pk'"),
        upd = action("on_update"),
        del = action("on_delete"),
        on_update = clause("on_update", "ON UPDATE"),
        on_delete = clause("on_delete", "ON DELETE"),
    )
}

/// The columns of `rel` (a relation of [`RELATIONS`]) over `base`, a query that has them and
/// more.
fn project(rel: &str, base: &str) -> String {
    let columns = RELATIONS
        .iter()
        .find(|r| r.name == rel)
        .map(|r| {
            r.columns
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!("SELECT {columns} FROM ({base}) AS b")
}

/// Every column of every table and view (`pragma_table_xinfo`), typed from its declared type.
/// Types of fixed width, which PostgreSQL stores `plain` (`attstorage` `p`): bool, int8, int2,
/// int4, oid, float4, float8, date, time, timestamp, timestamptz, uuid. `numeric` is `main`
/// (`m`), every other type `extended` (`x`).
const PLAIN_STORAGE_TYPES: &str = "16, 20, 21, 23, 26, 700, 701, 1082, 1083, 1114, 1184, 2950";

fn pg_attribute() -> String {
    let type_oid = "coalesce(ut.oid, sqlkeeper_type_oid(p.type))";
    format!(
        "SELECT CAST(pg_relation_oid(s.name) AS oid) AS attrelid, p.name AS attname, \
         {type_oid} AS atttypid, p.cid + 1 AS attnum, \
         sqlkeeper_typmod(p.type) AS atttypmod, \
         CASE WHEN p.type LIKE '%]' THEN 1 ELSE 0 END AS attndims, \
         p.\"notnull\" OR p.pk > 0 AS attnotnull, p.dflt_value IS NOT NULL AS atthasdef, \
         0 AS atthasmissing, '' AS attidentity, '' AS attgenerated, 0 AS attisdropped, \
         1 AS attislocal, 0 AS attinhcount, \
         CASE WHEN {type_oid} IN (25, 1042, 1043) THEN 100 ELSE 0 END \
         AS attcollation, NULL AS attacl, NULL AS attoptions, \
         CASE WHEN ut.oid IS NOT NULL OR {type_oid} IN ({PLAIN_STORAGE_TYPES}) THEN 'p' \
         WHEN {type_oid} = 1700 THEN 'm' ELSE 'x' END AS attstorage, \
         '' AS attcompression, -1 AS attstattarget, \
         CASE WHEN ut.oid IS NOT NULL THEN 4 ELSE CASE {type_oid} WHEN 16 THEN 1 WHEN 21 THEN 2 \
         WHEN 23 THEN 4 WHEN 26 THEN 4 WHEN 700 THEN 4 WHEN 1082 THEN 4 \
         WHEN 20 THEN 8 WHEN 701 THEN 8 WHEN 1083 THEN 8 WHEN 1114 THEN 8 WHEN 1184 THEN 8 \
         WHEN 2950 THEN 16 ELSE -1 END END AS attlen \
         FROM sqlite_schema AS s, pragma_table_xinfo(s.name) AS p {USER_TYPE_JOIN} \
         WHERE s.type IN ('table', 'view') AND {USER_OBJECT} AND p.hidden = 0"
    )
}

/// The default of every column that has one, as PostgreSQL prints it
/// (`sqlkeeper_default_expr`; `pg_get_expr` gives `adbin` back).
fn pg_attrdef() -> String {
    format!(
        "SELECT CAST(pg_relation_oid(s.name || '.' || p.name || '[default]') AS oid) AS oid, \
         CAST(pg_relation_oid(s.name) AS oid) AS adrelid, p.cid + 1 AS adnum, \
         sqlkeeper_default_expr(p.dflt_value, p.type) AS adbin \
         FROM sqlite_schema AS s, pragma_table_xinfo(s.name) AS p \
         WHERE s.type = 'table' AND {USER_OBJECT} AND p.dflt_value IS NOT NULL"
    )
}

/// The built-in types a column can have here, with PostgreSQL's oids and attributes.
fn pg_type() -> String {
    /// oid, name, length, by value, category, preferred, array type's oid, collation.
    type Row = (i64, &'static str, i64, bool, char, bool, i64, i64);
    const TYPES: &[Row] = &[
        (16, "bool", 1, true, 'B', true, 1000, 0),
        (17, "bytea", -1, false, 'U', false, 1001, 0),
        (18, "char", 1, true, 'Z', false, 1002, 100),
        (19, "name", 64, false, 'S', false, 1003, 950),
        (20, "int8", 8, true, 'N', false, 1016, 0),
        (21, "int2", 2, true, 'N', false, 1005, 0),
        (23, "int4", 4, true, 'N', false, 1007, 0),
        (25, "text", -1, false, 'S', true, 1009, 100),
        (26, "oid", 4, true, 'N', true, 1028, 0),
        (114, "json", -1, false, 'U', false, 199, 0),
        (700, "float4", 4, true, 'N', false, 1021, 0),
        (701, "float8", 8, true, 'N', true, 1022, 0),
        (1042, "bpchar", -1, false, 'S', false, 1014, 100),
        (1043, "varchar", -1, false, 'S', false, 1015, 100),
        (1082, "date", 4, true, 'D', false, 1182, 0),
        (1114, "timestamp", 8, true, 'D', false, 1115, 0),
        (1184, "timestamptz", 8, true, 'D', true, 1185, 0),
        (1700, "numeric", -1, false, 'N', false, 1231, 0),
        (2950, "uuid", 16, false, 'U', false, 2951, 0),
        (3802, "jsonb", -1, false, 'U', false, 3807, 0),
    ];
    // Each type, then its array type (`_int4`: category `A`, variable length, its element's
    // collation), as PostgreSQL lists them.
    let rows: Vec<String> = TYPES
        .iter()
        .flat_map(|(oid, name, len, byval, cat, pref, arr, coll)| {
            [
                format!(
                    "({oid}, '{name}', {len}, {}, '{cat}', {}, 0, {arr}, {coll})",
                    i32::from(*byval),
                    i32::from(*pref)
                ),
                format!("({arr}, '_{name}', -1, 0, 'A', 0, {oid}, 0, {coll})"),
            ]
        })
        .collect();
    format!(
        "SELECT CAST(column1 AS oid) AS oid, column2 AS typname, 11 AS typnamespace, 10 AS typowner, \
         column3 AS typlen, column4 AS typbyval, 'b' AS typtype, column5 AS typcategory, \
         column6 AS typispreferred, 1 AS typisdefined, ',' AS typdelim, 0 AS typrelid, \
         column7 AS typelem, column8 AS typarray, 0 AS typbasetype, -1 AS typtypmod, \
         0 AS typndims, column9 AS typcollation, 0 AS typnotnull, NULL AS typacl, \
         NULL AS typdefault FROM (VALUES {}) AS v \
         UNION ALL SELECT t.oid, t.name, 2200, 10, 4, 1, 'e', 'E', 0, 1, ',', 0, 0, 0, 0, -1, 0, \
         0, 0, NULL, NULL FROM {} AS t",
        rows.join(", "),
        crate::enums::TYPES_TABLE
    )
}

fn find(name: &ObjectName) -> Option<&'static Relation> {
    // Runs for every table a statement names: compares without allocating.
    let part = |i: usize| {
        name.0
            .get(i)
            .and_then(|p| p.as_ident())
            .map(|i| i.value.as_str())
    };
    let (schemas, bare): (&[&[Relation]], &str) = match name.0.len() {
        // `pg_catalog` is first on every search path; `information_schema` is on none.
        1 => (&[RELATIONS, EMPTY_RELATIONS], part(0)?),
        2 if part(0)?.eq_ignore_ascii_case("pg_catalog") => {
            (&[RELATIONS, EMPTY_RELATIONS], part(1)?)
        }
        2 if part(0)?.eq_ignore_ascii_case("information_schema") => {
            (&[INFORMATION_SCHEMA], part(1)?)
        }
        _ => return None,
    };
    schemas
        .iter()
        .flat_map(|rels| rels.iter())
        .find(|r| r.name.eq_ignore_ascii_case(bare))
}

/// The query standing in for `rel`.
fn stand_in(rel: &Relation) -> String {
    if let Some(query) = rel.query {
        return query();
    }
    let nulls: Vec<String> = rel
        .columns
        .iter()
        .map(|(c, _)| format!("NULL AS {c}"))
        .collect();
    format!("SELECT {} WHERE 0", nulls.join(", "))
}

/// The catalog relation `name` stands for (`pg_class`, `pg_catalog.pg_class`), if any.
pub(crate) fn relation(name: &ObjectName) -> Option<&'static str> {
    find(name).map(|r| r.name)
}

/// The relations of a query's `FROM` when at least one is a catalog relation, to type the
/// result columns that are its columns ([`Self::column_type`]). Built once per statement, and
/// not at all for queries of user tables only.
pub(crate) struct CatalogSources(Vec<(String, Option<&'static Relation>)>);

impl CatalogSources {
    pub(crate) fn of(select: &Select) -> Option<CatalogSources> {
        let sources = sources(select);
        sources
            .iter()
            .any(|(_, r)| r.is_some())
            .then_some(CatalogSources(sources))
    }

    /// The PostgreSQL type of a result column that is a column of a catalog relation
    /// (`c.relhasindex`, or `relkind` when only catalog relations are in the `FROM`).
    pub(crate) fn column_type(&self, e: &Expr) -> Option<PgType> {
        let of = |rel: &Relation, col: &str| {
            rel.columns.iter().find(|(c, _)| *c == col).map(|(_, t)| *t)
        };
        match e {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let col = parts[parts.len() - 1].value.to_ascii_lowercase();
                let qualifier = parts[parts.len() - 2].value.to_ascii_lowercase();
                let (_, rel) = self.0.iter().find(|(k, _)| *k == qualifier)?;
                of((*rel)?, &col)
            }
            Expr::Identifier(i) => {
                let col = i.value.to_ascii_lowercase();
                if self.0.iter().any(|(_, r)| r.is_none()) {
                    return None;
                }
                let mut found = self.0.iter().filter_map(|(_, r)| of((*r)?, &col));
                let first = found.next();
                first.filter(|_| found.next().is_none())
            }
            _ => None,
        }
    }

    /// The names and types of `SELECT *` over exactly one catalog relation.
    pub(crate) fn wildcard_types(&self) -> Option<Vec<(String, PgType)>> {
        match self.0.as_slice() {
            [(_, Some(rel))] => Some(
                rel.columns
                    .iter()
                    .map(|(c, t)| ((*c).to_string(), *t))
                    .collect(),
            ),
            _ => None,
        }
    }
}

/// The relations of a `FROM`, by the name a column reference qualifies them with, and the
/// catalog relation each is (`None`: another table or a subquery).
fn sources(select: &Select) -> Vec<(String, Option<&'static Relation>)> {
    let mut out = Vec::new();
    for twj in &select.from {
        for factor in std::iter::once(&twj.relation).chain(twj.joins.iter().map(|j| &j.relation)) {
            match factor {
                TableFactor::Table { name, alias, .. } => {
                    let key = match alias {
                        Some(a) => a.name.value.to_ascii_lowercase(),
                        None => name
                            .0
                            .last()
                            .map(|p| p.to_string().trim_matches('"').to_ascii_lowercase())
                            .unwrap_or_default(),
                    };
                    out.push((key, find(name)));
                }
                TableFactor::Derived { alias, .. } => out.push((
                    alias
                        .as_ref()
                        .map(|a| a.name.value.to_ascii_lowercase())
                        .unwrap_or_default(),
                    None,
                )),
                _ => out.push((String::new(), None)),
            }
        }
    }
    out
}

/// For a query that must return no rows because each of its rows would need a row of an
/// always-empty catalog relation ([`EMPTY_RELATIONS`]: psql's `\d table` asks for policies,
/// publications, triggers and inheritance): the same columns, no rows, as a query SQLite can
/// run (the original uses arrays, `WITH ORDINALITY` and other forms it has not).
pub(crate) fn empty_result(stmt: &Statement, hints: &[ColumnHint]) -> Option<Statement> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    if !query_empty(q) {
        return None;
    }
    let s = crate::columns::leftmost_select(q)?;
    if hints.len() != s.projection.len() {
        return None;
    }
    let mut items = Vec::with_capacity(hints.len());
    for (item, hint) in s.projection.iter().zip(hints) {
        let name = match (&hint.name, item) {
            (Some(n), _) => n.clone(),
            (None, SelectItem::UnnamedExpr(Expr::Identifier(i))) => i.value.clone(),
            (None, SelectItem::UnnamedExpr(Expr::CompoundIdentifier(p))) => p.last()?.value.clone(),
            _ => return None,
        };
        items.push(format!("NULL AS \"{}\"", name.replace('"', "\"\"")));
    }
    match Parser::parse_sql(
        &PostgreSqlDialect {},
        &format!("SELECT {} WHERE false", items.join(", ")),
    ) {
        Ok(mut v) => v.pop(),
        Err(_) => None,
    }
}

fn query_empty(q: &Query) -> bool {
    // A common table expression could shadow a catalog name: not decided here.
    q.with.is_none() && set_empty(&q.body)
}

fn set_empty(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(s) => select_empty(s),
        SetExpr::Query(q) => query_empty(q),
        SetExpr::SetOperation {
            op, left, right, ..
        } => match op {
            SetOperator::Union => set_empty(left) && set_empty(right),
            SetOperator::Intersect => set_empty(left) || set_empty(right),
            SetOperator::Except | SetOperator::Minus => set_empty(left),
        },
        _ => false,
    }
}

/// Aggregates, which give a row even over no rows (without `GROUP BY`).
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "string_agg",
    "array_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
];

fn select_empty(s: &Select) -> bool {
    let empty = |t: &TableFactor| match t {
        TableFactor::Table {
            name, args: None, ..
        } => find(name).is_some_and(|r| r.query.is_none()),
        _ => false,
    };
    let needs_empty = s.from.iter().any(|twj| {
        empty(&twj.relation)
            || twj.joins.iter().any(|j| {
                matches!(
                    j.join_operator,
                    JoinOperator::Join(_) | JoinOperator::Inner(_) | JoinOperator::CrossJoin(_)
                ) && empty(&j.relation)
            })
    });
    if !needs_empty {
        return false;
    }
    // An aggregate without GROUP BY gives a row even over no rows.
    let mut aggregates = false;
    let _ = Visit::visit(
        &s.projection,
        &mut FunctionNames {
            call: |name: &str| aggregates |= AGGREGATES.contains(&name),
            depth: 0,
        },
    );
    let grouped = !matches!(&s.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    !aggregates || grouped
}

/// Calls a closure with the (lower-case, unqualified) name of every function in what it
/// visits, outside subqueries (whose aggregates are their own).
struct FunctionNames<F: FnMut(&str)> {
    call: F,
    depth: usize,
}

impl<F: FnMut(&str)> sqlparser::ast::Visitor for FunctionNames<F> {
    type Break = ();
    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth += 1;
        ControlFlow::Continue(())
    }
    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if let (Expr::Function(f), 0) = (e, self.depth) {
            if let Some(last) = f.name.0.last() {
                (self.call)(&last.to_string().trim_matches('"').to_ascii_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

/// The catalog's functions of an object's oid that need the catalog itself, as scalar
/// subqueries over the stand-ins: `pg_get_indexdef(oid)`, `pg_get_constraintdef(oid)`,
/// `pg_get_serial_sequence(table, column)`, and
/// `x::regclass` (a relation's name; a literal name or number is its oid), `x::regtype` (a
/// type's name; a literal name is its oid) and `format_type`, which knows enum types.
fn catalog_expression(e: &Expr) -> Option<Expr> {
    // Runs for every expression of every statement: most leave at these checks.
    match e {
        Expr::Function(f) => {
            let last = &f.name.0.last()?.as_ident()?.value;
            if ![
                "pg_get_indexdef",
                "pg_get_constraintdef",
                "pg_get_viewdef",
                "pg_get_serial_sequence",
                "obj_description",
                "col_description",
                "pg_get_userbyid",
                "to_regclass",
                "format_type",
            ]
            .iter()
            .any(|n| last.eq_ignore_ascii_case(n))
            {
                return None;
            }
        }
        Expr::Cast {
            data_type: DataType::Custom(..) | DataType::Regclass,
            ..
        } => {}
        _ => return None,
    }
    let subquery = |sql: String| parse_query(&sql).map(|q| Expr::Subquery(Box::new(q)));
    match e {
        Expr::Function(f) => {
            let name = f.name.to_string().replace('"', "").to_ascii_lowercase();
            let FunctionArguments::List(list) = &f.args else {
                return None;
            };
            let args: Vec<String> = list.args.iter().map(|a| a.to_string()).collect();
            match (name.trim_start_matches("pg_catalog."), args.as_slice()) {
                ("pg_get_indexdef", [oid]) => {
                    subquery(lookup("indexrelid", "def", &index_definitions(), oid))
                }
                ("pg_get_indexdef", [oid, column, pretty]) if column == "0" => {
                    let def = if literal_true(pretty) {
                        "prettydef"
                    } else {
                        "def"
                    };
                    subquery(lookup("indexrelid", def, &index_definitions(), oid))
                }
                // The definition of one column of the index (from 1): its name, or for an
                // expression the expression as written.
                ("pg_get_indexdef", [oid, column, _]) => subquery(format!(
                    "SELECT _sqlkeeper_c.name FROM (SELECT pg_relation_oid({INDEX_NAME}) AS idx, \
                     ii.seqno + 1 AS n, \
                     coalesce(ii.name, sqlkeeper_index_key(x.sql, ii.seqno + 1)) AS name \
                     FROM sqlite_schema AS s, pragma_index_list(s.name) AS il, \
                     pragma_index_info(il.name) AS ii \
                     LEFT JOIN sqlite_schema AS x ON x.type = 'index' AND x.name = il.name \
                     WHERE s.type = 'table' AND {USER_OBJECT}) \
                     AS _sqlkeeper_c WHERE _sqlkeeper_c.idx = {oid} AND _sqlkeeper_c.n = {column}"
                )),
                // The sequence a `serial` column owns, named as `CREATE TABLE` names it.
                ("pg_get_serial_sequence", [table, column]) => subquery(format!(
                    "SELECT 'public.' || q.name FROM _sqlkeeper_sequences AS q \
                     WHERE q.name = replace({table}, 'public.', '') || '_' || {column} || '_seq'"
                )),
                // A view's definition (`viewdef.rs`), of its oid or its name.
                ("pg_get_viewdef", [view] | [view, _]) => {
                    let pretty = i32::from(args.get(1).is_some_and(|p| literal_true(p)));
                    subquery(format!(
                        "SELECT sqlkeeper_view_definition(s.sql, {pretty}) FROM sqlite_schema AS s \
                         WHERE s.type = 'view' AND {USER_OBJECT} \
                         AND (pg_relation_oid(s.name) = {view} OR s.name = {view})"
                    ))
                }
                ("pg_get_constraintdef", [oid]) => {
                    subquery(lookup("oid", "def", &constraints(), oid))
                }
                // Pretty, a check's expression loses the parentheses PostgreSQL puts around it
                // (`CHECK ((a > 0))` is `CHECK (a > 0)`).
                ("pg_get_constraintdef", [oid, pretty]) => {
                    let def = if literal_true(pretty) {
                        "CASE WHEN c.def LIKE 'CHECK ((%' \
                         THEN 'CHECK (' || substr(c.def, 9, length(c.def) - 10) || ')' \
                         ELSE c.def END"
                    } else {
                        "c.def"
                    };
                    let base = format!("SELECT c.oid, {def} AS def FROM ({}) AS c", constraints());
                    subquery(lookup("oid", "def", &base, oid))
                }
                // Comments are kept for relations (and their columns) only.
                ("obj_description", [oid]) => subquery(description_of(oid, "0")),
                ("obj_description", [oid, catalog])
                    if catalog.trim_matches('\'').trim_start_matches("pg_catalog.")
                        == "pg_class" =>
                {
                    subquery(description_of(oid, "0"))
                }
                ("col_description", [oid, column]) => subquery(description_of(oid, column)),
                ("format_type", [oid, typmod]) => format_type(oid, typmod),
                // A role's name: the built-in ones, and those of the roles table.
                ("pg_get_userbyid", [oid]) => subquery(format!(
                    "SELECT CASE {oid} WHEN 10 THEN 'postgres' WHEN 6171 THEN 'pg_database_owner' \
                     ELSE coalesce((SELECT _sqlkeeper_u.name FROM {} AS _sqlkeeper_u \
                     WHERE _sqlkeeper_u.oid = {oid}), 'unknown (OID=' || {oid} || ')') END",
                    crate::roles::ROLES_TABLE
                )),
                // The relation's oid, or NULL when there is none of that name (`public.` may
                // lead it; an unquoted name is folded to lower case, a quoted one is exact).
                ("to_regclass", [name]) => subquery(format!(
                    "SELECT _sqlkeeper_r.oid FROM ({}) AS _sqlkeeper_r, \
                     (SELECT CASE WHEN substr(_sqlkeeper_n.n, 1, 1) = '\"' \
                     THEN substr(_sqlkeeper_n.n, 2, length(_sqlkeeper_n.n) - 2) \
                     ELSE lower(_sqlkeeper_n.n) END AS n FROM (SELECT CASE \
                     WHEN substr({name}, 1, 7) = 'public.' THEN substr({name}, 8) \
                     ELSE {name} END AS n) AS _sqlkeeper_n) AS _sqlkeeper_w \
                     WHERE _sqlkeeper_r.relname = _sqlkeeper_w.n",
                    pg_class()
                )),
                _ => None,
            }
        }
        Expr::Cast {
            expr, data_type, ..
        } => {
            let ty = data_type.to_string().replace('"', "").to_ascii_lowercase();
            match (ty.trim_start_matches("pg_catalog."), expr.as_ref()) {
                ("regclass", Expr::Value(v)) => match &v.value {
                    Value::SingleQuotedString(s) if s.trim().parse::<i64>().is_ok() => {
                        Some(Expr::Value(Value::Number(s.trim().into(), false).into()))
                    }
                    Value::SingleQuotedString(s) => {
                        let bare = s.trim().trim_start_matches("public.");
                        let name = match bare.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
                            Some(quoted) => quoted.to_string(),
                            None => bare.to_ascii_lowercase(),
                        };
                        parse_expr(&format!("pg_relation_oid('{}')", name.replace('\'', "''")))
                    }
                    _ => None,
                },
                ("regclass", other) => parse_expr(&format!(
                    "coalesce(({}), {other})",
                    lookup("oid", "relname", &pg_class(), &other.to_string())
                )),
                // A type's oid, of its name (an enum's, or a built-in one's)...
                ("regtype", Expr::Value(v)) if matches!(&v.value, Value::SingleQuotedString(_)) => {
                    let Value::SingleQuotedString(s) = &v.value else {
                        return None;
                    };
                    let bare = s.trim().trim_start_matches("public.");
                    let name = match bare.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
                        Some(quoted) => quoted.to_string(),
                        None => bare.to_ascii_lowercase(),
                    };
                    let n = format!("'{}'", name.replace('\'', "''"));
                    parse_expr(&format!(
                        "coalesce((SELECT _sqlkeeper_t.oid FROM {} AS _sqlkeeper_t \
                         WHERE _sqlkeeper_t.name = {n}), sqlkeeper_regtype({n}))",
                        crate::enums::TYPES_TABLE
                    ))
                }
                // ... and of an oid, its name.
                ("regtype", other) => format_type(&other.to_string(), "NULL"),
                // `x::pg_catalog.text` is `x::text`.
                (bare, _) if ty.starts_with("pg_catalog.") => {
                    let parsed = Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(bare)
                        .ok()?
                        .parse_data_type()
                        .ok()?;
                    let mut cast = e.clone();
                    if let Expr::Cast { data_type, .. } = &mut cast {
                        *data_type = parsed;
                    }
                    Some(cast)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// `format_type(oid, typmod)`: an enum type's name (`enums.rs`), quoted where it must be; the
/// engine names the built-in types.
fn format_type(oid: &str, typmod: &str) -> Option<Expr> {
    parse_expr(&format!(
        "coalesce((SELECT CASE WHEN _sqlkeeper_t.name ~ '^[a-z_][a-z0-9_]*$' \
         THEN _sqlkeeper_t.name \
         ELSE '\"' || replace(_sqlkeeper_t.name, '\"', '\"\"') || '\"' END \
         FROM {} AS _sqlkeeper_t WHERE _sqlkeeper_t.oid = {oid}), \
         sqlkeeper_format_type({oid}, {typmod}))",
        crate::enums::TYPES_TABLE
    ))
}

/// `COMMENT ON`'s descriptions (`comments.rs`): of relations (`objsubid` 0) and of columns
/// (`objsubid` the column's number, as `pg_attribute.attnum`), all in `pg_class`'s catalog.
fn pg_description() -> String {
    format!(
        "SELECT CAST(pg_relation_oid(c.relname) AS oid) AS objoid, \
         CAST(pg_relation_oid('pg_catalog.pg_class') AS oid) AS classoid, \
         CASE WHEN c.colname = '' THEN 0 ELSE (SELECT p.cid + 1 FROM pragma_table_xinfo(c.relname) AS p \
         WHERE p.name = c.colname) END AS objsubid, c.description AS description \
         FROM {} AS c",
        crate::comments::COMMENTS_TABLE
    )
}

/// `SELECT description FROM pg_description WHERE objoid = oid AND objsubid = subid`, with
/// the stand-in's names out of reach of `oid` and `subid`, expressions of the enclosing query.
fn description_of(oid: &str, subid: &str) -> String {
    format!(
        "SELECT _sqlkeeper_d.description FROM ({}) AS _sqlkeeper_d \
         WHERE _sqlkeeper_d.objoid = {oid} AND _sqlkeeper_d.objsubid = {subid}",
        pg_description()
    )
}

/// `SELECT value FROM base WHERE key = arg`, with `base`'s columns renamed so that `arg`, an
/// expression of the enclosing query (`oid`, `c.oid`), cannot name one of them.
/// Whether a function's argument, as written, is a true boolean constant (`true`, `'t'`): the
/// `pretty` flag of `pg_get_indexdef`, `pg_get_constraintdef` and `pg_get_viewdef`, which
/// clients pass as a constant. Anything else (a parameter, an expression) counts as false.
fn literal_true(arg: &str) -> bool {
    ["true", "'t'", "'true'", "1"].contains(&arg.to_ascii_lowercase().as_str())
}

fn lookup(key: &str, value: &str, base: &str, arg: &str) -> String {
    format!(
        "SELECT _sqlkeeper_l._sqlkeeper_v FROM (SELECT b.{key} AS _sqlkeeper_k, \
         b.{value} AS _sqlkeeper_v FROM ({base}) AS b) AS _sqlkeeper_l \
         WHERE _sqlkeeper_l._sqlkeeper_k = {arg}"
    )
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

struct Rewriter {
    /// Replace catalog relations (not in UPDATE or DELETE: their target keeps its name).
    catalog: bool,
    /// Names of common table expressions, which take precedence over the catalog.
    ctes: Vec<String>,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = q.body.as_mut() {
            set_returning_items(select);
        }
        if let Some(with) = &q.with {
            self.ctes.extend(
                with.cte_tables
                    .iter()
                    .map(|c| c.alias.name.value.to_ascii_lowercase()),
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, t: &mut TableFactor) -> ControlFlow<()> {
        if let Some(rows) = unnest_in_from(t) {
            *t = rows;
            return ControlFlow::Continue(());
        }
        match t {
            TableFactor::Table { name, alias, .. } if self.catalog => {
                let shadowed = name.0.len() == 1
                    && self
                        .ctes
                        .contains(&name.to_string().trim_matches('"').to_ascii_lowercase());
                if let Some(rel) = find(name).filter(|_| !shadowed) {
                    if let Some(query) = parse_query(&stand_in(rel)) {
                        let alias = alias.clone().unwrap_or(TableAlias {
                            explicit: true,
                            name: Ident::new(rel.name),
                            columns: Vec::new(),
                            at: None,
                        });
                        *t = TableFactor::Derived {
                            lateral: false,
                            subquery: Box::new(query),
                            alias: Some(alias),
                            sample: None,
                        };
                    }
                }
            }
            // SQLite has no column list on a derived table's alias: `(VALUES ...) AS v(a, b)`
            // becomes `(SELECT column1 AS a, column2 AS b FROM (VALUES ...)) AS v`.
            TableFactor::Derived {
                subquery,
                alias: Some(alias),
                ..
            } if !alias.columns.is_empty() && matches!(*subquery.body, SetExpr::Values(_)) => {
                let width = match &*subquery.body {
                    SetExpr::Values(v) => v.rows.first().map_or(0, |r| r.len()),
                    _ => 0,
                };
                // Columns past the alias list keep SQLite's names.
                let items: Vec<String> = (0..width.max(alias.columns.len()))
                    .map(|i| match alias.columns.get(i) {
                        Some(c) => format!("column{} AS {}", i + 1, c.name),
                        None => format!("column{}", i + 1),
                    })
                    .collect();
                let sql = format!("SELECT {} FROM ({subquery})", items.join(", "));
                if let Some(q) = parse_query(&sql) {
                    **subquery = q;
                    alias.columns.clear();
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        if let Some(replaced) = catalog_expression(e) {
            *e = replaced;
            return ControlFlow::Continue(());
        }
        // pg_catalog.pg_class.relname -> pg_class.relname
        if let Expr::CompoundIdentifier(parts) = e {
            if parts.len() == 3 && parts[0].value.eq_ignore_ascii_case("pg_catalog") {
                parts.remove(0);
            }
        }
        ControlFlow::Continue(())
    }
}

/// The set-returning call a select-list expression is, if any: `unnest(a)`,
/// `generate_subscripts(a, 1)`, `information_schema._pg_expandarray(a)` or a field of the last
/// (`(_pg_expandarray(a)).n`): the array's SQL text and what of each element it gives.
fn set_returning_call(e: &Expr) -> Option<Result<(String, SetReturned), ()>> {
    let (f, field) = match e {
        Expr::Function(f) => (f, None),
        Expr::CompoundFieldAccess { root, access_chain } => {
            let mut inner = root.as_ref();
            while let Expr::Nested(x) = inner {
                inner = x;
            }
            let (Expr::Function(f), [sqlparser::ast::AccessExpr::Dot(Expr::Identifier(id))]) =
                (inner, access_chain.as_slice())
            else {
                return None;
            };
            (f, Some(id.value.to_ascii_lowercase()))
        }
        _ => return None,
    };
    // Runs for every select item of every query: most leave here, without allocating.
    let last = &f.name.0.last()?.as_ident()?.value;
    if !["unnest", "generate_subscripts", "_pg_expandarray"]
        .iter()
        .any(|n| last.eq_ignore_ascii_case(n))
    {
        return None;
    }
    let name = last.to_ascii_lowercase();
    let FunctionArguments::List(list) = &f.args else {
        return Some(Err(()));
    };
    let args: Vec<String> = list.args.iter().map(|a| a.to_string()).collect();
    use SetReturned::{Element, Position, Subscript};
    Some(match (name.as_str(), args.as_slice(), field.as_deref()) {
        ("unnest", [a], None) => Ok((a.clone(), Element)),
        ("generate_subscripts", [a, dim], None) if dim == "1" => Ok((a.clone(), Subscript)),
        // `_pg_expandarray` gives rows `(x, n)`: the element and its position. The record
        // itself stands for its `x` (`(result.keys).x` is rewritten to `result.keys`).
        ("_pg_expandarray", [a], None | Some("x")) => Ok((a.clone(), Element)),
        ("_pg_expandarray", [a], Some("n")) => Ok((a.clone(), Position)),
        _ => Err(()),
    })
}

/// What a set-returning call of an array gives in each row.
#[derive(Clone, Copy)]
enum SetReturned {
    /// The array's element (`unnest`).
    Element,
    /// The element's position from 1 (`(_pg_expandarray(a)).n`).
    Position,
    /// The element's subscript (`generate_subscripts(a, 1)`): its position from 1 in an
    /// array, from 0 in an `int2vector` or `oidvector` (`pg_index.indkey`).
    Subscript,
}

/// Set-returning functions of arrays in a select list (`SELECT unnest(a),
/// generate_subscripts(a, 1) FROM t`, as SQLAlchemy reads `pg_index.indkey` and `indclass`
/// together; pgjdbc's `_pg_expandarray(indkey)`): one row per element, as a join with
/// `json_each` of the array (`array_to_json` reads the text forms of arrays, `int2vector` and
/// `oidvector`). Several arrays run in lockstep, as in PostgreSQL 10 and later: as many rows
/// as the longest has, a shorter one's elements NULL past its end. Left alone for other
/// dimensions.
fn set_returning_items(select: &mut Select) {
    let mut arrays: Vec<String> = Vec::new();
    for item in &select.projection {
        let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item else {
            continue;
        };
        match set_returning_call(e) {
            None => continue,
            Some(Err(())) => return,
            Some(Ok((arg, _))) if !arrays.contains(&arg) => arrays.push(arg),
            Some(Ok(_)) => {}
        }
    }
    let json = |a: &str| format!("array_to_json({a})");
    let rows = match arrays.as_slice() {
        [] => return,
        [one] => json(one),
        several => {
            let length = |a: &String| format!("cardinality({a})");
            let longest = format!(
                "max({})",
                several.iter().map(length).collect::<Vec<_>>().join(", ")
            );
            let mut case = String::from("CASE");
            for a in several {
                case += &format!(" WHEN {} = {longest} THEN {}", length(a), json(a));
            }
            case + " END"
        }
    };
    let Some(from) = parse_query(&format!("SELECT 1 FROM json_each({rows}) AS _sqlkeeper_u"))
        .and_then(|q| match *q.body {
            SetExpr::Select(s) => s.from.into_iter().next(),
            _ => None,
        })
    else {
        return;
    };
    select.from.push(from);
    for item in &mut select.projection {
        let (e, alias) = match item {
            SelectItem::UnnamedExpr(e) => (e, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
            _ => continue,
        };
        let Some(Ok((array, returned))) = set_returning_call(e) else {
            continue;
        };
        let replacement = match returned {
            SetReturned::Position => "_sqlkeeper_u.key + 1".to_string(),
            SetReturned::Subscript if arrays.len() == 1 => {
                format!("_sqlkeeper_u.key + array_lower({array}, 1)")
            }
            SetReturned::Subscript => format!(
                "CASE WHEN _sqlkeeper_u.key < cardinality({array}) \
                 THEN _sqlkeeper_u.key + array_lower({array}, 1) END"
            ),
            SetReturned::Element if arrays.len() == 1 => "_sqlkeeper_u.value".to_string(),
            SetReturned::Element => format!(
                "json_extract({}, '$[' || _sqlkeeper_u.key || ']')",
                json(&array)
            ),
        };
        // The column keeps the function's (or the field's) name, as PostgreSQL names it.
        let name = match e {
            Expr::Function(f) => f.name.0.last().map(|p| p.to_string().to_ascii_lowercase()),
            Expr::CompoundFieldAccess { access_chain, .. } => match access_chain.as_slice() {
                [sqlparser::ast::AccessExpr::Dot(Expr::Identifier(id))] => {
                    Some(id.value.to_ascii_lowercase())
                }
                _ => None,
            },
            _ => None,
        };
        let Some(x) = parse_expr(&replacement) else {
            continue;
        };
        *item = SelectItem::ExprWithAlias {
            expr: x,
            alias: alias.unwrap_or_else(|| Ident::new(name.unwrap_or_default())),
        };
    }
}

/// `FROM unnest(array) AS x` (also `pg_catalog.unnest`), as psql's `\d+` reads
/// `reloptions`: a derived table of the array's elements whose one column is named as the
/// alias, so that `x` in the select list is the element, as in PostgreSQL.
fn unnest_in_from(t: &TableFactor) -> Option<TableFactor> {
    let (array, alias) = match t {
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } => match array_exprs.as_slice() {
            [a] => (a.to_string(), alias.clone()),
            _ => return None,
        },
        TableFactor::Table {
            name,
            args: Some(args),
            alias,
            ..
        } => {
            let last = name.0.last()?.as_ident()?;
            let schema_ok = match name.0.as_slice() {
                [_] => true,
                [s, _] => s.to_string().eq_ignore_ascii_case("pg_catalog"),
                _ => false,
            };
            if !schema_ok || !last.value.eq_ignore_ascii_case("unnest") {
                return None;
            }
            match args.args.as_slice() {
                [a] => (a.to_string(), alias.clone()),
                _ => return None,
            }
        }
        _ => return None,
    };
    let alias = alias.unwrap_or(TableAlias {
        explicit: true,
        name: Ident::new("unnest"),
        columns: Vec::new(),
        at: None,
    });
    let column = alias
        .columns
        .first()
        .map_or_else(|| alias.name.to_string(), |c| c.name.to_string());
    let query = parse_query(&format!(
        "SELECT _sqlkeeper_e.value AS {column} FROM json_each(array_to_json({array})) AS _sqlkeeper_e"
    ))?;
    Some(TableFactor::Derived {
        lateral: false,
        subquery: Box::new(query),
        alias: Some(TableAlias {
            columns: Vec::new(),
            ..alias
        }),
        sample: None,
    })
}

fn parse_query(sql: &str) -> Option<Query> {
    match Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?.pop()? {
        Statement::Query(q) => Some(*q),
        _ => None,
    }
}

/// Replaces catalog relations by their stand-in queries, and derived `VALUES` tables with
/// column aliases by a form SQLite accepts.
pub(crate) fn rewrite(stmt: &mut Statement) {
    // Not in UPDATE or DELETE, whose target is a table factor too: a user table keeps its name.
    let catalog = !matches!(stmt, Statement::Update { .. } | Statement::Delete(_));
    let _ = stmt.visit(&mut Rewriter {
        catalog,
        ctes: Vec::new(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stand-in parses, and its first select's columns are the relation's, in order
    /// (the types given to a result's columns are looked up by these names).
    #[test]
    fn stand_ins_return_the_declared_columns() {
        for rel in RELATIONS
            .iter()
            .chain(EMPTY_RELATIONS)
            .chain(INFORMATION_SCHEMA)
        {
            let q = parse_query(&stand_in(rel))
                .unwrap_or_else(|| panic!("{}: stand-in does not parse", rel.name));
            let s = crate::columns::leftmost_select(&q)
                .unwrap_or_else(|| panic!("{}: not a select", rel.name));
            let names: Vec<String> = s
                .projection
                .iter()
                .map(|i| match i {
                    SelectItem::ExprWithAlias { alias, .. } => alias.value.clone(),
                    // A projection of a base query (`project`).
                    SelectItem::UnnamedExpr(Expr::Identifier(i)) => i.value.clone(),
                    other => panic!("{}: unnamed column {other}", rel.name),
                })
                .collect();
            let declared: Vec<&str> = rel.columns.iter().map(|(c, _)| *c).collect();
            assert_eq!(names, declared, "{}", rel.name);
        }
    }

    fn select(sql: &str) -> Select {
        match parse_query(sql).map(|q| *q.body) {
            Some(SetExpr::Select(s)) => *s,
            _ => panic!("{sql}"),
        }
    }

    #[test]
    fn catalog_columns_are_typed_by_their_relation() {
        let s = select(
            "SELECT c.relhasindex, relkind, n.nspname, t.x FROM pg_catalog.pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace, t",
        );
        let sources = CatalogSources::of(&s).expect("catalog relations");
        let ty = |i: usize| match &s.projection[i] {
            SelectItem::UnnamedExpr(e) => sources.column_type(e),
            _ => None,
        };
        assert_eq!(ty(0), Some(PgType::Bool));
        // Unqualified, beside a table that is not the catalog's: it could be the table's.
        assert_eq!(ty(1), None);
        assert_eq!(ty(2), Some(PgType::Text));
        assert_eq!(ty(3), None);
        let only = select("SELECT relkind, indisunique FROM pg_class, pg_index");
        match &only.projection[1] {
            SelectItem::UnnamedExpr(e) => assert_eq!(
                CatalogSources::of(&only).and_then(|c| c.column_type(e)),
                Some(PgType::Bool)
            ),
            _ => unreachable!(),
        }
        let star = select("SELECT * FROM pg_catalog.pg_am");
        assert_eq!(
            CatalogSources::of(&star)
                .and_then(|c| c.wildcard_types())
                .map(|c| c.len()),
            Some(4),
            "a * over one catalog relation is typed"
        );
        let mixed = select("SELECT * FROM pg_am, t");
        assert_eq!(
            CatalogSources::of(&mixed).and_then(|c| c.wildcard_types()),
            None
        );
        assert!(
            CatalogSources::of(&select("SELECT a FROM t JOIN u ON true")).is_none(),
            "no catalog relation, nothing to look up"
        );
    }
}
