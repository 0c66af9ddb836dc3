//! Functions whose value is the session's or the connection's: `current_user`,
//! `current_database()`, `current_setting('name')`, `pg_backend_pid()`, `inet_server_addr()`,
//! ... . SQLite knows none of them, and in a write they would differ from replica to replica.
//! Each call becomes a parameter (`?n`, numbered after the client's and the literals': it is
//! marked before the literals become parameters, so that its own literal arguments stay
//! literals, and numbered after), and the
//! session binds its value when the statement runs ([`Translated::session_values`]): a read
//! sees the session's value, and a write carries it in the log entry like any bound value, so
//! every replica applies the same one.
//!
//! [`Translated::session_values`]: crate::Translated

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions_mut, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Statement, Value,
};

use crate::error::SqlError;

/// A value the session supplies when a statement runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionValue {
    /// `current_user`, `session_user`, `user`, `current_role`: the role the client connected
    /// as.
    User,
    /// `current_database()`, `current_catalog`: the database the client connected to.
    Database,
    /// `current_setting(name [, missing_ok])`: the session's setting, as `SHOW` prints it;
    /// with `missing_ok`, NULL for an unknown name instead of 42704.
    Setting {
        /// The setting's name, lower case.
        name: String,
        /// NULL instead of an error for an unknown setting.
        missing_ok: bool,
    },
    /// `pg_backend_pid()`: the process id the connection was given in BackendKeyData.
    BackendPid,
    /// `inet_server_addr()`: the address the client connected to.
    ServerAddr,
    /// `inet_server_port()`: the port the client connected to.
    ServerPort,
    /// A role's password (`CREATE ROLE … PASSWORD '…'`) as the SCRAM-SHA-256 verifier the
    /// session makes of it with a random salt, so that the log carries no password
    /// (`roles.rs`); a client's own verifier (`SCRAM-SHA-256$…`) is kept as it is.
    ScramVerifier(String),
}

/// The search path PostgreSQL reports for a session that did not change it: `pg_catalog`
/// implicitly, then `public` (`"$user"` names no schema here).
const SCHEMAS_IMPLICIT: &str = "{pg_catalog,public}";
const SCHEMAS: &str = "{public}";

fn literal_text(arg: &FunctionArg) -> Option<String> {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

fn literal_bool(arg: &FunctionArg) -> Option<bool> {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::Boolean(b) => Some(*b),
            _ => None,
        },
        _ => None,
    }
}

/// What a call of `name` with `args` becomes: a session value, a constant, or nothing (not a
/// session function).
enum Replacement {
    Session(SessionValue),
    Constant(&'static str),
}

fn replacement(name: &str, args: &FunctionArguments) -> Result<Option<Replacement>, SqlError> {
    let list: &[FunctionArg] = match args {
        FunctionArguments::None => &[],
        FunctionArguments::List(l) => &l.args,
        FunctionArguments::Subquery(_) => return Ok(None),
    };
    let bare = matches!(args, FunctionArguments::None);
    Ok(Some(match (name, list) {
        ("current_user" | "session_user" | "user" | "current_role", []) if bare => {
            Replacement::Session(SessionValue::User)
        }
        ("current_catalog", []) if bare => Replacement::Session(SessionValue::Database),
        ("current_database", []) => Replacement::Session(SessionValue::Database),
        ("pg_backend_pid", []) => Replacement::Session(SessionValue::BackendPid),
        ("inet_server_addr", []) => Replacement::Session(SessionValue::ServerAddr),
        ("inet_server_port", []) => Replacement::Session(SessionValue::ServerPort),
        ("current_setting", [n]) | ("current_setting", [n, _]) => {
            let missing_ok = match list.get(1) {
                None => false,
                Some(a) => literal_bool(a).ok_or_else(|| {
                    SqlError::unsupported("current_setting with a missing_ok that is not a literal")
                })?,
            };
            let name = literal_text(n).ok_or_else(|| {
                SqlError::unsupported("current_setting of a name that is not a literal")
            })?;
            Replacement::Session(SessionValue::Setting {
                name: name.to_lowercase(),
                missing_ok,
            })
        }
        ("current_schemas", [implicit]) => {
            match literal_bool(implicit).ok_or_else(|| {
                SqlError::unsupported("current_schemas of an argument that is not a literal")
            })? {
                true => Replacement::Constant(SCHEMAS_IMPLICIT),
                false => Replacement::Constant(SCHEMAS),
            }
        }
        _ => return Ok(None),
    }))
}

/// Whether a statement's text may call a session function: the others (most statements) skip
/// the walk of [`mark`].
pub(crate) fn may_have(original: &str) -> bool {
    const WORDS: [&[u8]; 4] = [b"current_", b"user", b"pg_backend_pid", b"inet_server_"];
    original.as_bytes().windows(4).enumerate().any(|(i, w)| {
        WORDS.iter().any(|word| {
            w.eq_ignore_ascii_case(&word[..4])
                && original
                    .as_bytes()
                    .get(i..i + word.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(word))
        })
    })
}

/// The placeholder text [`mark`] leaves for session value `i` until [`number`] numbers it.
fn marker(i: usize) -> String {
    format!("?session{i}")
}

/// Numbers the markers [`mark`] left: session value `i` becomes parameter `?{first + i}`.
pub(crate) fn number(stmt: &mut Statement, first: usize, count: usize) {
    if count == 0 {
        return;
    }
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::Value(v) = e {
            if let Value::Placeholder(p) = &mut v.value {
                if let Some(i) = p
                    .strip_prefix("?session")
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    *p = format!("?{}", first + i);
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// Replaces the session functions of `stmt` with markers ([`number`] makes them parameters)
/// and returns the values to bind there, in order.
pub(crate) fn mark(stmt: &mut Statement) -> Result<Vec<SessionValue>, SqlError> {
    let mut values = Vec::new();
    let mut error = None;
    let _ = visit_expressions_mut(stmt, |e| {
        let Expr::Function(f) = e else {
            return ControlFlow::<()>::Continue(());
        };
        let name = match f.name.0.as_slice() {
            [n] => n.to_string().to_lowercase(),
            [schema, n] if schema.to_string().eq_ignore_ascii_case("pg_catalog") => {
                n.to_string().to_lowercase()
            }
            _ => return ControlFlow::Continue(()),
        };
        match replacement(&name, &f.args) {
            Ok(Some(Replacement::Session(v))) => {
                *e = Expr::Value(Value::Placeholder(marker(values.len())).into());
                values.push(v);
            }
            Ok(Some(Replacement::Constant(text))) => {
                *e = crate::rewrite::string(text);
            }
            Ok(None) => {}
            Err(err) => {
                error = Some(err);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    match error {
        Some(e) => Err(e),
        None => Ok(values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(sql: &str) -> crate::Translated {
        crate::translate(sql).unwrap().pop().unwrap()
    }

    #[test]
    fn session_functions_become_parameters_after_the_literals() {
        let t = translated(
            "SELECT current_user, current_database(), current_setting('TimeZone') WHERE 1 = 1 \
             AND current_setting('application_name') = 'x'",
        );
        assert_eq!(
            t.session_values,
            vec![
                SessionValue::User,
                SessionValue::Database,
                SessionValue::Setting {
                    name: "timezone".into(),
                    missing_ok: false
                },
                SessionValue::Setting {
                    name: "application_name".into(),
                    missing_ok: false
                },
            ]
        );
        // `1 = 1` and `'x'` are literals bound first; the session values follow.
        assert_eq!(t.literals.len(), 3, "{:?}", t.literals);
        for n in 4..=7 {
            assert!(t.sqlite[0].contains(&format!("?{n}")), "{}", t.sqlite[0]);
        }
        assert!(!t.sqlite[0].contains("?session"), "{}", t.sqlite[0]);
        let names: Vec<_> = t.columns.iter().map(|c| c.name.clone()).collect();
        assert_eq!(
            names,
            vec![
                Some("current_user".into()),
                Some("current_database".into()),
                Some("current_setting".into())
            ]
        );
    }

    #[test]
    fn only_texts_that_may_call_one_are_walked() {
        assert!(may_have("SELECT CURRENT_USER"));
        assert!(may_have("select pg_backend_pid()"));
        assert!(may_have("SELECT Current_Setting('x')"));
        assert!(!may_have(
            "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 2"
        ));
        assert!(!may_have("SELECT 1"));
    }

    #[test]
    fn writes_carry_the_value_and_schemas_are_constants() {
        let t = translated("INSERT INTO t (who, pid) VALUES (session_user, pg_backend_pid())");
        assert_eq!(
            t.session_values,
            vec![SessionValue::User, SessionValue::BackendPid]
        );
        let t = translated("SELECT current_schemas(true), current_schemas(false)");
        assert!(t.session_values.is_empty());
        assert!(
            t.sqlite[0].contains("{pg_catalog,public}"),
            "{}",
            t.sqlite[0]
        );
        let e = crate::translate("SELECT current_setting(name) FROM t").unwrap_err();
        assert_eq!(e.sqlstate.as_str(), "0A000");
    }
}
