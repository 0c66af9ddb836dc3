//! The SQL layer: Postgres SQL in, SQLite SQL out.
//!
//! [`translate`] parses a query string with `sqlparser` (Postgres dialect), classifies each
//! statement ([`StatementKind`]), rewrites its AST into SQLite SQL and names the Postgres
//! command tag it will answer with. Everything here is a pure function: no I/O, no tokio,
//! no SQLite. Rewrites are done on the AST, never on SQL text.
//!
//! What is translated and what is refused: `docs/compat.md`.
#![deny(missing_docs)]

pub mod array;
mod assign;
mod catalog;
mod classify;
mod columns;
mod comments;
mod copy;
pub mod datetime;
mod declared;
mod enums;
mod error;
mod literals;
pub mod numeric;
mod params;
mod plan;
mod privileges;
mod rebuild;
mod rewrite;
mod roles;
mod series;
mod session_values;
mod translate;
pub mod uuid;
mod values;
mod viewdef;

pub use assign::{assignable, Assigned, AssignedColumn};
pub use classify::{
    AdminCall, CommandTag, CursorOp, Isolation, SessionOp, StatementKind, TxnOp, ADMIN_FUNCTIONS,
    INTROSPECTION_VIEWS,
};
pub use columns::{pg_type_of_name, pg_typmod_of_name, Aggregate, ColumnHint, PgType};
pub use comments::{COMMENTS_TABLE, COMMENTS_TABLE_SQL};
pub use copy::{CopyFormat, CopySpec, ForceQuote};
pub use declared::{
    declared_constraint_name, declared_constraints, declared_index, Declared, IndexKey,
};
pub use enums::{ENUM_LABELS_TABLE, TYPES_TABLE, TYPES_TABLE_SQL};
pub use error::{SqlError, SqlState};
pub use literals::{Literal, LITERAL_PARAMS_MAX};
pub use params::ParamType;
pub use privileges::{
    MAY_FUNCTION, MEMBERS_TABLE, OWNERS_TABLE, PRIVILEGES_TABLE, PRIVILEGES_TABLES_SQL, PUBLIC,
    READ_ALL_DATA, ROLE_FUNCTION, WRITE_ALL_DATA,
};
pub use rebuild::{rebuild_create_table, retyped_column_triggers, AlterOp, REBUILD_TABLE_FUNCTION};
pub use roles::{ROLES_TABLE, ROLES_TABLE_SQL, SUPERUSER};
pub use session_values::SessionValue;
pub use translate::{
    translate, Effect, ExistenceNotice, Translated, COLUMNS_MARKER, DEFAULT_MARKER,
    PARSER_RECURSION_LIMIT, QUERY_BYTES_MAX,
};
pub use values::{
    ADD_FUNCTION, CAST_FUNCTION, DIV_FUNCTION, MOD_FUNCTION, MUL_FUNCTION, NAN_OR_FUNCTION,
    NEG_FUNCTION, SERIES_FIRST_FUNCTION, SERIES_NEXT_FUNCTION, SINGLE_ROW_FUNCTION, SUB_FUNCTION,
    VALID_FUNCTION,
};
pub use viewdef::view_definition;
