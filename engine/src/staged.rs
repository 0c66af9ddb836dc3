//! Transactions larger than one log entry. A block whose steps do not fit in one entry
//! (`COMMAND_BYTES_MAX`) is replicated as several [`Command::TransactionPart`] entries, each
//! holding a run of its steps, followed by the [`Command::Transaction`] that commits it. Applying
//! a part only keeps its steps in the replicated table [`STAGED_TABLE`]; applying the commit
//! takes them out again, in order, and replays the whole block at the commit's position in the
//! log, exactly as a block of one entry. So the block is still all or nothing, and its place in
//! the serial order is its commit's. Design: `docs/transactions.md` (Large transactions).
//!
//! Sizes here are upper bounds of the JSON the log stores ([`statement_size_bound`]), computed
//! without encoding; the way steps are cut into parts ([`TxnSize`]) is a function of the steps
//! alone, so the block writer and every replica give a block the same work budget
//! ([`txn_vm_steps_max`]).
//!
//! [`Command::TransactionPart`]: crate::Command::TransactionPart
//! [`Command::Transaction`]: crate::Command::Transaction

use std::ops::Range;

use rusqlite::{params, Connection};

use crate::command::{RequestId, Statement, TxnStep, Value};

/// Largest encoded command (statements and parameters): one log entry. An entry must fit, with
/// up to `MAX_PAYLOAD_ENTRIES` others, in one cluster frame (`FRAME_BYTES_MAX`, 64 MiB); a
/// metadata store's statements are far smaller. A transaction block larger than this is
/// replicated as several entries of at most this size each.
pub const COMMAND_BYTES_MAX: usize = 512 * 1024;

/// Largest transaction block, all its steps as encoded in the log (about 500 entries). It
/// bounds the memory a block keeps on its session and what its parts keep in every replica's
/// staging table until the commit. Loading 1,000,000 narrow rows with `COPY` (`pgbench -i -s
/// 10`) takes about 75 MiB; a block over this fails with 54000 at the statement that crosses
/// it, and can only be rolled back.
pub const TXN_BYTES_MAX: usize = 256 * 1024 * 1024;

/// How long staged parts whose commit never came are kept, in the log's time (leaders' clocks,
/// as stamped in the entries). A block's parts and its commit are proposed one after another
/// within seconds; parts are left behind only if the committing node failed half way. They
/// are dropped when a later part or large commit is applied more than this after them.
pub const STAGED_TTL_MICROS: i64 = 10 * 60 * 1_000_000;

/// The replicated table that holds the parts of transactions not committed yet.
pub const STAGED_TABLE: &str = "_sqlkeeper_staged";

pub(crate) fn create_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {STAGED_TABLE} (origin INTEGER NOT NULL, serial INTEGER NOT NULL, \
         seq INTEGER NOT NULL, log_clock INTEGER NOT NULL, steps BLOB NOT NULL, \
         PRIMARY KEY (origin, serial, seq)) STRICT, WITHOUT ROWID"
    )
}

/// JSON length of a string: quotes, plus one extra byte per escaped `"` or `\`, five per
/// control character (`\u00XX`); other characters are written as UTF-8.
pub fn json_str_len(s: &str) -> usize {
    2 + s.len()
        + s.bytes()
            .map(|b| match b {
                b'"' | b'\\' => 1,
                0..=0x1f => 5,
                _ => 0,
            })
            .sum::<usize>()
}

/// An upper bound of the JSON size of a statement in a log entry, computed without encoding it
/// (this runs for every write).
pub fn statement_size_bound(s: &Statement) -> usize {
    64 + effect_size_bound(&s.effect)
        + json_str_len(&s.sql)
        + s.params.iter().map(value_size_bound).sum::<usize>()
}

/// An upper bound of the JSON size of a statement's effect (nothing when plain).
pub fn effect_size_bound(effect: &crate::Effect) -> usize {
    match effect {
        // {"Defaults":{"table":"...","width":4294967295,"assigned":[...]}}, each
        // assigned {"column":{"Position":4294967295},"from":"..."} or
        // {"column":{"Name":"..."},"from":"..."}
        crate::Effect::Defaults {
            table, assigned, ..
        } => {
            64 + json_str_len(table)
                + assigned
                    .iter()
                    .map(|a| {
                        let column = match &a.column {
                            crate::AssignedColumn::Name(n) => json_str_len(n),
                            crate::AssignedColumn::Position(_) => 10,
                        };
                        56 + column + json_str_len(&a.from)
                    })
                    .sum::<usize>()
        }
        _ => 0,
    }
}

/// An upper bound of the JSON size of a value in a log entry, with its separator.
pub fn value_size_bound(v: &Value) -> usize {
    match v {
        Value::Null => 8,
        // {"Integer":-9223372036854775808},
        Value::Integer(i) => 13 + digits(*i),
        Value::Real(_) => 40,
        Value::Text(t) => 16 + json_str_len(t),
        // a byte is a number of at most 3 digits and a comma
        Value::Blob(b) => 16 + 4 * b.len(),
    }
}

fn digits(i: i64) -> usize {
    let sign = usize::from(i < 0);
    let mut n = i.unsigned_abs();
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    sign + d
}

/// An upper bound of the JSON size of a transaction step.
pub fn step_size_bound(step: &TxnStep) -> usize {
    match step {
        TxnStep::Sql(s) | TxnStep::Read(s) => {
            16 + s.iter().map(statement_size_bound).sum::<usize>()
        }
        TxnStep::Savepoint(n) | TxnStep::Release(n) | TxnStep::RollbackTo(n) => {
            32 + json_str_len(n)
        }
    }
}

/// How a block's steps fill log entries: each part takes steps in order while they fit in
/// [`COMMAND_BYTES_MAX`] (a step larger than that alone is a part of its own, and is refused
/// when proposed). Adding steps never lowers the count of parts, so the budget a block has
/// while it runs is never above the one its entries get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnSize {
    /// Entries the steps take (0 before the first step).
    pub parts: usize,
    /// Size bound of the last part's steps.
    last: usize,
    /// Size bound of all steps.
    pub total: usize,
}

impl TxnSize {
    /// The size after one more step of `bytes`; whether the step starts a new part.
    pub fn add(&mut self, bytes: usize) -> bool {
        self.total = self.total.saturating_add(bytes);
        if self.parts == 0 || self.last.saturating_add(bytes) > COMMAND_BYTES_MAX {
            self.parts += 1;
            self.last = bytes;
            true
        } else {
            self.last += bytes;
            false
        }
    }

    /// The size of `steps`.
    pub fn of(steps: &[TxnStep]) -> TxnSize {
        let mut size = TxnSize::default();
        for s in steps {
            size.add(step_size_bound(s));
        }
        size
    }
}

/// The steps of each log entry a block takes, in order (one range for a block that fits in
/// one entry), and the size of them all.
pub fn split_steps(steps: &[TxnStep]) -> (Vec<Range<usize>>, TxnSize) {
    let mut size = TxnSize::default();
    let mut parts: Vec<Range<usize>> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        if size.add(step_size_bound(s)) {
            parts.push(i..i + 1);
        } else if let Some(p) = parts.last_mut() {
            p.end = i + 1;
        }
    }
    (parts, size)
}

/// The work budget of a block of `size`: `base` (one entry's) for each entry it takes. A large
/// block may do as much work per byte as an autocommit write may, and no more.
pub fn txn_vm_steps_max(base: u64, size: TxnSize) -> u64 {
    base.saturating_mul(size.parts.max(1) as u64)
}

/// Keeps a part of the transaction `txn` (its commit's request id) until the commit, and drops
/// parts left behind longer than [`STAGED_TTL_MICROS`] before `clock`.
pub(crate) fn stage(
    conn: &Connection,
    txn: &RequestId,
    seq: u32,
    clock: i64,
    steps: &[TxnStep],
) -> rusqlite::Result<()> {
    forget_stale(conn, clock)?;
    let json = serde_json::to_vec(steps)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {STAGED_TABLE} (origin, serial, seq, log_clock, steps) \
         VALUES (?1, ?2, ?3, ?4, ?5)"
    ))?
    .execute(params![
        txn.origin as i64,
        txn.serial as i64,
        seq,
        clock,
        json
    ])?;
    Ok(())
}

/// Why the staged parts of a transaction could not be taken.
#[derive(Debug)]
pub(crate) enum Missing {
    /// Part `seq` was never applied here, or was dropped as stale: the transaction cannot
    /// be applied (the same on every replica).
    Part(u32),
    /// The table could not be read.
    Sql(rusqlite::Error),
}

/// Takes the `parts` staged parts of `txn` out of the staging table (they are deleted whether
/// or not all were there) and returns their steps in order.
pub(crate) fn take(
    conn: &Connection,
    txn: &RequestId,
    parts: u32,
    clock: i64,
) -> Result<Vec<TxnStep>, Missing> {
    let ids = params![txn.origin as i64, txn.serial as i64];
    let mut steps = Vec::new();
    let mut missing = None;
    {
        let mut s = conn
            .prepare_cached(&format!(
                "SELECT seq, steps FROM {STAGED_TABLE} WHERE origin = ?1 AND serial = ?2 ORDER BY seq"
            ))
            .map_err(Missing::Sql)?;
        let mut rows = s.query(ids).map_err(Missing::Sql)?;
        let mut expect = 0u32;
        while let Some(r) = rows.next().map_err(Missing::Sql)? {
            let seq: u32 = r.get(0).map_err(Missing::Sql)?;
            if seq != expect || seq >= parts {
                missing.get_or_insert(expect);
                break;
            }
            expect += 1;
            let json: Vec<u8> = r.get(1).map_err(Missing::Sql)?;
            let part: Vec<TxnStep> = serde_json::from_slice(&json).map_err(|e| {
                Missing::Sql(rusqlite::Error::FromSqlConversionFailure(
                    1,
                    rusqlite::types::Type::Blob,
                    Box::new(e),
                ))
            })?;
            steps.extend(part);
        }
        if expect < parts {
            missing.get_or_insert(expect);
        }
    }
    conn.prepare_cached(&format!(
        "DELETE FROM {STAGED_TABLE} WHERE origin = ?1 AND serial = ?2"
    ))
    .and_then(|mut s| s.execute(ids))
    .map_err(Missing::Sql)?;
    forget_stale(conn, clock).map_err(Missing::Sql)?;
    match missing {
        Some(seq) => Err(Missing::Part(seq)),
        None => Ok(steps),
    }
}

/// Drops the parts of `txn`, whose commit could not be applied.
pub(crate) fn drop_parts(conn: &Connection, txn: &RequestId) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "DELETE FROM {STAGED_TABLE} WHERE origin = ?1 AND serial = ?2"
    ))?
    .execute(params![txn.origin as i64, txn.serial as i64])?;
    Ok(())
}

fn forget_stale(conn: &Connection, clock: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!("DELETE FROM {STAGED_TABLE} WHERE log_clock < ?1"))?
        .execute([clock.saturating_sub(STAGED_TTL_MICROS)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(rows: usize) -> TxnStep {
        TxnStep::Sql(vec![Statement::plain(
            "INSERT INTO t VALUES (?1)",
            (0..rows as i64).map(Value::Integer).collect(),
        )])
    }

    #[test]
    fn size_bound_is_never_below_the_real_encoding() {
        let stmt = Statement {
            sql: "INSERT INTO t VALUES (?1, ?2, ?3) -- \"quoted\" \\ \n\t é".into(),
            params: vec![
                Value::Text("a\u{1}b\"c\\".into()),
                Value::Blob(vec![255, 0, 17]),
                Value::Integer(i64::MIN),
                Value::Integer(0),
                Value::Integer(i64::MAX),
                Value::Real(-1.234_567_890_123_456_7e-300),
                Value::Null,
            ],
            // The longest effect, which the JSON spells out.
            effect: crate::Effect::Defaults {
                table: "a \"quoted\" \\ table".into(),
                width: Some(u32::MAX),
                assigned: vec![
                    crate::Assigned {
                        column: crate::AssignedColumn::Name("\"c\"\u{1}".into()),
                        from: "double precision".into(),
                    },
                    crate::Assigned {
                        column: crate::AssignedColumn::Position(u32::MAX),
                        from: "timestamp with time zone".into(),
                    },
                ],
            },
        };
        let real = serde_json::to_vec(&vec![stmt.clone()]).unwrap().len();
        assert!(
            statement_size_bound(&stmt) >= real,
            "{} < {real}",
            statement_size_bound(&stmt)
        );
        let steps = vec![
            TxnStep::Sql(vec![stmt.clone()]),
            TxnStep::Read(vec![stmt]),
            TxnStep::Savepoint("_sqlkeeper_sp_0".into()),
            TxnStep::RollbackTo("\"x\"".into()),
        ];
        for s in &steps {
            let real = serde_json::to_vec(&vec![s.clone()]).unwrap().len();
            assert!(
                step_size_bound(s) >= real,
                "{s:?}: {} < {real}",
                step_size_bound(s)
            );
        }
        assert_eq!(
            json_str_len("a\"\\\u{1}é"),
            serde_json::to_string("a\"\\\u{1}é").unwrap().len()
        );
        for i in [0, 9, 10, -1, -10, i64::MIN, i64::MAX] {
            assert_eq!(digits(i), i.to_string().len(), "{i}");
        }
    }

    #[test]
    fn steps_are_cut_into_parts_that_fit_an_entry_and_the_count_only_grows() {
        let small = insert(10);
        let step = step_size_bound(&small);
        let per_part = COMMAND_BYTES_MAX / step;
        let steps: Vec<TxnStep> = (0..per_part * 2 + 1).map(|_| small.clone()).collect();
        let (parts, whole) = split_steps(&steps);
        assert_eq!(
            parts,
            vec![
                0..per_part,
                per_part..2 * per_part,
                2 * per_part..steps.len()
            ]
        );
        let mut size = TxnSize::default();
        let mut last = 0;
        for s in &steps {
            size.add(step_size_bound(s));
            assert!(size.parts >= last);
            last = size.parts;
        }
        assert_eq!(size, TxnSize::of(&steps));
        assert_eq!(size, whole);
        assert_eq!(size.parts, 3);
        assert_eq!(txn_vm_steps_max(10, size), 30);
        assert_eq!(txn_vm_steps_max(10, TxnSize::default()), 10);
        assert!(split_steps(&[]).0.is_empty());
    }
}
