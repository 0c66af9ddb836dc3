//! Per-connection session state: settings changed with `SET`, read with `SHOW`.

use std::collections::BTreeMap;

/// Version reported to clients (`server_version`, `version()`). Clients parse the leading
/// `MAJOR.MINOR`; the suffix names what they are talking to.
pub const SERVER_VERSION: &str = concat!("16.6 (sqlkeeper ", env!("CARGO_PKG_VERSION"), ")");

/// Settings a session starts with, as Postgres names and spells them.
const DEFAULTS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "serializable"),
    ("extra_float_digits", "1"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("search_path", "public"),
    ("server_encoding", "UTF8"),
    ("server_version", SERVER_VERSION),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("timezone", "UTC"),
    ("transaction isolation level", "serializable"),
    ("transaction_isolation", "serializable"),
];

/// Settings that cannot be changed, because the node's behaviour does not depend on them.
const READ_ONLY: &[&str] = &["server_version", "server_encoding", "integer_datetimes"];

/// The session of one client connection.
#[derive(Debug, Default)]
pub(crate) struct Session {
    settings: BTreeMap<String, String>,
}

impl Session {
    pub(crate) fn show(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        if let Some(v) = self.settings.get(&name) {
            return Some(v.clone());
        }
        DEFAULTS
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
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
        let known = DEFAULTS.iter().any(|(k, _)| *k == name);
        if !known && !name.contains('.') {
            return Err((
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            ));
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
