//! Errors of the SQL layer, each with its Postgres SQLSTATE, and the one SQLSTATE type every
//! crate uses.

/// A Postgres SQLSTATE: five characters, digits and upper-case letters (`23505`, `0A000`).
/// Serialized as its text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState([u8; 5]);

impl SqlState {
    /// The SQLSTATE `code`; a code of another shape does not compile when used in a constant,
    /// and is `XX000` otherwise (see [`SqlState::parse`] for codes read from text).
    pub const fn new(code: &str) -> SqlState {
        match SqlState::parse_const(code) {
            Some(s) => s,
            None => SqlState::INTERNAL_ERROR,
        }
    }

    const fn parse_const(code: &str) -> Option<SqlState> {
        let b = code.as_bytes();
        if b.len() != 5 {
            return None;
        }
        let mut i = 0;
        while i < 5 {
            if !(b[i].is_ascii_digit() || b[i].is_ascii_uppercase()) {
                return None;
            }
            i += 1;
        }
        Some(SqlState([b[0], b[1], b[2], b[3], b[4]]))
    }

    /// `code` if it has the shape of a SQLSTATE.
    pub fn parse(code: &str) -> Option<SqlState> {
        SqlState::parse_const(code)
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XX000")
    }

    /// `XX000 internal_error`.
    pub const INTERNAL_ERROR: SqlState = SqlState(*b"XX000");
    /// `40001 serialization_failure`.
    pub const SERIALIZATION_FAILURE: SqlState = SqlState(*b"40001");
    /// `57014 query_canceled`.
    pub const QUERY_CANCELED: SqlState = SqlState(*b"57014");
    /// `0A000 feature_not_supported`.
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState(*b"0A000");
    /// `42601 syntax_error`.
    pub const SYNTAX_ERROR: SqlState = SqlState(*b"42601");
}

impl From<&str> for SqlState {
    fn from(code: &str) -> SqlState {
        SqlState::new(code)
    }
}

impl std::fmt::Display for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq<str> for SqlState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SqlState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for SqlState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for SqlState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SqlState, D::Error> {
        let s = String::deserialize(d)?;
        SqlState::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a SQLSTATE: {s:?}")))
    }
}

/// A statement that cannot be parsed or translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    /// Postgres SQLSTATE: 42601 syntax, 0A000 not supported, 54001 too complex, ...
    pub sqlstate: SqlState,
    /// Message in Postgres style.
    pub message: String,
    /// 1-based character position in the query string, for the ErrorResponse `P` field.
    pub position: Option<u32>,
}

impl SqlError {
    /// A `0A000 feature_not_supported` error naming the construct.
    pub fn unsupported(what: impl std::fmt::Display) -> SqlError {
        SqlError {
            sqlstate: SqlState::FEATURE_NOT_SUPPORTED,
            message: format!("{what} is not supported"),
            position: None,
        }
    }

    pub(crate) fn syntax(message: String, position: Option<u32>) -> SqlError {
        SqlError {
            sqlstate: SqlState::SYNTAX_ERROR,
            message,
            position,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SqlState;

    #[test]
    fn sqlstates_are_five_digits_or_capitals_and_travel_as_text() {
        assert_eq!(SqlState::new("40001"), SqlState::SERIALIZATION_FAILURE);
        assert_eq!(SqlState::new("0A000").as_str(), "0A000");
        assert_eq!(
            SqlState::parse("42P01").map(|s| s.to_string()),
            Some("42P01".into())
        );
        for bad in ["4000", "400011", "4000a", "40 01", ""] {
            assert_eq!(SqlState::parse(bad), None, "{bad:?}");
        }
        assert_eq!(SqlState::new("oops"), SqlState::INTERNAL_ERROR);
        let json = serde_json::to_string(&SqlState::new("23505")).unwrap();
        assert_eq!(json, "\"23505\"");
        assert_eq!(serde_json::from_str::<SqlState>(&json).unwrap(), "23505");
        assert!(serde_json::from_str::<SqlState>("\"2350\"").is_err());
    }
}
