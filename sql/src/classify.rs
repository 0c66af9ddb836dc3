//! What kind of statement this is, and which command tag it answers with.

use sqlparser::ast::{ObjectType, Statement};

/// How the node must run a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementKind {
    /// Reads only: runs on a local read-only connection, never through the log.
    Read,
    /// Changes rows: replicated through the log.
    Write,
    /// Changes the schema: replicated through the log.
    Ddl,
    /// `BEGIN`, `COMMIT`, `ROLLBACK`, savepoints: handled by the session.
    Transaction(TxnOp),
    /// `SET`, `SHOW`, `RESET`: session state, never SQLite.
    Session(SessionOp),
    /// `SELECT sqlkeeper.add_node(4, '127.0.0.1:7436')` and the other cluster functions:
    /// run by the node, never by SQLite.
    Admin(AdminCall),
    /// A read of the node's introspection views (`sqlkeeper.status`, `sqlkeeper.nodes`):
    /// runs on a scratch database holding the node's current values.
    Introspection,
    /// `COPY ... FROM STDIN` (the rows come from the client afterwards) or `COPY ... TO
    /// STDOUT` (the statement's SQLite SQL is the query whose rows are sent).
    Copy(crate::copy::CopySpec),
    /// `DECLARE c CURSOR FOR query`, `FETCH`, `CLOSE`: a cursor of the session's transaction
    /// block, never SQLite.
    Cursor(CursorOp),
}

/// A cursor statement (`cursor.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorOp {
    /// `DECLARE name CURSOR FOR query`: the query's Postgres text, translated and run when the
    /// cursor is declared.
    Declare {
        /// The cursor's name, folded as PostgreSQL folds names.
        name: String,
        /// The query.
        query: String,
    },
    /// `FETCH [FORWARD] [n | ALL | NEXT] FROM name`: the next `count` rows (`None`: all).
    Fetch {
        /// The cursor's name.
        name: String,
        /// How many rows, at most.
        count: Option<u64>,
    },
    /// `CLOSE name`, or `CLOSE ALL` (`None`).
    Close(Option<String>),
}

/// A call of a cluster administration function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCall {
    /// Function name without the `sqlkeeper.` prefix, lower case.
    pub function: String,
    /// Literal arguments, as text.
    pub args: Vec<String>,
}

/// Cluster administration functions, with their argument counts.
pub const ADMIN_FUNCTIONS: &[(&str, usize)] = &[
    ("add_learner", 2),
    ("add_node", 2),
    ("remove_node", 1),
    ("transfer_leader", 1),
    ("state_hash", 0),
    ("backup", 0),
];

/// Introspection views in the `sqlkeeper` schema.
pub const INTROSPECTION_VIEWS: &[&str] = &["status", "nodes"];

/// Transaction-control statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// `BEGIN` / `START TRANSACTION`; `true` when it was spelled `START TRANSACTION`.
    Begin {
        /// Spelled `START TRANSACTION` (the tag differs).
        start: bool,
        /// `READ ONLY` (`Some(true)`) or `READ WRITE` (`Some(false)`) was given.
        read_only: Option<bool>,
        /// `ISOLATION LEVEL ...` was given.
        isolation: Option<Isolation>,
    },
    /// `SET TRANSACTION ...`: the modes of the open block, before its first statement.
    SetTransaction {
        /// `READ ONLY` / `READ WRITE`, if given.
        read_only: Option<bool>,
        /// `ISOLATION LEVEL ...`, if given.
        isolation: Option<Isolation>,
    },
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE [SAVEPOINT] name`.
    Release(String),
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackTo(String),
}

/// The isolation level of a transaction block (`docs/transactions.md`, Isolation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Each statement sees the latest committed state; the block's writes commit if they
    /// return, at the block's place in the log, the results its client saw. PostgreSQL's
    /// default. `READ UNCOMMITTED` means this too, as in PostgreSQL.
    ReadCommitted,
    /// The block reads one snapshot, and commits only if everything it read and wrote returns
    /// the same results at its place in the log: serializable here.
    RepeatableRead,
    /// As `RepeatableRead`.
    Serializable,
}

impl Isolation {
    /// The level as PostgreSQL spells it in `SHOW transaction_isolation`.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read committed",
            Isolation::RepeatableRead => "repeatable read",
            Isolation::Serializable => "serializable",
        }
    }

    /// Parses a setting's value (`'read committed'`, `SERIALIZABLE`, ...).
    pub fn parse(value: &str) -> Option<Isolation> {
        let v = value
            .trim()
            .trim_matches('\'')
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        match v.as_str() {
            "read committed" | "read uncommitted" => Some(Isolation::ReadCommitted),
            "repeatable read" => Some(Isolation::RepeatableRead),
            "serializable" => Some(Isolation::Serializable),
            _ => None,
        }
    }

    /// Whether the block's reads are part of what it commits on (and read one snapshot).
    pub fn checks_reads(self) -> bool {
        !matches!(self, Isolation::ReadCommitted)
    }
}

/// Session statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOp {
    /// `SET name = value` / `SET name TO value` (value as text; `None` for `DEFAULT`).
    Set {
        /// Parameter name, lower case.
        name: String,
        /// New value, or `None` to reset.
        value: Option<String>,
    },
    /// `SHOW name` (lower case; `all` for `SHOW ALL`).
    Show(String),
    /// `RESET name` / `RESET ALL` (`None`).
    Reset(Option<String>),
    /// `SELECT set_config('name', 'value', is_local)`: as `SET`, answering the new value in a
    /// row (`is_local` is not kept apart: the change lasts for the session).
    SetConfig {
        /// Parameter name, lower case.
        name: String,
        /// New value, or `None` (NULL) to reset.
        value: Option<String>,
    },
}

/// The command tag Postgres answers a statement with. Counted tags get their row count when
/// the result is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandTag {
    /// `SELECT n` (rows returned).
    Select,
    /// `INSERT 0 n`.
    Insert,
    /// `UPDATE n`.
    Update,
    /// `DELETE n`.
    Delete,
    /// A tag without a count, e.g. `CREATE TABLE`.
    Fixed(&'static str),
    /// `COPY n` (rows copied).
    Copy,
    /// `FETCH n` (rows fetched from a cursor).
    Fetch,
}

impl CommandTag {
    /// The tag text for `rows` rows, exactly as Postgres sends it in CommandComplete.
    pub fn render(&self, rows: u64) -> String {
        match self {
            CommandTag::Select => format!("SELECT {rows}"),
            CommandTag::Insert => format!("INSERT 0 {rows}"),
            CommandTag::Update => format!("UPDATE {rows}"),
            CommandTag::Delete => format!("DELETE {rows}"),
            CommandTag::Fixed(t) => (*t).to_string(),
            CommandTag::Copy => format!("COPY {rows}"),
            CommandTag::Fetch => format!("FETCH {rows}"),
        }
    }
}

pub(crate) fn drop_tag(object_type: &ObjectType) -> &'static str {
    match object_type {
        ObjectType::Table => "DROP TABLE",
        ObjectType::View => "DROP VIEW",
        ObjectType::Index => "DROP INDEX",
        ObjectType::Schema => "DROP SCHEMA",
        ObjectType::Sequence => "DROP SEQUENCE",
        ObjectType::Type => "DROP TYPE",
        _ => "DROP",
    }
}

/// Whether a query contains a data-modifying statement (e.g. `WITH x AS (INSERT ...)`).
pub(crate) fn query_writes(stmt: &Statement) -> bool {
    let mut writes = false;
    let _ = sqlparser::ast::visit_statements(stmt, |s| {
        if matches!(
            s,
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
        ) {
            writes = true;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    writes
}
