//! Postgres sequences on the apply connection: `nextval`, `currval`, `setval`.
//!
//! A sequence is a row of `_sqlkeeper_sequences`. SQLite functions cannot run SQL, so the
//! apply thread loads the rows into [`SequenceCell`] before every command,
//! the functions work on that copy, and the changed values are written back in the same
//! SQLite transaction after the command, whether it succeeded or failed: as in Postgres,
//! `nextval` is not undone by a rollback. Every replica applies the same commands in the same
//! order, so every replica hands out the same numbers. `currval` is scoped to one command
//! (Postgres scopes it to a session, which a replicated log has no notion of).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::Connection;

use crate::command::SeqValue;
use crate::error::raise;

/// Name of the table holding sequences.
pub(crate) const SEQUENCES_TABLE: &str = "_sqlkeeper_sequences";

/// Marker for an error raised on purpose with a Postgres SQLSTATE: `sqlkeeper:XXXXX:message`.
pub(crate) const RAISE_PREFIX: &str = "sqlkeeper:";

#[derive(Debug, Clone)]
struct Seq {
    last_value: i64,
    increment: i64,
    is_called: bool,
    dirty: bool,
}

/// The internal function that reserves values of a sequence for one node's transaction
/// blocks: `_sqlkeeper_reserve(name, count)` takes the next `count` values in one step, as
/// `count` calls of `nextval` would, and returns them as text `first increment count` (fewer
/// than asked when the sequence would pass the largest bigint). A node proposes it in an
/// ordinary entry, so every replica agrees on who has which values.
pub const RESERVE_FUNCTION: &str = "_sqlkeeper_reserve";

/// How many values a node reserves at a time for its blocks: a block that inserts a row into
/// a `SERIAL` table costs one log entry per this many rows on that node, plus one ordinary
/// entry's round trip when its node has none left. Values a node holds when it stops are
/// never handed out (gaps, as with a Postgres sequence's `CACHE`).
pub const RESERVED_VALUES: i64 = 32;

/// The most values one reservation takes: a statement that needs more of one sequence than
/// its node holds reserves again, four times as many each time, up to this.
pub const RESERVED_VALUES_MAX: i64 = 1 << 20;

/// Values of sequences reserved for this node's transaction blocks, handed out in order.
#[derive(Default)]
pub struct ReservedValues(Mutex<HashMap<String, VecDeque<Range>>>);

struct Range {
    next: i64,
    increment: i64,
    left: i64,
}

impl ReservedValues {
    /// Adds `count` values of `sequence`, `first` and then every `increment`.
    pub(crate) fn add(&self, sequence: &str, first: i64, increment: i64, count: i64) {
        if count > 0 {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(sequence.to_string())
                .or_default()
                .push_back(Range {
                    next: first,
                    increment,
                    left: count,
                });
        }
    }

    /// The next reserved value of `sequence`, if the sequence still stands past it (a value
    /// the sequence has not reached was not reserved from this sequence: it was dropped and
    /// created again, or restarted, since; such values are forgotten).
    fn take(&self, sequence: &str, seq: &Seq) -> Option<i64> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ranges = all.get_mut(sequence)?;
        let r = ranges.front_mut()?;
        let v = r.next;
        let reached = if seq.increment >= 0 {
            seq.is_called && v <= seq.last_value
        } else {
            seq.is_called && v >= seq.last_value
        };
        if !reached || r.increment != seq.increment {
            all.remove(sequence);
            return None;
        }
        r.left -= 1;
        r.next = r.next.wrapping_add(r.increment);
        if r.left == 0 {
            ranges.pop_front();
        }
        Some(v)
    }
}

/// Where `nextval` takes its values.
#[derive(Default)]
pub(crate) enum Draw {
    /// From the sequence's row: autocommit entries.
    #[default]
    Row,
    /// A block step running for the first time: from the values reserved for this node
    /// (recording each in `drawn`), or from the row for sequences the block created itself
    /// (`local`). When none are reserved, `needs` names the sequence and the statement fails;
    /// the node reserves some and runs the statement again.
    Fresh {
        reserved: Arc<ReservedValues>,
        local: HashSet<String>,
        drawn: Vec<SeqValue>,
        needs: Option<String>,
    },
    /// A block step replayed: the values it drew when it first ran, in order.
    Replay(VecDeque<SeqValue>),
}

/// Sequences of the command being applied.
#[derive(Default)]
pub(crate) struct SequenceCell {
    /// Where `nextval` takes its values; [`load`] sets it back to [`Draw::Row`].
    pub(crate) draw: Draw,
    seqs: HashMap<String, Seq>,
    /// `currval` values set by `nextval`/`setval` in this command.
    current: HashMap<String, i64>,
    /// Sequences whose rows disappeared during the command (`DROP SEQUENCE`), with the values
    /// taken from them: if the row comes back (`ROLLBACK TO`), so do those values.
    dropped: HashMap<String, Seq>,
}

pub(crate) fn create_table(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {SEQUENCES_TABLE} (name TEXT PRIMARY KEY, last_value INTEGER NOT NULL, \
         increment INTEGER NOT NULL, is_called INTEGER NOT NULL) STRICT;"
    ))
}

/// Loads every sequence before a command that uses them.
pub(crate) fn load(conn: &Connection, cell: &Mutex<SequenceCell>) -> rusqlite::Result<()> {
    let mut c = cell.lock().unwrap_or_else(|p| p.into_inner());
    c.draw = Draw::Row;
    c.seqs.clear();
    c.current.clear();
    c.dropped.clear();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT name, last_value, increment, is_called FROM {SEQUENCES_TABLE}"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        c.seqs.insert(
            r.get(0)?,
            Seq {
                last_value: r.get(1)?,
                increment: r.get(2)?,
                is_called: r.get::<_, i64>(3)? != 0,
                dirty: false,
            },
        );
    }
    Ok(())
}

/// After a statement changed the sequences table (`CREATE`/`DROP SEQUENCE`), or a rollback to
/// a savepoint may have: picks up the sequences created and sets aside those dropped. Values already taken in this command
/// stay in memory (dirty) until the command's final flush: writing them now could be undone by
/// a later `ROLLBACK TO`, and the numbers handed out again.
pub(crate) fn refresh(conn: &Connection, cell: &Mutex<SequenceCell>) -> rusqlite::Result<()> {
    let mut c = cell.lock().unwrap_or_else(|p| p.into_inner());
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT name, last_value, increment, is_called FROM {SEQUENCES_TABLE}"
    ))?;
    let mut rows = stmt.query([])?;
    let mut seqs = HashMap::new();
    while let Some(r) = rows.next()? {
        let name: String = r.get(0)?;
        let seq = match c.seqs.remove(&name).or_else(|| c.dropped.remove(&name)) {
            Some(known) => known,
            None => Seq {
                last_value: r.get(1)?,
                increment: r.get(2)?,
                is_called: r.get::<_, i64>(3)? != 0,
                dirty: false,
            },
        };
        seqs.insert(name, seq);
    }
    // What is left was dropped: keep its values aside, and its currval goes.
    let gone: Vec<(String, Seq)> = c.seqs.drain().collect();
    for (name, seq) in gone {
        c.current.remove(&name);
        c.dropped.insert(name, seq);
    }
    c.seqs = seqs;
    Ok(())
}

/// Writes back the sequences the command changed.
pub(crate) fn flush(conn: &Connection, cell: &Mutex<SequenceCell>) -> rusqlite::Result<()> {
    let mut c = cell.lock().unwrap_or_else(|p| p.into_inner());
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE {SEQUENCES_TABLE} SET last_value = ?2, is_called = ?3 WHERE name = ?1"
    ))?;
    // Dropped ones too: if the command failed, the rollback restored their rows, and the
    // values taken stay taken, as in Postgres.
    let c = &mut *c;
    for (name, s) in c
        .seqs
        .iter_mut()
        .chain(c.dropped.iter_mut())
        .filter(|(_, s)| s.dirty)
    {
        stmt.execute(rusqlite::params![name, s.last_value, s.is_called as i64])?;
        s.dirty = false;
    }
    c.seqs.clear();
    c.current.clear();
    c.dropped.clear();
    Ok(())
}

fn seq_name(ctx: &Context<'_>) -> rusqlite::Result<String> {
    let name: String = ctx.get(0)?;
    // nextval('public.s') and nextval('s') name the same sequence.
    Ok(name
        .trim_start_matches("public.")
        .trim_matches('"')
        .to_string())
}

/// Registers `nextval`, `currval`, `setval` and `pg_raise` on the apply connection.
pub(crate) fn install(conn: &Connection, cell: Arc<Mutex<SequenceCell>>) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8;
    let c = cell.clone();
    conn.create_scalar_function("nextval", 1, flags, move |ctx| {
        let name = seq_name(ctx)?;
        let mut guard = c.lock().unwrap_or_else(|p| p.into_inner());
        let cell = &mut *guard;
        let given = match &mut cell.draw {
            Draw::Row => None,
            Draw::Fresh { local, .. } if local.contains(&name) => None,
            Draw::Fresh {
                reserved,
                drawn,
                needs,
                ..
            } => match cell.seqs.get(&name).and_then(|seq| reserved.take(&name, seq)) {
                Some(v) => Some(v),
                None => {
                    *needs = Some(name.clone());
                    return Err(raise(
                        "55000",
                        format!("no values of sequence \"{name}\" are reserved on this node"),
                    ));
                }
            }
            .inspect(|v| {
                drawn.push(SeqValue {
                    step: 0,
                    sequence: name.clone(),
                    value: Some(*v),
                })
            }),
            Draw::Replay(values) => match values.pop_front() {
                Some(v) if v.sequence == name => v.value,
                _ => {
                    return Err(raise(
                        "40001",
                        "could not serialize access: the statement asks other sequences for values than when it first ran".into(),
                    ))
                }
            },
        };
        if let Some(v) = given {
            cell.current.insert(name, v);
            return Ok(v);
        }
        if let Draw::Fresh { drawn, .. } = &mut cell.draw {
            drawn.push(SeqValue {
                step: 0,
                sequence: name.clone(),
                value: None,
            });
        }
        let s = cell
            .seqs
            .get_mut(&name)
            .ok_or_else(|| raise("42P01", format!("relation \"{name}\" does not exist")))?;
        if s.is_called {
            s.last_value = s.last_value.checked_add(s.increment).ok_or_else(|| {
                raise(
                    "2200H",
                    format!("nextval: reached maximum value of sequence \"{name}\""),
                )
            })?;
        }
        s.is_called = true;
        s.dirty = true;
        let v = s.last_value;
        cell.current.insert(name, v);
        Ok(v)
    })?;
    let c = cell.clone();
    conn.create_scalar_function("currval", 1, flags, move |ctx| {
        let name = seq_name(ctx)?;
        let cell = c.lock().unwrap_or_else(|p| p.into_inner());
        cell.current.get(&name).copied().ok_or_else(|| {
            raise(
                "55000",
                format!("currval of sequence \"{name}\" is not yet defined in this statement"),
            )
        })
    })?;
    for n in [2, 3] {
        let c = cell.clone();
        conn.create_scalar_function("setval", n, flags, move |ctx| {
            let name = seq_name(ctx)?;
            let v: i64 = ctx.get(1)?;
            let called = if ctx.len() == 3 {
                ctx.get::<bool>(2)?
            } else {
                true
            };
            let mut cell = c.lock().unwrap_or_else(|p| p.into_inner());
            if let Draw::Fresh { local, .. } = &mut cell.draw {
                // The block set the sequence: its next values in the block follow from that,
                // as in Postgres, so they come from its row, not from reserved values.
                local.insert(name.clone());
            }
            let s = cell
                .seqs
                .get_mut(&name)
                .ok_or_else(|| raise("42P01", format!("relation \"{name}\" does not exist")))?;
            s.last_value = v;
            s.is_called = called;
            s.dirty = true;
            cell.current.insert(name, v);
            Ok(v)
        })?;
    }
    let c = cell.clone();
    conn.create_scalar_function(RESERVE_FUNCTION, 2, flags, move |ctx| {
        let name = seq_name(ctx)?;
        let wanted: i64 = ctx.get(1)?;
        let mut cell = c.lock().unwrap_or_else(|p| p.into_inner());
        let s = cell
            .seqs
            .get_mut(&name)
            .ok_or_else(|| raise("42P01", format!("relation \"{name}\" does not exist")))?;
        let first = if s.is_called {
            s.last_value.checked_add(s.increment).ok_or_else(|| {
                raise(
                    "2200H",
                    format!("nextval: reached maximum value of sequence \"{name}\""),
                )
            })?
        } else {
            s.last_value
        };
        // As many as fit before the sequence would pass the end of bigint.
        let (first_wide, increment) = (i128::from(first), i128::from(s.increment));
        let room = if increment > 0 {
            (i128::from(i64::MAX) - first_wide) / increment
        } else {
            (first_wide - i128::from(i64::MIN)) / -increment
        };
        let count = i128::from(wanted.clamp(1, RESERVED_VALUES_MAX)).min(room + 1) as i64;
        s.last_value = first + s.increment * (count - 1);
        s.is_called = true;
        s.dirty = true;
        Ok(format!("{first} {} {count}", s.increment))
    })?;
    install_raise(conn)
}

/// `pg_raise(sqlstate, message)`, the error of the translator's guards and of the triggers
/// that check enum columns: on every connection, so a statement that fires such a trigger can
/// also be prepared and described on a read-only one.
fn install_raise(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        "pg_raise",
        2,
        FunctionFlags::SQLITE_UTF8,
        |ctx| -> rusqlite::Result<i64> {
            let state: String = ctx.get(0)?;
            let msg: String = ctx.get(1)?;
            Err(raise(&state, msg))
        },
    )
}

/// Registers `nextval`, `setval` and `currval` on a read-only connection, so statements that
/// use them (an `INSERT` into a table with a `SERIAL` column) can be prepared and described
/// there; running them fails as in a Postgres read-only transaction.
pub(crate) fn install_read_only(conn: &Connection) -> rusqlite::Result<()> {
    install_raise(conn)?;
    // currval is allowed in a read-only transaction, but none is defined in a read.
    conn.create_scalar_function(
        "currval",
        1,
        FunctionFlags::SQLITE_UTF8,
        |ctx| -> rusqlite::Result<i64> {
            let name = seq_name(ctx)?;
            Err(raise(
                "55000",
                format!("currval of sequence \"{name}\" is not yet defined in this statement"),
            ))
        },
    )?;
    for (name, n) in [("nextval", 1), ("setval", 2), ("setval", 3)] {
        conn.create_scalar_function(
            name,
            n,
            FunctionFlags::SQLITE_UTF8,
            move |_| -> rusqlite::Result<i64> {
                Err(raise(
                    "25006",
                    format!("cannot execute {name}() in a read-only transaction"),
                ))
            },
        )?;
    }
    Ok(())
}
