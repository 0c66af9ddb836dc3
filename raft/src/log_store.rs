//! The durable Raft log: a separate SQLite file in WAL mode with `synchronous = FULL`.
//!
//! Every `append` call is one SQLite transaction, so one fsync covers all the entries of the
//! call (openraft merges queued client writes into one call: group commit). The vote is
//! written and fsynced before `save_vote` returns; the committed log id is written with the
//! next append. Format: `docs/log-format.md`.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use rusqlite::{Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::TypeConfig;

/// File name of the log database inside the node's `raft/` directory.
pub const LOG_DB_FILE: &str = "log.db";

/// First byte of every stored entry and metadata value: the encoding version.
/// Version 1 = JSON (serde) of the openraft type. Version 2 = the same, with
/// `Command::Transaction` among the commands. Version 3 = commands carry an `EntryHeader`
/// (engine and SQLite versions, step budget): an earlier build refuses to read them rather
/// than ignore the header. Version 4 = a `Command::Transaction` carries one `TxnRecord` (no
/// base; read steps). Version 5 = `Command::TransactionPart`, and a `TxnRecord` may name staged
/// parts. Versions 1 to 4 still decode where their JSON is a subset (all but the transactions
/// of 1 to 3), and apply refuses their commands, whose header names an earlier engine. New
/// records are written as version 5. See `docs/log-format.md`.
const ENCODING_V1: u8 = 1;
const ENCODING_V2: u8 = 2;
const ENCODING_V3: u8 = 3;
const ENCODING_V4: u8 = 4;
const ENCODING_V5: u8 = 5;

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";

/// The Raft log store. Cloning shares the same connection (the log reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    /// The log database. Held only inside `spawn_blocking`, never across an await.
    conn: Arc<Mutex<Connection>>,
    /// The committed log id last given to `save_committed` and not yet written (it is written
    /// with the next append), and whether one was given since the store was opened.
    committed: Arc<Mutex<Committed>>,
    path: PathBuf,
}

#[derive(Default)]
struct Committed {
    latest: Option<Option<LogIdOf<TypeConfig>>>,
    unwritten: bool,
}

fn other<E: std::fmt::Display>(context: &'static str) -> impl FnOnce(E) -> io::Error {
    move |e| io::Error::other(format!("{context}: {e}"))
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut out = vec![ENCODING_V5];
    serde_json::to_writer(&mut out, value).map_err(other("encode log record"))?;
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    match bytes.split_first() {
        Some((&(ENCODING_V1 | ENCODING_V2 | ENCODING_V3 | ENCODING_V4 | ENCODING_V5), body)) => {
            serde_json::from_slice(body).map_err(other("decode log record"))
        }
        Some((v, _)) => Err(io::Error::other(format!(
            "log record has unknown encoding version {v}"
        ))),
        None => Err(io::Error::other("log record is empty")),
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_DB_FILE);
        let conn = Connection::open(&path).map_err(other("open raft log"))?;
        // WAL + synchronous=FULL: COMMIT returns after the WAL is fsynced, so an entry (or
        // vote) reported durable survives power loss. A crash mid-transaction leaves the log
        // as of the previous commit: openraft was not yet told of the unfinished append.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS log (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )
        .map_err(other("initialize raft log"))?;
        Ok(LogStore {
            conn: Arc::new(Mutex::new(conn)),
            committed: Default::default(),
            path,
        })
    }

    /// Path of the log database.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(other("log store task"))?
    }

    fn get_meta<T: DeserializeOwned>(conn: &Connection, key: &str) -> io::Result<Option<T>> {
        let raw: Option<Vec<u8>> = conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(other("read log meta"))?;
        raw.map(|b| decode(&b)).transpose()
    }

    fn put_meta<T: Serialize>(conn: &Connection, key: &str, value: &T) -> io::Result<()> {
        let bytes = encode(value)?;
        conn.prepare_cached(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut s| s.execute(rusqlite::params![key, bytes]))
        .map_err(other("write log meta"))?;
        Ok(())
    }
}

fn range_to_sql<RB: RangeBounds<u64>>(range: &RB) -> (i64, i64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => *e,
        Bound::Excluded(e) => match e.checked_sub(1) {
            Some(v) => v,
            None => return (1, 0), // empty
        },
        Bound::Unbounded => u64::MAX,
    };
    // No cap here: openraft requires every entry of the range (it bounds ranges itself, by
    // `max_payload_entries` for replication and by the apply batch for the state machine).
    (
        i64::try_from(start).unwrap_or(i64::MAX),
        i64::try_from(end).unwrap_or(i64::MAX),
    )
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<EntryOf<TypeConfig>>, io::Error> {
        let (start, end) = range_to_sql(&range);
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT entry FROM log WHERE idx >= ?1 AND idx <= ?2 ORDER BY idx")
                .map_err(other("read log"))?;
            let mut rows = stmt.query([start, end]).map_err(other("read log"))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(other("read log"))? {
                let bytes: Vec<u8> = row.get(0).map_err(other("read log"))?;
                out.push(decode(&bytes)?);
            }
            Ok(out)
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        self.with_conn(|conn| LogStore::get_meta(conn, KEY_VOTE))
            .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        self.with_conn(|conn| {
            let purged: Option<LogIdOf<TypeConfig>> = LogStore::get_meta(conn, KEY_PURGED)?;
            let last: Option<Vec<u8>> = conn
                .query_row("SELECT entry FROM log ORDER BY idx DESC LIMIT 1", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(other("read last log entry"))?;
            let last_log_id = match last {
                Some(bytes) => Some(decode::<EntryOf<TypeConfig>>(&bytes)?.log_id),
                None => purged,
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        let vote = *vote;
        // Durable on return: synchronous=FULL fsyncs the WAL at this commit.
        self.with_conn(move |conn| LogStore::put_meta(conn, KEY_VOTE, &vote))
            .await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        // Kept here and written with the next append, in its transaction: openraft saves the
        // committed log id before it applies, so writing it now would put a SQLite transaction
        // on every write's latency. It only lets a restarted node apply its log sooner. Losing
        // the latest one costs nothing but time: what was committed is on a majority's fsynced
        // logs, and the node learns the commit index from the leader (or, as the leader,
        // commits again in its new term) and applies it then.
        let mut c = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        c.latest = Some(committed);
        c.unwritten = true;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<TypeConfig>>, io::Error> {
        if let Some(c) = self
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .latest
        {
            return Ok(c);
        }
        self.with_conn(|conn| {
            Ok(LogStore::get_meta::<Option<LogIdOf<TypeConfig>>>(conn, KEY_COMMITTED)?.flatten())
        })
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = EntryOf<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<(i64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| {
                Ok((
                    i64::try_from(e.log_id.index).map_err(other("log index"))?,
                    encode(&e)?,
                ))
            })
            .collect::<io::Result<_>>()?;
        let committed = {
            let mut c = self.committed.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut c.unwritten)
                .then_some(c.latest)
                .flatten()
        };
        let started = std::time::Instant::now();
        let result = self
            .with_conn(move |conn| {
                // One transaction per call: one fsync for the whole batch.
                let tx = conn.transaction().map_err(other("begin append"))?;
                if let Some(c) = committed {
                    LogStore::put_meta(&tx, KEY_COMMITTED, &c)?;
                }
                {
                    let mut stmt = tx
                        .prepare_cached("INSERT OR REPLACE INTO log (idx, entry) VALUES (?1, ?2)")
                        .map_err(other("append"))?;
                    for (idx, bytes) in &encoded {
                        stmt.execute(rusqlite::params![idx, bytes])
                            .map_err(other("append"))?;
                    }
                }
                tx.commit().map_err(other("commit append transaction"))
            })
            .await;
        metrics::histogram!("sqlkeeper_log_append_seconds").record(started.elapsed());
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(
        &mut self,
        last_log_id: Option<LogIdOf<TypeConfig>>,
    ) -> Result<(), io::Error> {
        let from = last_log_id.map(|l| l.index.saturating_add(1)).unwrap_or(0);
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            conn.execute("DELETE FROM log WHERE idx >= ?1", [from])
                .map_err(other("truncate log"))?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogIdOf<TypeConfig>) -> Result<(), io::Error> {
        self.with_conn(move |conn| {
            // The purge point is recorded in the same transaction as the delete: after a
            // crash either both happened or neither.
            let tx = conn.transaction().map_err(other("begin purge"))?;
            LogStore::put_meta(&tx, KEY_PURGED, &log_id)?;
            let upto = i64::try_from(log_id.index).unwrap_or(i64::MAX);
            tx.execute("DELETE FROM log WHERE idx <= ?1", [upto])
                .map_err(other("purge log"))?;
            tx.commit().map_err(other("commit purge transaction"))
        })
        .await
    }
}
