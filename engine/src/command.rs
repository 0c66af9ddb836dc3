//! What goes into the Raft log. Encoding and versioning: `docs/log-format.md`.

use serde::{Deserialize, Serialize};
pub use sqlkeeper_sql::{Assigned, AssignedColumn, Effect};

/// Position of an entry in the Raft log. openraft numbers entries from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogIndex(pub u64);

impl LogIndex {
    /// The index of the entry after this one.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
}

impl std::fmt::Display for LogIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Values fixed by the leader when it proposes a command, so that every replica computes the
/// same rows: the statement time and a random seed. See `docs/determinism.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Stamp {
    /// Wall-clock time of the leader, microseconds since the Unix epoch (UTC).
    pub unix_micros: i64,
    /// Seed for every source of randomness while applying the command.
    pub seed: u64,
}

/// Identifies a client request across retries, so a command that is proposed twice (for
/// example after a leader change with an unknown outcome) is applied once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// The node that accepted the request from the client.
    pub origin: u64,
    /// A number unique on that node (start time and counter).
    pub serial: u64,
}

/// A SQL value as SQLite stores it: used for bound parameters and for result rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// 64-bit signed integer.
    Integer(i64),
    /// 64-bit float. JSON has no infinities and no NaN: those are written as PostgreSQL
    /// spells them (`{"Real":"-Infinity"}`, [`float_json`]).
    Real(#[serde(with = "float_json")] f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A float in the log's JSON: a number when it is finite, else `"Infinity"`, `"-Infinity"` or
/// `"NaN"` (serde_json would write `null`, which would change the value on every replica).
mod float_json {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(f: &f64, s: S) -> Result<S::Ok, S::Error> {
        if f.is_finite() {
            s.serialize_f64(*f)
        } else {
            s.serialize_str(&sqlkeeper_sql::numeric::float_text(*f, false))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        struct Float;
        impl Visitor<'_> for Float {
            type Value = f64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number, \"Infinity\", \"-Infinity\" or \"NaN\"")
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<f64, E> {
                Ok(v)
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<f64, E> {
                Ok(v as f64)
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<f64, E> {
                match v {
                    "Infinity" => Ok(f64::INFINITY),
                    "-Infinity" => Ok(f64::NEG_INFINITY),
                    "NaN" => Ok(f64::NAN),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Float)
    }
}

/// A literal the translator bound as a parameter (`sqlkeeper_sql::Literal`) is the same SQLite
/// value as the literal was.
impl From<&sqlkeeper_sql::Literal> for Value {
    fn from(l: &sqlkeeper_sql::Literal) -> Value {
        match l {
            sqlkeeper_sql::Literal::Integer(i) => Value::Integer(*i),
            sqlkeeper_sql::Literal::Real(f) => Value::Real(*f),
            sqlkeeper_sql::Literal::Text(s) => Value::Text(s.clone()),
        }
    }
}

/// One translated SQLite statement with its bound parameters (`?1`, `?2`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// SQLite SQL, translated from Postgres by the accepting node; apply makes it
    /// deterministic with the entry's stamp (`docs/determinism.md`).
    pub sql: String,
    /// Values for `?1..?n`.
    pub params: Vec<Value>,
    /// What applying it does besides running its SQL (set by the translator; not in the JSON
    /// when plain).
    #[serde(default, skip_serializing_if = "Effect::is_plain")]
    pub effect: Effect,
}

impl Statement {
    /// A statement with no effect beyond its SQL.
    pub fn plain(sql: impl Into<String>, params: Vec<Value>) -> Statement {
        Statement {
            sql: sql.into(),
            params,
            effect: Effect::Plain,
        }
    }
}

/// The build an entry was proposed by, and the work it may do: the same on every replica,
/// because it travels in the entry. A replica refuses (and stops at) an entry of another
/// engine or SQLite version: what a statement computes, and how many steps it takes, depend on
/// both (`docs/determinism.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryHeader {
    /// [`ENGINE_APPLY_VERSION`] of the proposing build.
    pub engine_version: u32,
    /// `SQLITE_VERSION_NUMBER` of the proposing build's SQLite.
    pub sqlite_version: u32,
    /// SQLite virtual-machine steps the entry may take (`crate::ENTRY_VM_STEPS_MAX` when
    /// proposed by a node).
    pub vm_steps_max: u64,
}

/// Version of what applying an entry means: bumped whenever a change of the engine could make
/// the same entry compute something else (functions, rewrites at apply, limits, the rules for
/// failures). Version 3: step budgets, exhaustive error classes, row ids below the maximum,
/// outcome digests in the request table. Version 4: a transaction applies when its replay
/// returns the results its client saw, with no whole-database base check; read steps; the
/// sequence values a block drew travel in its record; statements carry their effect. Version 5:
/// the value functions (`_sqlkeeper_div`, `_sqlkeeper_mod`, `_sqlkeeper_cast`, `_sqlkeeper_valid`,
/// `values.rs`) that translated statements and table checks call; Postgres' `upper`, `lower`,
/// `replace` and `reverse` in place of SQLite's; `jsonb` normalized (`jsonb.rs`). Version 6:
/// casts to `date`, `timestamp` and `timestamptz` give the text PostgreSQL prints (in UTC),
/// read `'now'` and `'today'` from the stamp, and refuse input forms other than ISO 8601
/// (`sqlkeeper_sql::datetime`). Version 7: casts to `float8`/`float4` read text as PostgreSQL
/// does (22P02, 22003, single precision for `real`) and `double precision`/`real` columns
/// check their values. Version 8: a `date` keeps its day at `24:00`, fractions of a
/// microsecond round half to even, lone numbers as dates fail as in PostgreSQL. Version 9:
/// PostgreSQL's math and string functions (`pgfuncs.rs`), `upper`/`lower` one character at a
/// time, `pg_bool` of an integer, `_sqlkeeper_single` (a scalar subquery of several rows).
/// Version 11: `+`, `-`, `*` as `_sqlkeeper_add`, `_sqlkeeper_sub`, `_sqlkeeper_mul` (22003 on
/// overflow). Version 12: `extract`, `date_part`, `date_trunc` of every unit PostgreSQL has
/// (22023 and 0A000 where it refuses one, not NULL), `make_date`, `make_timestamp`, `date ±
/// integer` and `date - date` (`datefuncs.rs`); the JSON operators and functions of
/// `jsonfuncs.rs`; `+ - * / %` of `smallint`/`integer` operands checked against their range
/// (a third argument); [`Effect::Defaults`] (column lists and `DEFAULT` resolved at apply).
/// Version 13: `numeric` casts and checks (`_sqlkeeper_cast(v, 'numeric', typmod)`: 22P02,
/// rounding to the scale, 22003 past the precision) and the rounding triggers of
/// `numeric(p, s)` columns. Version 14: [`Effect::Defaults`] carries the typed values a
/// statement assigns, checked against their columns' types before it runs (42804); a float
/// quotient or product that underflows to zero, or a quotient that overflows, is 22003;
/// `_sqlkeeper_series_first` and `_sqlkeeper_series_next` (`generate_series`, `series.rs`).
/// Version 15: the regular-expression operators (`textregexeq`, `texticregexeq`), the text
/// form of arrays (`_sqlkeeper_array_element`, `array_to_string`) and the catalog's lookup
/// functions (`catalogfuncs.rs`). Version 16: the comments table (`COMMENT ON`,
/// `sqlkeeper_sql::COMMENTS_TABLE`), kept by `DROP` and `ALTER TABLE`. Version 17: `a[i]`,
/// `array_lower` and `array_upper` of an `int2vector`'s text form count from 0, as PostgreSQL's
/// vectors do. Version 18: enum types (`CREATE TYPE ... AS ENUM`, `sqlkeeper_sql::TYPES_TABLE`
/// and `ENUM_LABELS_TABLE`), the membership triggers of enum columns, and a column of a type
/// that is neither built in nor an enum refused (42704); no double-quoted string literals
/// (`"x"` naming no column is 42703, not the string `'x'`); a transaction that rebuilds a table
/// runs with foreign keys checked after each step instead of enforced
/// ([`Command::rebuilds_tables`]). Version 19: a transaction larger than one entry, in
/// [`Command::TransactionPart`] entries and a commit (`staged.rs`); a transaction's work budget
/// is the entry's for each entry its steps take (`txn_vm_steps_max`). Version 20: array
/// columns and values (`arrays.rs`: their checks and triggers keep the text form with each
/// element as its type prints it; `ARRAY[…]`, `ANY`/`ALL` over arrays, `@>` of arrays, the
/// array functions), and text read as an integer out of range names the value. Version 21:
/// float NaN kept as the text `'NaN'` (`sqlkeeper_sql::numeric::NAN_TEXT`) where it was refused,
/// a float column's trigger storing text specials (`'-inf'`) as the floats they are, `sum` and
/// `avg` NaN over a NaN (`sqlkeeper_sql::NAN_OR_FUNCTION`), and non-finite `Real` parameters
/// in the JSON ([`Value::Real`]). Version 22: entries carry the role their statements run as,
/// checked against the privileges in the state (`privileges.rs`), and `_sqlkeeper_role` and
/// `_sqlkeeper_may`.
pub const ENGINE_APPLY_VERSION: u32 = 22;

impl EntryHeader {
    /// The header this build writes, with the default budget.
    pub fn current() -> EntryHeader {
        EntryHeader {
            engine_version: ENGINE_APPLY_VERSION,
            sqlite_version: rusqlite::ffi::SQLITE_VERSION_NUMBER as u32,
            vm_steps_max: crate::limits::ENTRY_VM_STEPS_MAX,
        }
    }

    /// Whether this build applies entries with this header.
    pub fn is_current(&self) -> bool {
        let me = EntryHeader::current();
        self.engine_version == me.engine_version && self.sqlite_version == me.sqlite_version
    }
}

/// An entry in the Raft log, as the application sees it. Versioned: see `docs/log-format.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// SQL statements run in one SQLite transaction (all or nothing), with values fixed by
    /// the leader.
    Execute {
        /// The proposing build and the budget; `None` in entries written before headers
        /// existed, which this build refuses to apply.
        #[serde(default)]
        header: Option<EntryHeader>,
        /// Deduplication key; `None` for commands that are safe to apply twice.
        request_id: Option<RequestId>,
        /// Time and seed fixed by the leader.
        stamp: Stamp,
        /// The statements, in order.
        statements: Vec<Statement>,
        /// The role they run as (`privileges.rs`); `None` for a superuser.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
    /// An interactive transaction block, replicated at `COMMIT` as the steps its client ran
    /// and the results it saw. Every replica replays the steps at the entry's position in the
    /// log and applies them only if they return exactly those results: then the block is
    /// indistinguishable from one that ran alone at that position. Otherwise nothing is
    /// applied and the outcome is 40001. See `docs/transactions.md`.
    Transaction {
        /// As for `Execute`. The budget counts every step together.
        #[serde(default)]
        header: Option<EntryHeader>,
        /// Deduplication key.
        request_id: Option<RequestId>,
        /// What the block did and saw.
        record: TxnRecord,
    },
    /// A run of the steps of a transaction block too large for one entry, replicated before
    /// its [`Command::Transaction`] (whose `record.staged` counts the parts). Applying it only
    /// keeps the steps until that commit (`staged.rs`); it changes no table of the database.
    /// Applying it twice is harmless (the same part is kept again), so it has no request id.
    TransactionPart {
        /// As for `Execute`.
        #[serde(default)]
        header: Option<EntryHeader>,
        /// The request id of the transaction's commit entry.
        txn: RequestId,
        /// The part's place among the transaction's parts, from 0.
        seq: u32,
        /// The leader's time when it proposed the part (for the staging table's expiry), and
        /// a seed, unused.
        stamp: Stamp,
        /// The steps, in order.
        steps: Vec<TxnStep>,
    },
}

/// How a transaction larger than one entry reached the log: its steps are in the
/// [`Command::TransactionPart`] entries before its commit (`staged.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    /// The number of parts; the commit's own `steps` follow theirs.
    pub parts: u32,
    /// Whether a staged step rebuilds a table ([`Command::rebuilds_tables`] must know before
    /// the parts are read).
    pub rebuilds_tables: bool,
}

/// A finished transaction block: what a node proposes at `COMMIT` and what
/// [`Command::Transaction`] carries. The one shape of a transaction's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// Time and seed of the block, fixed when it began: every step runs with them, on every
    /// replica.
    pub stamp: Stamp,
    /// What the block ran, in order: its writes, and the reads whose results must hold at
    /// its position in the log (all of them under `REPEATABLE READ` and `SERIALIZABLE`).
    pub steps: Vec<TxnStep>,
    /// Every value `nextval` gave the steps, in the order they asked: replay gives each step
    /// the same values again.
    #[serde(default)]
    pub values: Vec<SeqValue>,
    /// Hex SHA-256 over the hashes of the steps' results as the client saw them (rows, row
    /// counts, SQLSTATEs).
    pub digest: String,
    /// For a block larger than one entry, where the rest of its steps are; `None` when
    /// `steps` are all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staged: Option<Staged>,
    /// The role its steps run as (`privileges.rs`); `None` for a superuser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// One value `nextval` gave a transaction step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqValue {
    /// The step (from 0) that asked.
    pub step: u32,
    /// The sequence.
    pub sequence: String,
    /// A value reserved for the block's node ahead of time (`Command::Execute` of
    /// `_sqlkeeper_reserve`), which no one else is given; `None` for a sequence the block
    /// created itself, which replay draws from the sequence as it stands.
    pub value: Option<i64>,
}

/// One step of a replicated transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnStep {
    /// One client statement (possibly several SQLite statements), all or nothing: a failure
    /// undoes the statement only, as the client's `ROLLBACK TO SAVEPOINT` after an error does.
    Sql(Vec<Statement>),
    /// A read whose result the block depends on: replay runs it again and its result must be
    /// the one the client saw. It changes nothing.
    Read(Vec<Statement>),
    /// `SAVEPOINT name`.
    Savepoint(String),
    /// `RELEASE SAVEPOINT name`.
    Release(String),
    /// `ROLLBACK TO SAVEPOINT name`.
    RollbackTo(String),
}

impl TxnStep {
    /// The SQLite statements of the step (none for savepoint steps).
    pub fn statements(&self) -> &[Statement] {
        match self {
            TxnStep::Sql(s) | TxnStep::Read(s) => s,
            TxnStep::Savepoint(_) | TxnStep::Release(_) | TxnStep::RollbackTo(_) => &[],
        }
    }

    /// Whether the step rebuilds a table (an `ALTER TABLE` form SQLite lacks).
    pub fn rebuilds_tables(&self) -> bool {
        matches!(self, TxnStep::Sql(s) if s.iter().any(|s| s.effect == Effect::RebuildTable))
    }
}

impl Command {
    /// The entry's header.
    pub fn header(&self) -> Option<EntryHeader> {
        match self {
            Command::Execute { header, .. }
            | Command::Transaction { header, .. }
            | Command::TransactionPart { header, .. } => *header,
        }
    }

    /// The entry's time and seed.
    pub fn stamp(&self) -> Stamp {
        match self {
            Command::Execute { stamp, .. } | Command::TransactionPart { stamp, .. } => *stamp,
            Command::Transaction { record, .. } => record.stamp,
        }
    }

    /// The role the entry's statements run as; `None` for a superuser (and for the parts of
    /// a transaction, which run nothing until its commit).
    pub fn role(&self) -> Option<&str> {
        match self {
            Command::Execute { role, .. } => role.as_deref(),
            Command::Transaction { record, .. } => record.role.as_deref(),
            Command::TransactionPart { .. } => None,
        }
    }

    /// The entry's deduplication key.
    pub fn request_id(&self) -> Option<RequestId> {
        match self {
            Command::Execute { request_id, .. } | Command::Transaction { request_id, .. } => {
                *request_id
            }
            Command::TransactionPart { .. } => None,
        }
    }

    /// Whether applying the command rebuilds a table (`ALTER TABLE` forms SQLite lacks). Such a
    /// command is applied in a SQLite transaction of its own with foreign-key enforcement off
    /// (SQLite cannot switch it inside a transaction), so a table other tables reference can be
    /// rebuilt: an `Execute` command gets a full foreign-key check at its end; a transaction's
    /// steps are each checked as they run (`step::run_step`), as they were for its client on the
    /// block writer, which runs such a block the same way (`txn.rs`). The decision depends on
    /// the command alone, so every replica applies it the same way.
    pub fn rebuilds_tables(&self) -> bool {
        match self {
            Command::Execute { statements, .. } => {
                statements.iter().any(|s| s.effect == Effect::RebuildTable)
            }
            Command::Transaction { record, .. } => {
                record.staged.is_some_and(|s| s.rebuilds_tables)
                    || record.steps.iter().any(TxnStep::rebuilds_tables)
            }
            Command::TransactionPart { .. } => false,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Execute { statements, .. } => {
                write!(f, "execute({} statements)", statements.len())
            }
            Command::Transaction { record, .. } => match record.staged {
                Some(s) => write!(
                    f,
                    "transaction({} parts and {} steps)",
                    s.parts,
                    record.steps.len()
                ),
                None => write!(f, "transaction({} steps)", record.steps.len()),
            },
            Command::TransactionPart { seq, steps, .. } => {
                write!(f, "transaction part {seq} ({} steps)", steps.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Value;

    #[test]
    fn non_finite_reals_survive_the_json_of_the_log() {
        for f in [f64::INFINITY, f64::NEG_INFINITY, 1.5, -0.0, 5e-324, 1e300] {
            let json = serde_json::to_string(&Value::Real(f)).unwrap();
            let back: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(back, Value::Real(f), "{json}");
        }
        let nan = serde_json::to_string(&Value::Real(f64::NAN)).unwrap();
        assert_eq!(nan, r#"{"Real":"NaN"}"#);
        assert!(matches!(serde_json::from_str(&nan).unwrap(), Value::Real(f) if f.is_nan()));
        assert_eq!(
            serde_json::to_string(&Value::Real(f64::NEG_INFINITY)).unwrap(),
            r#"{"Real":"-Infinity"}"#
        );
        // Entries written before version 21 carry plain numbers, integers among them.
        assert_eq!(
            serde_json::from_str::<Value>(r#"{"Real":2}"#).unwrap(),
            Value::Real(2.0)
        );
        assert!(serde_json::from_str::<Value>(r#"{"Real":"inf"}"#).is_err());
    }
}
