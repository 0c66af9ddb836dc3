//! A session's settings: changed with `SET`, read with `SHOW`, and the session's token.

use std::collections::BTreeMap;
use std::time::Duration;

/// Version reported to clients (`server_version`, `version()`). Clients parse the leading
/// `MAJOR.MINOR`; the suffix names what they are talking to.
pub const SERVER_VERSION: &str = concat!("16.6 (sqlkeeper ", env!("CARGO_PKG_VERSION"), ")");

/// Settings a session starts with, as Postgres names and spells them.
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    // Tables are SQLite's; `heap` is the name PostgreSQL's clients expect (SQLAlchemy reads it,
    // pg_dump's scripts set it).
    ("default_table_access_method", "heap"),
    ("default_transaction_isolation", "read committed"),
    ("default_transaction_read_only", "off"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "1min"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", SERVER_VERSION),
    ("sqlkeeper.log_index", "0"),
    ("sqlkeeper.max_staleness", "off"),
    ("sqlkeeper.min_log_index", "0"),
    ("sqlkeeper.read_consistency", "sequential"),
    ("sqlkeeper.read_timeout", "5s"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
];

/// Names of the current block's isolation level: outside a block they show the session's
/// default, inside one the block answers (`txn.rs`).
const TRANSACTION_ISOLATION: &[&str] = &["transaction_isolation", "transaction isolation level"];

/// Settings that cannot be changed, because the node's behaviour does not depend on them.
const READ_ONLY: &[&str] = &[
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "sqlkeeper.log_index",
];

/// How a session's reads relate to writes (see `docs/consistency.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadConsistency {
    /// Never older than what the session wrote or read before (the session's token).
    Sequential,
    /// Sees every write acknowledged before the read started, cluster-wide.
    Linearizable,
    /// Local state at once, optionally bounded by `sqlkeeper.max_staleness`.
    Stale,
}

/// Longest duration a setting takes, in milliseconds: PostgreSQL's limit for its timeout
/// settings (`INT_MAX` ms, about 24.8 days). Longer values were accepted and saturated at
/// 584,942 years; they now get 22023 as in PostgreSQL, and every deadline computed from a
/// setting stays far from what `Instant` can hold.
const SETTING_DURATION_MS_MAX: f64 = i32::MAX as f64;

/// Longest a session may sit idle inside a transaction block, whatever its
/// `idle_in_transaction_session_timeout` says (0, "off", included): a `REPEATABLE READ` or
/// `SERIALIZABLE` block may hold a read view, which keeps the write-ahead log from being
/// recycled. Ten minutes is far beyond what an application or a person at psql needs between
/// two statements of one block.
pub(crate) const IDLE_IN_TRANSACTION_MAX: Duration = Duration::from_secs(10 * 60);

/// Longest a read may run, whatever `statement_timeout` says (0, "off", included): a running
/// read keeps its read view, and so the write-ahead log, from being recycled, and holds a read
/// connection. A metadata store's reads take milliseconds; a minute is generous.
pub(crate) const STATEMENT_TIMEOUT_MAX: Duration = Duration::from_secs(60);

/// A duration setting bounded by `max`; 0 and a missing or unparsable value mean `max`.
fn bounded(v: Option<String>, max: Duration) -> Duration {
    v.and_then(|v| parse_duration(&v))
        .filter(|d| !d.is_zero())
        .map_or(max, |d| d.min(max))
}

/// Parses a Postgres-style duration setting: `5s`, `500ms`, `2min`, `1h`, or a bare number
/// of milliseconds, up to `SETTING_DURATION_MS_MAX`.
pub(crate) fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        "min" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => return None,
    };
    (ms.is_finite() && (0.0..=SETTING_DURATION_MS_MAX).contains(&ms))
        .then(|| Duration::from_micros((ms * 1000.0) as u64))
}

/// A boolean setting's value as Postgres reads it.
fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().trim_matches('\'').to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// The session of one client connection.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    settings: BTreeMap<String, String>,
    /// The highest log index this session has written or observed: its reads never see an
    /// older state (`SHOW sqlkeeper.log_index`).
    token: u64,
}

impl Settings {
    /// Raises the session's token to `index`.
    pub(crate) fn observe(&mut self, index: u64) {
        self.token = self.token.max(index);
    }

    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    pub(crate) fn read_consistency(&self) -> ReadConsistency {
        match self.show("sqlkeeper.read_consistency").as_deref() {
            Some("linearizable") => ReadConsistency::Linearizable,
            Some("stale") => ReadConsistency::Stale,
            _ => ReadConsistency::Sequential,
        }
    }

    pub(crate) fn read_timeout(&self) -> Duration {
        self.show("sqlkeeper.read_timeout")
            .and_then(|v| parse_duration(&v))
            .unwrap_or(Duration::from_secs(5))
    }

    /// `idle_in_transaction_session_timeout`, at most [`IDLE_IN_TRANSACTION_MAX`] (also when
    /// the session set 0, "off").
    pub(crate) fn idle_in_transaction_timeout(&self) -> Duration {
        bounded(
            self.show("idle_in_transaction_session_timeout"),
            IDLE_IN_TRANSACTION_MAX,
        )
    }

    /// `statement_timeout` for reads, at most [`STATEMENT_TIMEOUT_MAX`] (also when the session
    /// set 0, "off").
    pub(crate) fn statement_timeout(&self) -> Duration {
        bounded(self.show("statement_timeout"), STATEMENT_TIMEOUT_MAX)
    }

    /// The isolation level of blocks that do not name one (`default_transaction_isolation`).
    pub(crate) fn default_isolation(&self) -> sqlkeeper_sql::Isolation {
        self.show("default_transaction_isolation")
            .and_then(|v| sqlkeeper_sql::Isolation::parse(&v))
            .unwrap_or(sqlkeeper_sql::Isolation::ReadCommitted)
    }

    /// Whether blocks are read-only unless they say otherwise
    /// (`default_transaction_read_only`).
    pub(crate) fn default_read_only(&self) -> bool {
        self.show("default_transaction_read_only")
            .is_some_and(|v| parse_bool(&v) == Some(true))
    }

    pub(crate) fn max_staleness(&self) -> Option<Duration> {
        self.show("sqlkeeper.max_staleness")
            .and_then(|v| parse_duration(&v))
    }

    pub(crate) fn show(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        if name == "sqlkeeper.log_index" {
            return Some(self.token.to_string());
        }
        if TRANSACTION_ISOLATION.contains(&name.as_str()) {
            return self.show("default_transaction_isolation");
        }
        if let Some(v) = self.settings.get(&name) {
            return Some(v.clone());
        }
        DEFAULTS
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    /// Every setting and its value, by name (`SHOW ALL`).
    pub(crate) fn all(&self) -> Vec<(String, String)> {
        let mut names: Vec<String> = DEFAULTS.iter().map(|(n, _)| n.to_string()).collect();
        names.extend(self.settings.keys().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| self.show(&n).map(|v| (n, v)))
            .collect()
    }

    /// Stores a setting. Unknown names are accepted only with a dot (custom settings, as
    /// Postgres does for `extension.name`); the well-known ones are kept as given.
    pub(crate) fn set(
        &mut self,
        name: &str,
        value: Option<String>,
    ) -> Result<(), (&'static str, String)> {
        let name = name.to_ascii_lowercase();
        if READ_ONLY.contains(&name.as_str()) {
            return Err(("55P02", format!("parameter \"{name}\" cannot be changed")));
        }
        if TRANSACTION_ISOLATION.contains(&name.as_str()) {
            // Outside a block: Postgres warns and changes nothing.
            return Ok(());
        }
        let known = DEFAULTS.iter().any(|(k, _)| *k == name);
        if !known && (!name.contains('.') || name.starts_with("sqlkeeper.")) {
            return Err((
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            ));
        }
        if let Some(v) = &value {
            let invalid = || {
                (
                    "22023",
                    format!("invalid value for parameter \"{name}\": \"{v}\""),
                )
            };
            match name.as_str() {
                "sqlkeeper.read_consistency"
                    if !matches!(v.as_str(), "sequential" | "linearizable" | "stale") =>
                {
                    return Err(invalid());
                }
                "default_transaction_isolation" => {
                    let i = sqlkeeper_sql::Isolation::parse(v).ok_or_else(invalid)?;
                    // Stored as Postgres spells it in SHOW.
                    self.settings.insert(name, i.name().to_string());
                    return Ok(());
                }
                "default_transaction_read_only" => {
                    let on = parse_bool(v).ok_or_else(invalid)?;
                    self.settings
                        .insert(name, if on { "on" } else { "off" }.to_string());
                    return Ok(());
                }
                "idle_in_transaction_session_timeout" | "statement_timeout" => {
                    parse_duration(v).ok_or_else(invalid)?;
                }
                "sqlkeeper.read_timeout" => {
                    parse_duration(v).ok_or_else(invalid)?;
                }
                "sqlkeeper.max_staleness" if v != "off" => {
                    parse_duration(v).ok_or_else(invalid)?;
                }
                "sqlkeeper.min_log_index" => {
                    let n: u64 = v.trim().parse().map_err(|_| invalid())?;
                    self.observe(n);
                }
                _ => {}
            }
        }
        match value {
            Some(v) => {
                self.settings.insert(name, v);
            }
            None => {
                self.settings.remove(&name);
            }
        }
        Ok(())
    }

    pub(crate) fn reset_all(&mut self) {
        self.settings.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_settings_stop_at_postgres_limit() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_duration("2147483647"),
            Some(Duration::from_millis(2_147_483_647))
        );
        assert_eq!(parse_duration("2147483648"), None);
        assert_eq!(parse_duration("1000000000h"), None);
        let mut s = Settings::default();
        let (state, _) = s
            .set("sqlkeeper.read_timeout", Some("1000000000h".into()))
            .unwrap_err();
        assert_eq!(state, "22023");
    }
}
