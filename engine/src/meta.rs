//! The `_sqlkeeper_meta` table: applied index, Raft metadata and format version, stored in the
//! state database itself so that a snapshot file carries its own identity.

use rusqlite::{Connection, OptionalExtension};

/// Prefix of every internal table. User SQL may not touch them.
pub(crate) const INTERNAL_PREFIX: &str = "_sqlkeeper";

/// Name of the metadata table inside the state database. User SQL may not touch it.
pub const META_TABLE: &str = "_sqlkeeper_meta";

/// Version of the state database layout. Bump when the meaning of stored data changes.
pub(crate) const STATE_FORMAT_VERSION: i64 = 1;

pub(crate) const KEY_APPLIED_INDEX: &str = "applied_index";
pub(crate) const KEY_RAFT_APPLIED: &str = "raft_applied";
pub(crate) const KEY_RAFT_MEMBERSHIP: &str = "raft_membership";
/// Index of the last applied entry that may have changed data (every `Execute`, every
/// transaction that committed). A transaction commits only if this is still the value it saw.
pub(crate) const KEY_LAST_WRITE_INDEX: &str = "last_write_index";
pub(crate) const KEY_FORMAT_VERSION: &str = "format_version";

/// Outcomes of recently applied requests, by request id: a command proposed twice (after a
/// leader change with an unknown outcome) is applied once and answered with the first
/// outcome.
pub(crate) const REQUESTS_TABLE: &str = "_sqlkeeper_requests";

/// Node ids removed from the cluster; they are never accepted again.
pub const REMOVED_NODES_TABLE: &str = "_sqlkeeper_removed_nodes";

/// Entries for which a request id is remembered. A client retries within seconds; 100,000
/// entries is hours of writes at metadata-store rates.
pub(crate) const DEDUP_WINDOW_ENTRIES: u64 = 100_000;

pub(crate) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value ANY) STRICT;
         CREATE TABLE IF NOT EXISTS {REQUESTS_TABLE} (origin INTEGER NOT NULL, serial INTEGER NOT NULL,
             log_index INTEGER NOT NULL, outcome BLOB NOT NULL, PRIMARY KEY (origin, serial)) STRICT, WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS {REQUESTS_TABLE}_by_index ON {REQUESTS_TABLE} (log_index);
         CREATE TABLE IF NOT EXISTS {REMOVED_NODES_TABLE} (node_id INTEGER PRIMARY KEY) STRICT;"
    ))?;
    conn.execute(
        &format!("INSERT OR IGNORE INTO {META_TABLE} (key, value) VALUES (?1, ?2)"),
        rusqlite::params![KEY_FORMAT_VERSION, STATE_FORMAT_VERSION],
    )?;
    Ok(())
}

pub(crate) fn get_i64(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    // Cached: the apply path reads the last write index once per batch.
    conn.prepare_cached(&format!("SELECT value FROM {META_TABLE} WHERE key = ?1"))?
        .query_row([key], |r| r.get(0))
        .optional()
}

pub(crate) fn get_blob(conn: &Connection, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row(
        &format!("SELECT value FROM {META_TABLE} WHERE key = ?1"),
        [key],
        |r| r.get(0),
    )
    .optional()
}

pub(crate) fn put<V: rusqlite::ToSql>(
    conn: &Connection,
    key: &str,
    value: V,
) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO {META_TABLE} (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    ))?
    .execute(rusqlite::params![key, value])?;
    Ok(())
}
