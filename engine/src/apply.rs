//! The writer side: applying committed commands in log order.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;

use std::collections::BTreeMap;

use crate::command::{Command, EntryHeader, LogIndex, RequestId, TxnRecord};
use crate::error::{ExecError, Fatal};
use crate::meta;
use crate::meta::REQUESTS_TABLE;
use crate::read::ReadPool;
use crate::staged::txn_vm_steps_max;
use crate::step::{exec_fixed, open_writer, replay_digest, run_statement, Cells, Stop};
use crate::txn::BlockWriter;
use crate::{Outcome, OutcomeDigest};

/// File name of the state database inside the node's state directory.
pub const STATE_DB_FILE: &str = "state.db";

/// Raft's bookkeeping for a batch, stored opaquely (the engine does not know openraft) in the
/// same SQLite transaction as the batch's effects.
#[derive(Debug, Clone, Default)]
pub struct RaftMeta {
    /// Serialized id of the last applied log entry.
    pub applied: Vec<u8>,
    /// Serialized membership, if an entry of the batch changed it.
    pub membership: Option<Vec<u8>>,
}

/// Raft's bookkeeping as stored: (serialized last applied log id, serialized membership).
pub type StoredRaftMeta = (Option<Vec<u8>>, Option<Vec<u8>>);

/// One committed log entry handed to [`StateMachine::apply_batch`]: `command` is `None` for
/// entries that carry no application data (blank and membership entries).
#[derive(Debug, Clone, Copy)]
pub struct ApplyItem<'a> {
    /// Log position.
    pub index: LogIndex,
    /// The application command, if any.
    pub command: Option<&'a Command>,
}

fn fatal(context: &str) -> impl FnOnce(rusqlite::Error) -> Fatal + '_ {
    move |e| Fatal(format!("{context}: {}", Fatal::of_sqlite(&e).0))
}

/// The deterministic state machine: owns the only writable connection to the state database.
pub struct StateMachine {
    db_path: PathBuf,
    /// `None` only while a snapshot is being installed or after a fatal error.
    conn: Option<Connection>,
    applied_index: Option<LogIndex>,
    /// Latched first fatal error; every later call returns it (redb's "previous I/O error").
    failed: Option<Fatal>,
    /// Time and seed of the command being applied, its sequences and the table rebuild its
    /// statement requested: read by the functions registered on the writer connection.
    cells: Cells,
    reads: Arc<ReadPool>,
    /// The writer connection of transaction blocks; rolled back before every apply.
    block_writer: Arc<BlockWriter>,
}

impl StateMachine {
    /// Opens (or creates) the state database in `dir`.
    pub fn open(dir: &Path) -> Result<StateMachine, Fatal> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Fatal(format!("create {}: {e}", dir.display())))?;
        let db_path = dir.join(STATE_DB_FILE);
        let cells = Cells::default();
        let conn = open_writer(&db_path, &cells, || false)?;
        meta::check_format(&conn).map_err(|e| Fatal(format!("{}: {e}", db_path.display())))?;
        let applied_index = meta::get_i64(&conn, meta::KEY_APPLIED_INDEX)
            .map_err(fatal("read applied index"))?
            .map(|i| LogIndex(i as u64));
        let reads = Arc::new(ReadPool::new(db_path.clone()));
        let block_writer = Arc::new(BlockWriter::new(db_path.clone()));
        Ok(StateMachine {
            db_path,
            conn: Some(conn),
            applied_index,
            failed: None,
            cells,
            reads,
            block_writer,
        })
    }

    /// The writer connection for transaction blocks on this state.
    pub fn block_writer(&self) -> Arc<BlockWriter> {
        self.block_writer.clone()
    }

    /// The pool of read-only connections to the same database.
    pub fn read_pool(&self) -> Arc<ReadPool> {
        self.reads.clone()
    }

    /// Path of the live state database.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Index of the last applied entry, `None` before the first.
    pub fn applied_index(&self) -> Option<LogIndex> {
        self.applied_index
    }

    fn conn(&self) -> Result<&Connection, Fatal> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        self.conn
            .as_ref()
            .ok_or_else(|| Fatal("state database is not open".into()))
    }

    fn latch<T>(&mut self, r: Result<T, Fatal>) -> Result<T, Fatal> {
        if let Err(e) = &r {
            if self.failed.is_none() {
                self.failed = Some(e.clone());
            }
        }
        r
    }

    /// Raft's stored bookkeeping: (last applied log id, membership), as written by
    /// [`StateMachine::apply_batch`].
    pub fn raft_meta(&self) -> Result<StoredRaftMeta, Fatal> {
        let conn = self.conn()?;
        let applied = meta::get_blob(conn, meta::KEY_RAFT_APPLIED).map_err(fatal("read meta"))?;
        let membership =
            meta::get_blob(conn, meta::KEY_RAFT_MEMBERSHIP).map_err(fatal("read meta"))?;
        Ok((applied, membership))
    }

    /// Applies committed entries in log order, in one SQLite transaction together with
    /// `raft_meta` and the new applied index. Returns one outcome per item (`None` for items
    /// without a command).
    ///
    /// An entry at or below the applied index is a bug that would apply an entry twice: it is
    /// refused as fatal. So is an entry written by another build (`EntryHeader`).
    pub fn apply_batch(
        &mut self,
        items: &[ApplyItem<'_>],
        raft_meta: &RaftMeta,
    ) -> Result<Vec<Option<Outcome>>, Fatal> {
        let r = self.apply_batch_inner(items, raft_meta);
        self.latch(r)
    }

    fn apply_batch_inner(
        &mut self,
        items: &[ApplyItem<'_>],
        raft_meta: &RaftMeta,
    ) -> Result<Vec<Option<Outcome>>, Fatal> {
        let Some(last) = items.last() else {
            return Ok(Vec::new());
        };
        let mut expect_above = self.applied_index;
        for item in items {
            if let Some(prev) = expect_above {
                if item.index <= prev {
                    return Err(Fatal(format!(
                        "entry {} is not after applied index {prev}: refusing to apply twice",
                        item.index
                    )));
                }
            }
            expect_above = Some(item.index);
            if let Some(cmd) = item.command {
                check_header(item.index, cmd)?;
            }
        }
        // The apply thread never waits for a block: what the blocks' writer connection holds is
        // rolled back, a statement running on it starts over after this batch.
        let block_writer = self.block_writer.clone();
        let _hold = block_writer.hold_for_apply(false);
        let conn = self.conn()?;
        // A table rebuild runs alone, with foreign keys off and checked at its end.
        let rebuild_alone =
            items.len() == 1 && items[0].command.is_some_and(|c| c.rebuilds_tables());
        if rebuild_alone {
            conn.execute_batch("PRAGMA foreign_keys = OFF")
                .map_err(fatal("disable foreign keys for a rebuild"))?;
        }
        // Entries of this batch that must change nothing (see `Stop::Abort`), with their
        // outcomes. SQLite may have rolled back the whole batch when one of them failed, so
        // the batch starts over and applies the others again: they compute the same results,
        // and the state after the batch is the same however the log was cut into batches.
        let mut aborted: BTreeMap<usize, Outcome> = BTreeMap::new();
        let result = loop {
            if let Err(e) = exec_fixed(conn, "BEGIN IMMEDIATE") {
                break Err(fatal("begin apply")(e));
            }
            match self.apply_items(conn, items, raft_meta, rebuild_alone, &aborted) {
                Ok(outcomes) => break Ok(outcomes),
                Err(ItemStop::Abort { at, outcome }) => {
                    if !conn.is_autocommit() {
                        if let Err(e) = exec_fixed(conn, "ROLLBACK") {
                            break Err(fatal("roll back an aborted batch")(e));
                        }
                    }
                    tracing::debug!(log_index = %items[at].index, "an entry failed and changes nothing; applying its batch again without it");
                    aborted.insert(at, *outcome);
                }
                Err(ItemStop::Fatal(f)) => break Err(f),
            }
        };
        let end = match &result {
            Ok(_) => exec_fixed(conn, "COMMIT").map_err(fatal("commit apply transaction")),
            Err(_) => {
                // Best effort: the node stops anyway; the transaction must not be committed.
                if !conn.is_autocommit() {
                    let _ = exec_fixed(conn, "ROLLBACK");
                }
                Ok(())
            }
        };
        if rebuild_alone {
            conn.execute_batch("PRAGMA foreign_keys = ON")
                .map_err(fatal("enable foreign keys after a rebuild"))?;
        }
        end?;
        // Read connections read a role's privileges again once they see this commit.
        if self
            .cells
            .guard
            .touched
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            crate::privileges::changed();
        }
        let outcomes = result?;
        if self.reads.bound_wal() {
            // The held read views are gone: a checkpoint can now copy the whole log back, and
            // the next write starts the WAL over (cut to `WAL_KEPT_BYTES`).
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
            tracing::info!(
                wal_bytes = self.reads.wal_bytes(),
                "the write-ahead log passed its bound; read views held by transaction blocks were released"
            );
        }
        self.applied_index = Some(last.index);
        Ok(outcomes)
    }

    fn apply_items(
        &self,
        conn: &Connection,
        items: &[ApplyItem<'_>],
        raft_meta: &RaftMeta,
        check_foreign_keys: bool,
        aborted: &BTreeMap<usize, Outcome>,
    ) -> Result<Vec<Option<Outcome>>, ItemStop> {
        let Some(last) = items.last() else {
            return Ok(Vec::new());
        };
        let mut outcomes = Vec::with_capacity(items.len());
        // The log's clock: the latest stamp applied so far (`dedup`).
        let stored_clock = meta::get_i64(conn, meta::KEY_LOG_CLOCK)
            .map_err(fatal("read log clock"))?
            .unwrap_or(i64::MIN);
        let mut clock = stored_clock;
        for (at, item) in items.iter().enumerate() {
            let Some(cmd) = item.command else {
                outcomes.push(None);
                continue;
            };
            clock = clock.max(cmd.stamp().unix_micros);
            let at_entry = Dedup {
                index: item.index,
                clock,
            };
            let outcome = match aborted.get(&at) {
                Some(outcome) => {
                    if let Some(id) = cmd.request_id() {
                        remember_request(conn, &id, at_entry, outcome)?;
                        if let Command::Transaction { record, .. } = cmd {
                            if record.staged.is_some() {
                                crate::staged::drop_parts(conn, &id)
                                    .map_err(fatal("drop a failed transaction's parts"))?;
                            }
                        }
                    }
                    outcome.clone()
                }
                None => match apply_command(conn, &self.cells, at_entry, cmd, check_foreign_keys) {
                    Ok(r) => r,
                    Err(Stop::Abort(e)) => {
                        return Err(ItemStop::Abort {
                            at,
                            outcome: Box::new(Outcome {
                                results: Vec::new(),
                                error: Some((0, e)),
                                deduplicated: None,
                            }),
                        })
                    }
                    Err(Stop::Fatal(f)) => return Err(ItemStop::Fatal(f)),
                },
            };
            outcomes.push(Some(outcome));
        }
        if clock != stored_clock {
            meta::put(conn, meta::KEY_LOG_CLOCK, clock).map_err(fatal("write log clock"))?;
            forget_old_requests(conn, last.index, clock)?;
        }
        meta::put(conn, meta::KEY_APPLIED_INDEX, last.index.0 as i64)
            .map_err(fatal("write applied index"))?;
        meta::put(conn, meta::KEY_RAFT_APPLIED, &raft_meta.applied)
            .map_err(fatal("write raft meta"))?;
        if let Some(m) = &raft_meta.membership {
            meta::put(conn, meta::KEY_RAFT_MEMBERSHIP, m).map_err(fatal("write membership"))?;
        }
        Ok(outcomes)
    }

    /// Replaces the whole state with the snapshot file at `snapshot` (atomic file replace).
    /// Readers are paused for the duration.
    pub fn install_snapshot(&mut self, snapshot: &Path) -> Result<(), Fatal> {
        let r = self.install_snapshot_inner(snapshot);
        self.latch(r)
    }

    fn install_snapshot_inner(&mut self, snapshot: &Path) -> Result<(), Fatal> {
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        let reads = self.reads.clone();
        let _paused = reads.pause();
        let block_writer = self.block_writer.clone();
        let _hold = block_writer.hold_for_apply(true);
        // Closing the last connection checkpoints the WAL into the file and removes it.
        if let Some(conn) = self.conn.take() {
            conn.close()
                .map_err(|(_, e)| Fatal(format!("close state database: {e}")))?;
        }
        sqlkeeper_snapshots::install_snapshot(snapshot, &self.db_path)
            .map_err(|e| Fatal(format!("install snapshot: {e}")))?;
        let conn = open_writer(&self.db_path, &self.cells, || false)?;
        // Pair assertion: the installed file has the layout this build reads.
        meta::check_format(&conn).map_err(|e| Fatal(format!("installed snapshot: {e}")))?;
        self.applied_index = meta::get_i64(&conn, meta::KEY_APPLIED_INDEX)
            .map_err(fatal("read applied index"))?
            .map(|i| LogIndex(i as u64));
        self.conn = Some(conn);
        crate::privileges::changed();
        Ok(())
    }

    /// Where a state restored into a new cluster (`sqlkeeper restore`) starts: its position and
    /// the log's clock there (`None`: unchanged).
    ///
    /// The old cluster's request ids and staged transaction parts stay (they are state, in its
    /// hash) but must never be taken for a new cluster's, whose nodes number their requests
    /// afresh: if there are any, the position moves past the request window's entries
    /// (`DEDUP_WINDOW_ENTRIES` + 1 after the state's index) and the log's clock past the latest
    /// of them by the longer of the request window and the staged parts' time to live.
    pub fn restored_position(&self) -> Result<(LogIndex, Option<i64>), Fatal> {
        let conn = self.conn()?;
        let index = self.applied_index.map_or(0, |i| i.0 as i64);
        let latest: Option<i64> = conn
            .query_row(
                &format!(
                    "SELECT max(c) FROM (SELECT max(log_clock) AS c FROM {REQUESTS_TABLE} \
                     UNION ALL SELECT max(log_clock) FROM {})",
                    crate::staged::STAGED_TABLE
                ),
                [],
                |r| r.get(0),
            )
            .map_err(fatal("read request clocks"))?;
        let Some(latest) = latest else {
            return Ok((LogIndex(index as u64), None));
        };
        let stored = meta::get_i64(conn, meta::KEY_LOG_CLOCK)
            .map_err(fatal("read log clock"))?
            .unwrap_or(i64::MIN);
        let gap = (DEDUP_WINDOW.as_micros() as i64).max(crate::staged::STAGED_TTL_MICROS);
        let clock = stored.max(latest).saturating_add(gap + 1);
        let index = index.saturating_add(DEDUP_WINDOW_ENTRIES as i64 + 1);
        Ok((LogIndex(index as u64), Some(clock)))
    }

    /// Makes this state the starting point of a new cluster: the position and clock of
    /// [`StateMachine::restored_position`], and Raft's bookkeeping for it (`raft_meta`, whose
    /// membership is required), in one transaction, without applying anything.
    pub fn seed_position(
        &mut self,
        (index, clock): (LogIndex, Option<i64>),
        raft_meta: &RaftMeta,
    ) -> Result<(), Fatal> {
        let membership = raft_meta
            .membership
            .as_ref()
            .ok_or_else(|| Fatal("a seeded state needs a membership".into()))?;
        let conn = self.conn()?;
        let tx = conn
            .unchecked_transaction()
            .map_err(fatal("begin seeding"))?;
        if let Some(clock) = clock {
            meta::put(&tx, meta::KEY_LOG_CLOCK, clock).map_err(fatal("seed"))?;
        }
        meta::put(&tx, meta::KEY_APPLIED_INDEX, index.0 as i64).map_err(fatal("seed"))?;
        meta::put(&tx, meta::KEY_RAFT_APPLIED, &raft_meta.applied).map_err(fatal("seed"))?;
        meta::put(&tx, meta::KEY_RAFT_MEMBERSHIP, membership).map_err(fatal("seed"))?;
        tx.commit().map_err(fatal("commit seeding"))?;
        self.applied_index = Some(index);
        Ok(())
    }

    /// Hash of the canonical dump of the state (see [`crate::state_hash`]).
    pub fn state_hash(&self) -> Result<[u8; 32], Fatal> {
        crate::hash::state_hash(self.conn()?).map_err(fatal("hash state"))
    }
}

/// Why applying the items of a batch stopped.
enum ItemStop {
    /// The item at `at` must change nothing: the batch is applied again without it.
    Abort { at: usize, outcome: Box<Outcome> },
    /// The node cannot go on.
    Fatal(Fatal),
}

impl From<Fatal> for ItemStop {
    fn from(f: Fatal) -> ItemStop {
        ItemStop::Fatal(f)
    }
}

/// Refuses an entry written by another build: what its statements compute, and the steps
/// they take, could differ here, and replicas would split.
fn check_header(index: LogIndex, cmd: &Command) -> Result<(), Fatal> {
    let me = EntryHeader::current();
    match cmd.header() {
        Some(h) if h.is_current() => Ok(()),
        Some(h) => Err(Fatal(format!(
            "log entry {index} was written by a build with engine apply version {} and SQLite {}; \
             this build applies version {} with SQLite {}: run the same build on every node \
             (stop them all, upgrade, start them again)",
            h.engine_version, h.sqlite_version, me.engine_version, me.sqlite_version
        ))),
        None => Err(Fatal(format!(
            "log entry {index} was written by an earlier build (no entry header); this build \
             applies engine apply version {} with SQLite {}: run the same build on every node",
            me.engine_version, me.sqlite_version
        ))),
    }
}

/// Where an entry is in the log and in the log's time, for request deduplication.
#[derive(Debug, Clone, Copy)]
struct Dedup {
    index: LogIndex,
    /// The latest stamp applied up to this entry, in microseconds: a clock that only moves
    /// forward and is the same on every replica.
    clock: i64,
}

/// Applies one command and returns its outcome.
fn apply_command(
    conn: &Connection,
    cells: &Cells,
    at: Dedup,
    cmd: &Command,
    check_foreign_keys: bool,
) -> Result<Outcome, Stop> {
    let vm_steps_max = cmd
        .header()
        .map_or(crate::limits::ENTRY_VM_STEPS_MAX, |h| h.vm_steps_max);
    cells.start_entry(&cmd.stamp(), vm_steps_max);
    cells.guard.set_role(cmd.role());
    if let Some(id) = cmd.request_id() {
        if let Some(first) = seen_request(conn, &id, at)? {
            return Ok(first);
        }
    }
    // Sequences can be used without being named in the statement (a column DEFAULT calling
    // nextval), so every command starts from the stored values: a read of the whole
    // sequences table (one row per sequence, small in a metadata store).
    crate::sequences::load(conn, &cells.sequences).map_err(fatal("load sequences"))?;
    let outcome = match cmd {
        Command::Execute { statements, .. } => {
            execute_statements(conn, statements, cells, check_foreign_keys)?
        }
        Command::Transaction {
            record, request_id, ..
        } => match (record.staged, request_id) {
            // In one entry: the entry's budget, as on the block writer (its steps fit in one).
            (None, _) => replay_transaction(conn, cells, at.index, record)?,
            (Some(staged), Some(id)) => match crate::staged::take(conn, id, staged.parts, at.clock)
            {
                Ok(mut steps) => {
                    steps.extend(record.steps.iter().cloned());
                    let whole = TxnRecord {
                        stamp: record.stamp,
                        steps,
                        values: record.values.clone(),
                        digest: record.digest.clone(),
                        staged: None,
                        role: record.role.clone(),
                    };
                    let size = crate::staged::TxnSize::of(&whole.steps);
                    cells.start_entry(&whole.stamp, txn_vm_steps_max(vm_steps_max, size));
                    replay_transaction(conn, cells, at.index, &whole)?
                }
                Err(crate::staged::Missing::Part(seq)) => failed(ExecError::new(
                    "40001",
                    format!(
                        "could not serialize access: part {seq} of this transaction's {} parts was not in the log before its commit (entry {}); nothing was applied",
                        staged.parts, at.index
                    ),
                )),
                Err(crate::staged::Missing::Sql(e)) => {
                    return Err(fatal("read a transaction's staged parts")(e).into())
                }
            },
            (Some(_), None) => failed(ExecError::new(
                "XX000",
                "a transaction in several parts has no request id to find them by",
            )),
        },
        Command::TransactionPart {
            txn, seq, steps, ..
        } => {
            // A part proposed again after its commit was applied is not kept again.
            if seen_request(conn, txn, at)?.is_none() {
                crate::staged::stage(conn, txn, *seq, at.clock, steps)
                    .map_err(fatal("stage a transaction part"))?;
            }
            Outcome::default()
        }
    };
    // After the savepoint was released or rolled back: like Postgres, nextval is not undone
    // when the statement that called it fails.
    crate::sequences::flush(conn, &cells.sequences).map_err(fatal("store sequences"))?;
    if let Some(id) = cmd.request_id() {
        remember_request(conn, &id, at, &outcome)?;
    }
    Ok(outcome)
}

/// The outcome of a command that failed as a whole and changed nothing.
fn failed(e: ExecError) -> Outcome {
    Outcome {
        results: Vec::new(),
        error: Some((0, e)),
        deduplicated: None,
    }
}

/// Replays a transaction block at its position in the log and applies it if every step
/// returned what its client saw: then the block is indistinguishable from one that ran alone
/// here. Otherwise nothing is applied and the outcome is 40001, on every replica alike
/// (replay depends only on the entry and the state).
fn replay_transaction(
    conn: &Connection,
    cells: &Cells,
    index: LogIndex,
    record: &TxnRecord,
) -> Result<Outcome, Stop> {
    exec_fixed(conn, "SAVEPOINT entry").map_err(fatal("savepoint"))?;
    let replayed = replay_digest(conn, record, cells)?;
    if replayed != record.digest {
        tracing::debug!(%index, "a transaction's statements return other results at its place in the log: not applied (40001)");
        exec_fixed(conn, "ROLLBACK TO entry")
            .and_then(|()| exec_fixed(conn, "RELEASE entry"))
            .map_err(fatal("roll back a conflicting transaction"))?;
        // Its sequences are untouched: nothing of the block happened.
        crate::sequences::load(conn, &cells.sequences).map_err(fatal("load sequences"))?;
        let mut e = ExecError::new(
            "40001",
            format!(
                "could not serialize access due to concurrent update: at its place in the log (entry {index}) this transaction's statements return results other than those its client saw; nothing was applied"
            ),
        );
        e.detail = Some(
            "a write committed after this transaction read changed what it read or wrote".into(),
        );
        return Ok(failed(e));
    }
    exec_fixed(conn, "RELEASE entry").map_err(fatal("release savepoint"))?;
    Ok(Outcome::default())
}

/// A request id is remembered for at least this many entries after it was applied ...
const DEDUP_WINDOW_ENTRIES: u64 = 10_000;

/// ... and for at least this long in the log's time (the proposing leaders' clocks). A node
/// retries a write for at most its write timeout (10 s), across leader changes; 60 s leaves
/// 50 s for the clocks of two leaders to disagree. The entry window covers a new leader whose
/// clock is far ahead, for the 10,000 entries after the jump. A row is forgotten only when it
/// is outside both windows, at the end of a batch; a lookup checks the windows itself, so a
/// request is deduplicated exactly when it is inside one, however batches were cut.
const DEDUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

fn within_window(first_index: i64, first_clock: i64, at: Dedup) -> bool {
    let entries = (at.index.0 as i64).saturating_sub(first_index);
    let micros = at.clock.saturating_sub(first_clock);
    entries <= DEDUP_WINDOW_ENTRIES as i64 || micros <= DEDUP_WINDOW.as_micros() as i64
}

fn seen_request(conn: &Connection, id: &RequestId, at: Dedup) -> Result<Option<Outcome>, Fatal> {
    use rusqlite::OptionalExtension;
    let row: Option<(i64, i64, Vec<u8>)> = conn
        .prepare_cached(&format!(
            "SELECT log_index, log_clock, outcome FROM {REQUESTS_TABLE} WHERE origin = ?1 AND serial = ?2"
        ))
        .and_then(|mut s| {
            s.query_row([id.origin as i64, id.serial as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(fatal("look up request id"))?;
    let Some((first_index, first_clock, blob)) = row else {
        return Ok(None);
    };
    if !within_window(first_index, first_clock, at) {
        return Ok(None);
    }
    let digest: OutcomeDigest =
        serde_json::from_slice(&blob).map_err(|e| Fatal(format!("decode stored outcome: {e}")))?;
    Ok(Some(digest.replayed(LogIndex(first_index as u64))))
}

fn remember_request(
    conn: &Connection,
    id: &RequestId,
    at: Dedup,
    outcome: &Outcome,
) -> Result<(), Fatal> {
    let blob = serde_json::to_vec(&OutcomeDigest::of(outcome))
        .map_err(|e| Fatal(format!("encode outcome: {e}")))?;
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {REQUESTS_TABLE} (origin, serial, log_index, log_clock, outcome) \
         VALUES (?1, ?2, ?3, ?4, ?5)"
    ))
    .and_then(|mut s| {
        s.execute(rusqlite::params![
            id.origin as i64,
            id.serial as i64,
            at.index.0 as i64,
            at.clock,
            blob
        ])
    })
    .map_err(fatal("remember request id"))?;
    Ok(())
}

/// The delete of `forget_old_requests`: `?1` is the first log index inside the entry window,
/// `?2` the first clock value inside the time window.
fn forget_sql() -> String {
    format!(
        "DELETE FROM {REQUESTS_TABLE} WHERE log_index < min(?1, coalesce(
             (SELECT log_index FROM {REQUESTS_TABLE} WHERE log_clock >= ?2
              ORDER BY log_clock, log_index LIMIT 1), ?1))"
    )
}

/// Forgets request ids outside both windows, at the end of every batch that moved the clock:
/// the table stays as small as the windows, and its content is the same on every replica at
/// every applied index (lookups check the windows themselves).
///
/// The log's clock only moves forward, so in log order the rows outside both windows are a
/// prefix: the rows before the first one inside the entry window or inside the time window.
/// The first row inside the time window is found through the `log_clock` index; the delete
/// then visits only rows it deletes, however many rows are inside one window but not the
/// other (a delete that tested both conditions row by row rescanned those on every batch).
fn forget_old_requests(conn: &Connection, index: LogIndex, clock: i64) -> Result<(), Fatal> {
    let before_index = (index.0 as i64).saturating_sub(DEDUP_WINDOW_ENTRIES as i64);
    let before_clock = clock.saturating_sub(DEDUP_WINDOW.as_micros() as i64);
    conn.prepare_cached(&forget_sql())
        .and_then(|mut s| s.execute(rusqlite::params![before_index, before_clock]))
        .map_err(fatal("forget old request ids"))?;
    Ok(())
}

fn execute_statements(
    conn: &Connection,
    statements: &[crate::command::Statement],
    cells: &Cells,
    check_foreign_keys: bool,
) -> Result<Outcome, Stop> {
    exec_fixed(conn, "SAVEPOINT entry").map_err(fatal("savepoint"))?;
    let mut outcome = Outcome::default();
    for (i, stmt) in statements.iter().enumerate() {
        match run_statement(conn, stmt, cells)? {
            Ok(r) => outcome.results.push(r),
            Err(e) => {
                outcome.error = Some((i, e));
                break;
            }
        }
    }
    if check_foreign_keys && outcome.error.is_none() {
        // Foreign keys were not enforced while this command ran: check them all now.
        let violations: i64 = conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .map_err(fatal("check foreign keys"))?;
        if violations > 0 {
            outcome.error = Some((
                statements.len().saturating_sub(1),
                ExecError::new(
                    "23503",
                    "the statement leaves rows that violate a foreign key constraint",
                ),
            ));
        }
    }
    if outcome.error.is_some() {
        exec_fixed(conn, "ROLLBACK TO entry").map_err(fatal("roll back failed entry"))?;
    }
    exec_fixed(conn, "RELEASE entry").map_err(fatal("release savepoint"))?;
    Ok(outcome)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::command::EntryHeader;
    use crate::command::{Stamp, Statement, Value};
    use crate::Deduplicated;

    /// A statement without parameters.
    pub(crate) fn sql(s: &str) -> Statement {
        Statement {
            sql: s.into(),
            params: vec![],
            effect: Default::default(),
        }
    }

    /// One statement as an autocommit command.
    pub(crate) fn exec(sql: &str) -> Command {
        Command::Execute {
            header: Some(EntryHeader::current()),
            request_id: None,
            stamp: Stamp::default(),
            statements: vec![Statement {
                sql: sql.into(),
                params: vec![],
                effect: Default::default(),
            }],
            role: None,
        }
    }

    /// Applies `cmd` alone at `index` and returns its outcome.
    pub(crate) fn apply1(sm: &mut StateMachine, index: u64, cmd: &Command) -> Outcome {
        let items = [ApplyItem {
            index: LogIndex(index),
            command: Some(cmd),
        }];
        sm.apply_batch(&items, &RaftMeta::default())
            .unwrap()
            .pop()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn applies_in_order_and_persists_applied_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        assert_eq!(sm.applied_index(), None);
        let o = apply1(
            &mut sm,
            0,
            &exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)"),
        );
        assert!(o.error.is_none());
        let o = apply1(
            &mut sm,
            1,
            &exec("INSERT INTO kv VALUES (1, 'a'), (2, 'b') RETURNING k"),
        );
        assert_eq!(o.results[0].rows_affected, 2);
        assert_eq!(
            o.results[0].rows,
            vec![vec![Value::Integer(1)], vec![Value::Integer(2)]]
        );
        drop(sm);
        let sm = StateMachine::open(dir.path()).unwrap();
        assert_eq!(sm.applied_index(), Some(LogIndex(1)));
    }

    #[test]
    fn deterministic_failure_is_an_outcome_and_rolls_back_the_whole_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(
            &mut sm,
            0,
            &exec("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)"),
        );
        let cmd = Command::Execute {
            header: Some(EntryHeader::current()),
            request_id: None,
            stamp: Stamp::default(),
            statements: vec![
                Statement {
                    sql: "INSERT INTO kv VALUES (5, 'x')".into(),
                    params: vec![],
                    effect: Default::default(),
                },
                Statement {
                    sql: "INSERT INTO kv VALUES (5, 'y')".into(),
                    params: vec![],
                    effect: Default::default(),
                },
            ],
            role: None,
        };
        let o = apply1(&mut sm, 1, &cmd);
        let (at, err) = o.error.unwrap();
        assert_eq!(at, 1);
        assert_eq!(err.sqlstate, "23505");
        assert_eq!(
            sm.applied_index(),
            Some(LogIndex(1)),
            "the failed entry's index is recorded"
        );
        let o = apply1(&mut sm, 2, &exec("SELECT count(*) FROM kv"));
        assert_eq!(
            o.results[0].rows,
            vec![vec![Value::Integer(0)]],
            "first insert rolled back"
        );
        let o = apply1(&mut sm, 3, &exec("SELECT * FROM missing"));
        assert_eq!(o.error.unwrap().1.sqlstate, "42P01");
    }

    #[test]
    fn a_value_its_column_type_does_not_take_fails_alone_and_the_node_goes_on() {
        use crate::{Assigned, AssignedColumn, Effect};
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(&mut sm, 0, &exec("CREATE TABLE t (id int4, d date)"));
        let insert = |column, from: &str| Command::Execute {
            header: Some(EntryHeader::current()),
            request_id: None,
            stamp: Stamp::default(),
            statements: vec![Statement {
                sql: "INSERT INTO t (id, d) VALUES (1, NULL)".into(),
                params: vec![],
                effect: Effect::Defaults {
                    table: "t".into(),
                    width: None,
                    assigned: vec![Assigned {
                        column,
                        from: from.into(),
                    }],
                },
            }],
            role: None,
        };
        // `NULL::text` for a date: refused whatever the value, as an outcome, not a failure
        // of the node.
        let o = apply1(
            &mut sm,
            1,
            &insert(AssignedColumn::Name("d".into()), "text"),
        );
        let (_, err) = o.error.unwrap();
        assert_eq!(err.sqlstate, "42804");
        assert_eq!(
            err.message,
            "column \"d\" is of type date but expression is of type text"
        );
        let o = apply1(&mut sm, 2, &insert(AssignedColumn::Position(2), "integer"));
        assert_eq!(o.error.unwrap().1.sqlstate, "42804");
        // A timestamp is assigned to a date; an unknown column is SQLite's to report.
        let o = apply1(
            &mut sm,
            3,
            &insert(AssignedColumn::Name("d".into()), "timestamp with time zone"),
        );
        assert!(o.error.is_none(), "{:?}", o.error);
        let o = apply1(&mut sm, 4, &exec("SELECT count(*) FROM t"));
        assert_eq!(o.results[0].rows, vec![vec![Value::Integer(1)]]);
    }

    /// An autocommit command with a request id and a stamp at `secs` seconds.
    fn request(serial: u64, secs: i64, sql: &str) -> Command {
        Command::Execute {
            header: Some(EntryHeader::current()),
            request_id: Some(RequestId { origin: 7, serial }),
            stamp: Stamp {
                unix_micros: secs * 1_000_000,
                seed: 0,
            },
            statements: vec![Statement {
                sql: sql.into(),
                params: vec![],
                effect: Default::default(),
            }],
            role: None,
        }
    }

    #[test]
    fn a_request_applied_twice_runs_once_and_answers_from_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(&mut sm, 0, &exec("CREATE TABLE t (a INTEGER PRIMARY KEY)"));
        let cmd = request(1, 100, "INSERT INTO t VALUES (1)");
        let first = apply1(&mut sm, 1, &cmd);
        assert_eq!(first.results[0].rows_affected, 1);
        assert_eq!(first.deduplicated, None);
        let again = apply1(&mut sm, 2, &cmd);
        assert_eq!(again.results[0].rows_affected, 1, "the first count");
        assert_eq!(
            again.deduplicated,
            Some(Deduplicated {
                first_index: LogIndex(1),
                rows_lost: false
            })
        );
        let o = apply1(&mut sm, 3, &exec("SELECT count(*) FROM t"));
        assert_eq!(o.results[0].rows, vec![vec![Value::Integer(1)]]);

        // RETURNING rows are not kept: a retry learns that they were lost.
        let ret = request(2, 101, "INSERT INTO t VALUES (2) RETURNING a");
        assert_eq!(apply1(&mut sm, 4, &ret).results[0].rows.len(), 1);
        let again = apply1(&mut sm, 5, &ret);
        assert!(again.results[0].rows.is_empty());
        assert!(again.deduplicated.is_some_and(|d| d.rows_lost));
    }

    /// Pruning ran a delete that tested both windows row by row over every row outside the
    /// entry window, on every batch: at 9,000 writes a second, throughput fell by 80 % within
    /// ten seconds. The delete must find its rows through the indexes alone.
    #[test]
    fn forgetting_request_ids_visits_only_the_rows_it_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        let conn = sm.conn().unwrap();
        let mut plan = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", forget_sql()))
            .unwrap();
        let steps: Vec<String> = plan
            .query_map([1, 2], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            steps
                .iter()
                .any(|s| s.contains("SEARCH") && s.contains("_by_index")),
            "{steps:?}"
        );
        assert!(
            steps
                .iter()
                .any(|s| s.contains("SEARCH") && s.contains("_by_clock")),
            "{steps:?}"
        );
        assert!(!steps.iter().any(|s| s.contains("SCAN")), "{steps:?}");
    }

    #[test]
    fn request_ids_are_forgotten_outside_both_windows_and_only_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(&mut sm, 0, &exec("CREATE TABLE t (a INTEGER PRIMARY KEY)"));
        let cmd = request(1, 0, "INSERT INTO t (a) VALUES (NULL)");
        apply1(&mut sm, 1, &cmd);
        // Far in the log but within the time window: still deduplicated.
        let far = DEDUP_WINDOW_ENTRIES + 10;
        let o = apply1(
            &mut sm,
            far,
            &request(1, 30, "INSERT INTO t (a) VALUES (NULL)"),
        );
        assert!(o.deduplicated.is_some(), "inside the time window");
        // Later in time but within the entry window of a later entry: a new request moves the
        // clock far ahead; the old one is kept by neither window and runs again.
        apply1(&mut sm, far + 1, &request(2, 1_000, "SELECT 1"));
        let o = apply1(
            &mut sm,
            far + 2,
            &request(1, 1_000, "INSERT INTO t (a) VALUES (NULL)"),
        );
        assert_eq!(o.deduplicated, None, "outside both windows: applied again");
        let o = apply1(&mut sm, far + 3, &exec("SELECT count(*) FROM t"));
        assert_eq!(o.results[0].rows, vec![vec![Value::Integer(2)]]);
        // The pruned table holds only the requests inside a window.
        let o = apply1(
            &mut sm,
            far + 4,
            &exec(&format!("SELECT count(*) FROM {REQUESTS_TABLE}")),
        );
        assert_eq!(o.results[0].rows, vec![vec![Value::Integer(2)]]);
    }

    #[test]
    fn refuses_to_apply_an_entry_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(&mut sm, 3, &exec("CREATE TABLE t (a)"));
        let cmd = exec("INSERT INTO t VALUES (1)");
        let items = [ApplyItem {
            index: LogIndex(3),
            command: Some(&cmd),
        }];
        assert!(sm.apply_batch(&items, &RaftMeta::default()).is_err());
        // latched: even a valid entry is refused now
        let items = [ApplyItem {
            index: LogIndex(4),
            command: Some(&cmd),
        }];
        assert!(sm.apply_batch(&items, &RaftMeta::default()).is_err());
    }

    /// One autocommit command with a budget of `steps` SQLite steps.
    fn budgeted(sql: &str, steps: u64) -> Command {
        let mut header = EntryHeader::current();
        header.vm_steps_max = steps;
        Command::Execute {
            header: Some(header),
            request_id: None,
            stamp: Stamp::default(),
            statements: vec![Statement {
                sql: sql.into(),
                params: vec![],
                effect: Default::default(),
            }],
            role: None,
        }
    }

    fn sqlstate(o: &Outcome) -> &str {
        o.error.as_ref().map_or("", |(_, e)| e.sqlstate.as_str())
    }

    /// Issue 9: `SERIAL` at the largest bigint made SQLite answer SQLITE_FULL, which the engine
    /// treated as fatal on every replica, and no node could start again. A row id of
    /// `i64::MAX` is now refused (22003) before SQLite can pick a random one or run out.
    #[test]
    fn the_largest_row_id_is_refused_and_the_node_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(
            &mut sm,
            0,
            &exec("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)"),
        );
        apply1(
            &mut sm,
            1,
            &exec("CREATE TABLE p (id INTEGER PRIMARY KEY, v TEXT)"),
        );
        let max = "INSERT INTO t (id, v) VALUES (9223372036854775807, 'max')";
        assert_eq!(sqlstate(&apply1(&mut sm, 2, &exec(max))), "22003");
        assert_eq!(
            apply1(&mut sm, 3, &exec("INSERT INTO t (v) VALUES ('boom')")).error,
            None
        );
        apply1(&mut sm, 4, &exec("INSERT INTO p (v) VALUES ('x')"));
        // In one statement: the maximum, then a generated key (AUTOINCREMENT: SQLITE_FULL;
        // a plain key: a random row id).
        for (i, sql) in [
            "INSERT INTO t (id, v) VALUES (9223372036854775807, 'a'), (NULL, 'b')",
            "INSERT INTO p (id, v) VALUES (9223372036854775807, 'a'), (NULL, 'b')",
            "UPDATE p SET id = 9223372036854775807",
        ]
        .iter()
        .enumerate()
        {
            let o = apply1(&mut sm, 5 + i as u64, &exec(sql));
            assert_eq!(sqlstate(&o), "22003", "{sql}");
        }
        let o = apply1(&mut sm, 8, &exec("SELECT count(*), max(id) FROM p"));
        assert_eq!(
            o.results[0].rows,
            vec![vec![Value::Integer(1), Value::Integer(1)]]
        );
        let o = apply1(&mut sm, 9, &exec("SELECT id, v FROM t"));
        assert_eq!(
            o.results[0].rows,
            vec![vec![Value::Integer(1), Value::Text("boom".into())]]
        );
    }

    /// Issue 9: an endless statement used to pin every replica's apply thread forever.
    #[test]
    fn a_statement_over_its_step_budget_fails_alone_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(&mut sm, 0, &exec("CREATE TABLE n (x INTEGER)"));
        let endless = "INSERT INTO n WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c";
        let read_only = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        // In one batch with other entries: a write (SQLite rolls the whole transaction back
        // when it is interrupted) and a read-only statement (SQLite keeps the transaction).
        let before = exec("INSERT INTO n VALUES (-1)");
        let stop_write = budgeted(endless, 1_000_000);
        let stop_read = budgeted(read_only, 1_000_000);
        let after = exec("INSERT INTO n VALUES (-2)");
        let items: Vec<ApplyItem<'_>> = [&before, &stop_write, &stop_read, &after]
            .iter()
            .enumerate()
            .map(|(i, c)| ApplyItem {
                index: LogIndex(10 + i as u64),
                command: Some(*c),
            })
            .collect();
        let outcomes = sm.apply_batch(&items, &RaftMeta::default()).unwrap();
        let states: Vec<&str> = outcomes
            .iter()
            .map(|o| sqlstate(o.as_ref().unwrap()))
            .collect();
        assert_eq!(states, ["", "54000", "54000", ""]);
        let o = apply1(&mut sm, 20, &exec("SELECT x FROM n ORDER BY x"));
        assert_eq!(
            o.results[0].rows,
            vec![vec![Value::Integer(-2)], vec![Value::Integer(-1)]],
            "the entries around it applied; the stopped one changed nothing"
        );
        // A statement that finishes just over the budget fails too: the check is exact.
        let o = apply1(&mut sm, 21, &budgeted("SELECT count(*) FROM n", 2));
        assert_eq!(sqlstate(&o), "54000");
    }

    #[test]
    fn steps_are_counted_the_same_on_a_fresh_and_a_warm_connection() {
        let count = |sm: &mut StateMachine, index: u64, budget: u64| {
            sqlstate(&apply1(
                sm,
                index,
                &budgeted("SELECT count(*) FROM t WHERE v > 3", budget),
            ))
            .to_string()
        };
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(&mut sm, 0, &exec("CREATE TABLE t (v INTEGER)"));
        apply1(
            &mut sm,
            1,
            &exec("INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) SELECT x FROM c"),
        );
        // Find the exact number of steps: the smallest budget that lets it through.
        let (mut lo, mut hi) = (1u64, 1_000_000u64);
        let mut index = 2;
        while lo < hi {
            let mid = (lo + hi) / 2;
            index += 1;
            if count(&mut sm, index, mid).is_empty() {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        // The same statement, many times warm, then on a new connection: the same boundary.
        for _ in 0..5 {
            index += 1;
            assert_eq!(count(&mut sm, index, lo), "");
            index += 1;
            assert_eq!(count(&mut sm, index, lo - 1), "54000");
        }
        drop(sm);
        let mut sm = StateMachine::open(dir.path()).unwrap();
        assert_eq!(count(&mut sm, index + 1, lo - 1), "54000");
        assert_eq!(count(&mut sm, index + 2, lo), "");
    }

    #[test]
    fn values_and_results_over_their_limits_fail_with_54000() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let big = crate::limits::VALUE_BYTES_MAX + 1;
        let o = apply1(
            &mut sm,
            0,
            &exec(&format!("SELECT length(zeroblob({big}) || 'x')")),
        );
        assert_eq!(sqlstate(&o), "54000");
        // Each value fits, the rows together do not.
        let rows = crate::limits::ENTRY_RESULT_BYTES_MAX / (1024 * 1024) + 1;
        let o = apply1(
            &mut sm,
            1,
            &exec(&format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT randomblob(1048576) FROM c")),
        );
        assert_eq!(sqlstate(&o), "54000");
        assert!(o.results.is_empty());
    }

    #[test]
    fn an_entry_of_another_build_stops_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let mut cmd = exec("CREATE TABLE t (a)");
        if let Command::Execute { header, .. } = &mut cmd {
            header.as_mut().unwrap().engine_version += 1;
        }
        let items = [ApplyItem {
            index: LogIndex(0),
            command: Some(&cmd),
        }];
        let e = sm.apply_batch(&items, &RaftMeta::default()).unwrap_err();
        assert!(e.0.contains("run the same build on every node"), "{e}");
        let mut old = exec("CREATE TABLE t (a)");
        if let Command::Execute { header, .. } = &mut old {
            *header = None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let items = [ApplyItem {
            index: LogIndex(0),
            command: Some(&old),
        }];
        assert!(sm.apply_batch(&items, &RaftMeta::default()).is_err());
    }

    #[test]
    fn the_state_hash_sees_row_ids() {
        let hash = |sql: &str| {
            let dir = tempfile::tempdir().unwrap();
            let mut sm = StateMachine::open(dir.path()).unwrap();
            apply1(&mut sm, 0, &exec("CREATE TABLE t (v TEXT)"));
            apply1(&mut sm, 1, &exec(sql));
            sm.state_hash().unwrap()
        };
        assert_eq!(
            hash("INSERT INTO t (rowid, v) VALUES (1, 'a')"),
            hash("INSERT INTO t (rowid, v) VALUES (1, 'a')")
        );
        assert_ne!(
            hash("INSERT INTO t (rowid, v) VALUES (1, 'a')"),
            hash("INSERT INTO t (rowid, v) VALUES (2, 'a')")
        );
    }

    /// A full disk is this node's failure, not the statement's: the node stops (latched), with
    /// a message that says what to do, and nothing of the batch is committed. SQLite answers
    /// SQLITE_FULL both for a full disk and for a database at `max_page_count`; the test uses
    /// the second to stand for the first.
    #[test]
    fn a_full_disk_stops_the_node_with_a_way_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply1(&mut sm, 0, &exec("CREATE TABLE t (v BLOB)"));
        let pages: i64 = sm
            .conn()
            .unwrap()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        sm.conn()
            .unwrap()
            .execute_batch(&format!("PRAGMA max_page_count = {}", pages + 2))
            .unwrap();
        let cmd = exec("INSERT INTO t VALUES (randomblob(1000000))");
        let items = [ApplyItem {
            index: LogIndex(1),
            command: Some(&cmd),
        }];
        let e = sm.apply_batch(&items, &RaftMeta::default()).unwrap_err();
        assert!(e.0.contains("free space and restart the node"), "{e}");
        assert_eq!(sm.applied_index(), Some(LogIndex(0)));
        // Latched: the node refuses everything until it restarts.
        assert!(sm.state_hash().is_err());
        drop(sm);
        let sm = StateMachine::open(dir.path()).unwrap();
        assert_eq!(
            sm.applied_index(),
            Some(LogIndex(0)),
            "nothing of the batch was kept"
        );
    }
}
