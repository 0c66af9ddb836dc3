//! The `_sqlkeeper_meta` table: applied index, Raft metadata and format version, stored in the
//! state database itself so that a snapshot file carries its own identity.

use rusqlite::{Connection, OptionalExtension};

/// Name of the metadata table inside the state database. User SQL may not touch it.
pub const META_TABLE: &str = "_sqlkeeper_meta";

/// Version of the state database layout. Bump when the meaning of stored data changes.
pub(crate) const STATE_FORMAT_VERSION: i64 = 1;

pub(crate) const KEY_APPLIED_INDEX: &str = "applied_index";
pub(crate) const KEY_RAFT_APPLIED: &str = "raft_applied";
pub(crate) const KEY_RAFT_MEMBERSHIP: &str = "raft_membership";
pub(crate) const KEY_FORMAT_VERSION: &str = "format_version";

pub(crate) fn create(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value ANY) STRICT;"
    ))?;
    conn.execute(
        &format!("INSERT OR IGNORE INTO {META_TABLE} (key, value) VALUES (?1, ?2)"),
        rusqlite::params![KEY_FORMAT_VERSION, STATE_FORMAT_VERSION],
    )?;
    Ok(())
}

pub(crate) fn get_i64(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        &format!("SELECT value FROM {META_TABLE} WHERE key = ?1"),
        [key],
        |r| r.get(0),
    )
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
