//! The values and columns a session hands the protocol: its own types, so the protocol crate
//! needs nothing of the engine. The same shapes as the engine's (SQLite's storage classes).

/// A SQL value as SQLite stores it: a bound parameter, or a value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// 64-bit signed integer.
    Integer(i64),
    /// 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A result column as SQLite describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// The declared type of the table column it comes from, if it comes from one.
    pub decl_type: Option<String>,
}

impl Value {
    pub(crate) fn into_engine(self) -> sqlkeeper_engine::Value {
        use sqlkeeper_engine::Value as E;
        match self {
            Value::Null => E::Null,
            Value::Integer(i) => E::Integer(i),
            Value::Real(f) => E::Real(f),
            Value::Text(t) => E::Text(t),
            Value::Blob(b) => E::Blob(b),
        }
    }

    fn from_engine(v: sqlkeeper_engine::Value) -> Value {
        use sqlkeeper_engine::Value as E;
        match v {
            E::Null => Value::Null,
            E::Integer(i) => Value::Integer(i),
            E::Real(f) => Value::Real(f),
            E::Text(t) => Value::Text(t),
            E::Blob(b) => Value::Blob(b),
        }
    }
}

pub(crate) fn rows_from(rows: Vec<Vec<sqlkeeper_engine::Value>>) -> Vec<Vec<Value>> {
    rows.into_iter()
        .map(|r| r.into_iter().map(Value::from_engine).collect())
        .collect()
}

pub(crate) fn columns_from(columns: Vec<sqlkeeper_engine::Column>) -> Vec<Column> {
    columns
        .into_iter()
        .map(|c| Column {
            name: c.name,
            decl_type: c.decl_type,
        })
        .collect()
}

/// The error of the first string literal `t` casts to a type it is not a value of
/// (`'abc'::int`), which PostgreSQL raises while it parses the statement: before the statement
/// runs, wherever the cast stands in it.
pub(crate) fn literal_cast_error(t: &sqlkeeper_sql::Translated) -> Option<crate::ClientError> {
    t.literal_casts.iter().find_map(|(text, ty, typmod)| {
        sqlkeeper_engine::check_literal_cast(text, ty, *typmod)
            .err()
            .map(crate::ClientError::from)
    })
}
