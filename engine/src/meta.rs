//! The `_sqlkeeper_meta` table: applied index, Raft metadata and format version, stored in the
//! state database itself so that a snapshot file carries its own identity.

use rusqlite::{Connection, OptionalExtension};

/// Name of the metadata table inside the state database. User SQL may not touch it.
pub const META_TABLE: &str = "_sqlkeeper_meta";

/// Version of the state database layout. Bump when the meaning of stored data changes.
/// Version 2: the request table keeps outcome digests and the log clock; no planner
/// statistics tables. A state database of another version is refused.
pub(crate) const STATE_FORMAT_VERSION: i64 = 2;

pub(crate) const KEY_APPLIED_INDEX: &str = "applied_index";
pub(crate) const KEY_RAFT_APPLIED: &str = "raft_applied";
pub(crate) const KEY_RAFT_MEMBERSHIP: &str = "raft_membership";
pub(crate) const KEY_FORMAT_VERSION: &str = "format_version";
/// The latest stamp applied (microseconds): the log's own clock, for request deduplication.
pub(crate) const KEY_LOG_CLOCK: &str = "log_clock";

/// Digests of the outcomes of recently applied requests, by request id: a command proposed
/// twice (after a leader change with an unknown outcome) is applied once and answered from the
/// first outcome's digest. Windows: `apply.rs` (`DEDUP_WINDOW`).
pub(crate) const REQUESTS_TABLE: &str = "_sqlkeeper_requests";

/// Node ids removed from the cluster; they are never accepted again.
pub const REMOVED_NODES_TABLE: &str = "_sqlkeeper_removed_nodes";

pub(crate) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value ANY) STRICT;
         CREATE TABLE IF NOT EXISTS {REQUESTS_TABLE} (origin INTEGER NOT NULL, serial INTEGER NOT NULL,
             log_index INTEGER NOT NULL, log_clock INTEGER NOT NULL, outcome BLOB NOT NULL,
             PRIMARY KEY (origin, serial)) STRICT, WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS {REQUESTS_TABLE}_by_index ON {REQUESTS_TABLE} (log_index);
         CREATE INDEX IF NOT EXISTS {REQUESTS_TABLE}_by_clock ON {REQUESTS_TABLE} (log_clock, log_index);
         CREATE TABLE IF NOT EXISTS {REMOVED_NODES_TABLE} (node_id INTEGER PRIMARY KEY) STRICT;
         {};
         {};
         {};
         {};
         {};",
        crate::staged::create_sql(),
        sqlkeeper_sql::COMMENTS_TABLE_SQL,
        sqlkeeper_sql::TYPES_TABLE_SQL,
        sqlkeeper_sql::ROLES_TABLE_SQL,
        sqlkeeper_sql::PRIVILEGES_TABLES_SQL
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

/// Refuses a state database written with another layout: this build would misread it.
pub(crate) fn check_format(conn: &Connection) -> Result<(), String> {
    match get_i64(conn, KEY_FORMAT_VERSION) {
        Ok(Some(STATE_FORMAT_VERSION)) => Ok(()),
        Ok(Some(v)) => Err(format!(
            "the state database has layout version {v}; this build reads version \
             {STATE_FORMAT_VERSION}: start it with the build that wrote it"
        )),
        Ok(None) => Err("the state database has no layout version".into()),
        Err(e) => Err(format!("read the layout version: {e}")),
    }
}
