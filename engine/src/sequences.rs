//! Postgres sequences on the apply connection: `nextval`, `currval`, `setval`.
//!
//! A sequence is a row of `_sqlkeeper_sequences`. SQLite functions cannot run SQL, so the
//! apply thread loads the rows into [`SequenceCell`] before every command,
//! the functions work on that copy, and the changed values are written back in the same
//! SQLite transaction after the command, whether it succeeded or failed: as in Postgres,
//! `nextval` is not undone by a rollback. Every replica applies the same commands in the same
//! order, so every replica hands out the same numbers. `currval` is scoped to one command
//! (Postgres scopes it to a session, which a replicated log has no notion of).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::Connection;

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

/// Sequences of the command being applied.
#[derive(Default)]
pub(crate) struct SequenceCell {
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

fn raise(sqlstate: &str, message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(format!("{RAISE_PREFIX}{sqlstate}:{message}").into())
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
        let mut cell = c.lock().unwrap_or_else(|p| p.into_inner());
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
    conn.create_scalar_function(
        "pg_raise",
        2,
        FunctionFlags::SQLITE_UTF8,
        |ctx| -> rusqlite::Result<i64> {
            let state: String = ctx.get(0)?;
            let msg: String = ctx.get(1)?;
            Err(raise(&state, msg))
        },
    )?;
    Ok(())
}
