//! Roles: `CREATE ROLE`/`CREATE USER`, `ALTER ROLE`/`ALTER USER`, `DROP ROLE`/`DROP USER`, as
//! rows of a replicated internal table ([`ROLES_TABLE_SQL`]) that `pg_roles` shows and that a
//! node reads when a client logs in (SCRAM-SHA-256, `pgwire-server/src/auth.rs`). A password is
//! stored as its SCRAM verifier, which the session makes with a random salt before the
//! statement is replicated ([`crate::SessionValue::ScramVerifier`]): no password is in the log
//! or the state. Who may create, change and drop roles is checked where the statement is
//! applied (`_sqlkeeper_may`, `privileges.rs`).

use sqlparser::ast::{
    AlterRoleOperation, CreateRole, Expr, ObjectName, ObjectType, Password, RoleOption, Statement,
    Value,
};

use crate::classify::{CommandTag, StatementKind};
use crate::error::SqlError;
use crate::translate::Translated;
use crate::SessionValue;

/// The internal table of roles: one row per role made by `CREATE ROLE` (`postgres` and
/// PostgreSQL's predefined roles are built in and have none, unless `ALTER ROLE postgres`
/// gave `postgres` a password).
pub const ROLES_TABLE: &str = "_sqlkeeper_roles";

/// Its definition, run by the engine when it opens a state database.
pub const ROLES_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS _sqlkeeper_roles \
     (name TEXT PRIMARY KEY, oid INTEGER NOT NULL UNIQUE, superuser INTEGER NOT NULL, \
     login INTEGER NOT NULL, createrole INTEGER NOT NULL, createdb INTEGER NOT NULL, \
     password TEXT) STRICT";

/// The superuser every cluster has, and the role a password file configures.
pub const SUPERUSER: &str = "postgres";

/// PostgreSQL's limit on a role name, in bytes (`NAMEDATALEN - 1`).
const ROLE_NAME_BYTES_MAX: usize = 63;

/// Roles that exist without a row: they cannot be created, dropped or renamed.
const BUILT_IN_ROLES: &[&str] = &[SUPERUSER, "pg_database_owner"];

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn error(sqlstate: &str, message: String) -> SqlError {
    SqlError {
        sqlstate: crate::SqlState::new(sqlstate),
        message,
        position: None,
    }
}

/// `query` with `CREATE USER` and `ALTER USER` at the start of a statement written as
/// `CREATE ROLE` and `ALTER ROLE` (sqlparser reads `CREATE USER` in another dialect's form),
/// and the indexes of the statements that were `CREATE USER` (whose role may log in unless
/// it says `NOLOGIN`). `None` when there is none.
pub(crate) fn user_statements(query: &str) -> Option<(String, Vec<usize>)> {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Token, Tokenizer};
    // Most queries mention neither (a `users` table is common, `CREATE` and `ALTER` rare):
    // they are not tokenized twice, nor copied.
    let mentions = |word: &[u8]| {
        query
            .as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word))
    };
    if !(mentions(b"user") && (mentions(b"create") || mentions(b"alter"))) {
        return None;
    }
    let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, query)
        .tokenize()
        .ok()?;
    let (mut statement, mut start, mut users, mut changed) = (0, true, Vec::new(), false);
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::SemiColon => {
                statement += 1;
                start = true;
            }
            Token::Whitespace(_) => {}
            Token::Word(w) if start && matches!(w.keyword, Keyword::CREATE | Keyword::ALTER) => {
                let create = w.keyword == Keyword::CREATE;
                start = false;
                let next =
                    (i + 1..tokens.len()).find(|j| !matches!(tokens[*j], Token::Whitespace(_)));
                if let Some(j) = next {
                    if matches!(&tokens[j], Token::Word(u) if u.keyword == Keyword::USER) {
                        tokens[j] = Token::make_keyword("ROLE");
                        changed = true;
                        if create {
                            users.push(statement);
                        }
                    }
                }
            }
            _ => start = false,
        }
        i += 1;
    }
    changed.then(|| (tokens.iter().map(|t| t.to_string()).collect(), users))
}

/// The translation of a role statement; `None` for other statements.
pub(crate) fn translate(
    stmt: &Statement,
    original: &str,
    created_user: bool,
) -> Result<Option<Translated>, SqlError> {
    let (sqlite, password, tag) = match stmt {
        Statement::CreateRole(cr) => {
            let (sql, password) = create(cr, created_user)?;
            (sql, password, "CREATE ROLE")
        }
        Statement::AlterRole { name, operation } => {
            let (sql, password) = alter(&ident(name), operation)?;
            (sql, password, "ALTER ROLE")
        }
        Statement::Drop {
            object_type: ObjectType::Role | ObjectType::User,
            if_exists,
            names,
            ..
        } => (drop(names, *if_exists)?, None, "DROP ROLE"),
        _ => return Ok(None),
    };
    let mut t = Translated::without_sql(
        StatementKind::Write,
        CommandTag::Fixed(tag),
        original.to_string(),
    );
    t.sqlite = sqlite;
    t.session_values = password
        .map(SessionValue::ScramVerifier)
        .into_iter()
        .collect();
    Ok(Some(t))
}

/// A role's name, checked as PostgreSQL checks a new one.
fn new_name(name: &str) -> Result<(), SqlError> {
    if name.starts_with("pg_") {
        return Err(error("42939", format!("role name \"{name}\" is reserved")));
    }
    if name.len() > ROLE_NAME_BYTES_MAX {
        return Err(error(
            "42622",
            format!("role name \"{name}\" is longer than {ROLE_NAME_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

/// An identifier naming a role, folded as [`single_name`] folds.
fn ident(i: &sqlparser::ast::Ident) -> String {
    single_name(&ObjectName::from(vec![i.clone()])).unwrap_or_default()
}

/// A role's name: folded to lower case unless quoted, as PostgreSQL folds identifiers (and as
/// `GRANT … TO name` names it).
fn single_name(n: &ObjectName) -> Result<String, SqlError> {
    match n.0.as_slice() {
        [_] => Ok(crate::comments::fold(n).concat()),
        _ => Err(error("42601", format!("syntax error at or near \"{n}\""))),
    }
}

/// A `PASSWORD` clause: `Some(text)` to store (as a verifier), `None` for `PASSWORD NULL`.
fn password_text(p: &Password) -> Result<Option<String>, SqlError> {
    match p {
        Password::NullPassword => Ok(None),
        Password::Password(Expr::Value(v)) => match &v.value {
            Value::SingleQuotedString(s)
            | Value::DollarQuotedString(sqlparser::ast::DollarQuotedString { value: s, .. }) => {
                Ok(Some(s.clone()))
            }
            Value::Null => Ok(None),
            other => Err(error(
                "42601",
                format!("syntax error at or near \"{other}\""),
            )),
        },
        Password::Password(other) => Err(error(
            "42601",
            format!("syntax error at or near \"{other}\""),
        )),
    }
}

/// Options a role statement may not have here (membership, limits, expiry): 0A000 rather
/// than ignored.
fn unsupported(what: &str) -> SqlError {
    SqlError::unsupported(format!("{what} of roles"))
}

fn flag(b: Option<bool>) -> Option<&'static str> {
    b.map(|b| if b { "1" } else { "0" })
}

/// `?1` where the password's verifier is bound, NULL where there is none.
fn password_sql(p: &Option<String>) -> &'static str {
    if p.is_some() {
        "?1"
    } else {
        "NULL"
    }
}

fn create(cr: &CreateRole, created_user: bool) -> Result<(Vec<String>, Option<String>), SqlError> {
    if cr.connection_limit.is_some() || cr.valid_until.is_some() {
        return Err(unsupported("CONNECTION LIMIT and VALID UNTIL"));
    }
    if !(cr.in_role.is_empty()
        && cr.in_group.is_empty()
        && cr.role.is_empty()
        && cr.user.is_empty()
        && cr.admin.is_empty())
    {
        return Err(unsupported("membership (IN ROLE, ROLE, ADMIN)"));
    }
    let [name] = cr.names.as_slice() else {
        return Err(error("42601", "CREATE ROLE creates one role".to_string()));
    };
    let name = single_name(name)?;
    new_name(&name)?;
    let password = cr
        .password
        .as_ref()
        .map(password_text)
        .transpose()?
        .flatten();
    let n = quote(&name);
    let superuser = flag(cr.superuser).unwrap_or("0");
    // CREATE USER is CREATE ROLE ... LOGIN.
    let login = flag(cr.login).unwrap_or(if created_user { "1" } else { "0" });
    let createrole = flag(cr.create_role).unwrap_or("0");
    let createdb = flag(cr.create_db).unwrap_or("0");
    let exists = if BUILT_IN_ROLES.contains(&name.as_str()) {
        "1".to_string()
    } else {
        format!("EXISTS (SELECT 1 FROM {ROLES_TABLE} WHERE name = {n})")
    };
    let on_exists = if cr.if_not_exists {
        "0".to_string()
    } else {
        format!(
            "pg_raise('42710', {})",
            quote(&format!("role \"{name}\" already exists"))
        )
    };
    // A superuser creates any role, a role with CREATEROLE any but a superuser.
    let allowed = crate::privileges::require(
        crate::privileges::may(
            if superuser == "1" {
                "superuser"
            } else {
                "createrole"
            },
            "",
        ),
        "permission denied to create role",
    );
    let sql = format!(
        "INSERT INTO {ROLES_TABLE} (name, oid, superuser, login, createrole, createdb, password) \
         SELECT {n}, pg_relation_oid({}), {superuser}, {login}, {createrole}, {createdb}, {} \
         WHERE {allowed} AND CASE WHEN {exists} THEN {on_exists} ELSE 1 END",
        quote(&format!("role {name}")),
        password_sql(&password),
    );
    Ok((vec![sql], password))
}

/// `name = '{role}'` after the role was found, 42704 if it does not exist. The subquery is
/// evaluated once, before the first row is looked at, so the error comes whatever the table
/// holds.
fn existing(name: &str) -> String {
    let n = quote(name);
    format!(
        "name = (SELECT CASE WHEN EXISTS (SELECT 1 FROM {ROLES_TABLE} WHERE name = {n}) \
         THEN {n} ELSE pg_raise('42704', {}) END)",
        quote(&format!("role \"{name}\" does not exist"))
    )
}

/// Whether the entry's role may change role `name` (a row of the roles table is in scope):
/// a superuser may change any role; a role with CREATEROLE any but a superuser (`what` is
/// `createrole`); a role its own password (`what` is `self`).
fn may_change(name: &str, what: &str, verb: &str) -> String {
    use crate::privileges::may;
    crate::privileges::require(
        format!(
            "{} AND (superuser = 0 OR {})",
            may(what, name),
            may("superuser", "")
        ),
        &format!("permission denied to {verb} role \"{name}\""),
    )
}

fn alter(
    name: &str,
    operation: &AlterRoleOperation,
) -> Result<(Vec<String>, Option<String>), SqlError> {
    let options = match operation {
        AlterRoleOperation::WithOptions { options } => options,
        AlterRoleOperation::RenameRole { role_name } => {
            if BUILT_IN_ROLES.contains(&name) {
                return Err(error("0A000", format!("cannot rename role \"{name}\"")));
            }
            let new_role = ident(role_name);
            new_name(&new_role)?;
            let new = quote(&new_role);
            let sql = format!(
                "UPDATE {ROLES_TABLE} SET name = CASE WHEN EXISTS (SELECT 1 FROM {ROLES_TABLE} \
                 WHERE name = {new}) THEN pg_raise('42710', {}) ELSE {new} END WHERE {} AND {}",
                quote(&format!("role \"{new_role}\" already exists")),
                existing(name),
                may_change(name, "createrole", "alter"),
            );
            let mut sql = vec![sql];
            sql.extend(crate::privileges::rename_role_sql(name, &new_role));
            return Ok((sql, None));
        }
        _ => return Err(unsupported("ALTER ROLE SET and RESET")),
    };
    let mut sets = Vec::new();
    let mut password = None;
    for o in options {
        let (column, value) = match o {
            RoleOption::SuperUser(b) => ("superuser", flag(Some(*b))),
            RoleOption::Login(b) => ("login", flag(Some(*b))),
            RoleOption::CreateRole(b) => ("createrole", flag(Some(*b))),
            RoleOption::CreateDB(b) => ("createdb", flag(Some(*b))),
            RoleOption::Password(p) => {
                password = password_text(p)?;
                ("password", Some(password_sql(&password)))
            }
            // Accepted as PostgreSQL's own defaults say, and nothing to keep.
            RoleOption::Inherit(true)
            | RoleOption::Replication(false)
            | RoleOption::BypassRLS(false) => continue,
            _ => return Err(unsupported(&o.to_string())),
        };
        sets.push(format!("{column} = {}", value.unwrap_or("0")));
    }
    if sets.is_empty() {
        return Ok((Vec::new(), None));
    }
    // A role may change its own password; SUPERUSER only a superuser gives or takes.
    let what = if options
        .iter()
        .any(|o| matches!(o, RoleOption::SuperUser(_)))
    {
        "superuser"
    } else if options.iter().all(|o| matches!(o, RoleOption::Password(_))) {
        "self"
    } else {
        "createrole"
    };
    let mut sql = Vec::new();
    if name == SUPERUSER {
        // The superuser has a row once something about it changes; what it does not say is
        // the built-in role's (a superuser that may log in).
        // (Every statement of the translation is bound the same parameters: the password's
        // verifier, if there is one, goes in here too.)
        sql.push(format!(
            "INSERT OR IGNORE INTO {ROLES_TABLE} (name, oid, superuser, login, createrole, createdb, password) \
             SELECT {}, 10, 1, 1, 1, 1, {} WHERE {}",
            quote(SUPERUSER),
            password_sql(&password),
            crate::privileges::require(
                crate::privileges::may(what, SUPERUSER),
                &format!("permission denied to alter role \"{SUPERUSER}\"")
            )
        ));
    }
    sql.push(format!(
        "UPDATE {ROLES_TABLE} SET {} WHERE {} AND {}",
        sets.join(", "),
        existing(name),
        may_change(name, what, "alter")
    ));
    Ok((sql, password))
}

fn drop(names: &[ObjectName], if_exists: bool) -> Result<Vec<String>, SqlError> {
    names
        .iter()
        .map(|n| {
            let name = single_name(n)?;
            if BUILT_IN_ROLES.contains(&name.as_str()) || name.starts_with("pg_") {
                return Err(error(
                    "2BP01",
                    format!(
                        "cannot drop role {name} because it is required by the database system"
                    ),
                ));
            }
            if name == crate::privileges::PUBLIC {
                return Err(error("42939", format!("role name \"{name}\" is reserved")));
            }
            let mut sql = vec![if if_exists {
                format!(
                    "DELETE FROM {ROLES_TABLE} WHERE name = {} AND {}",
                    quote(&name),
                    may_change(&name, "createrole", "drop")
                )
            } else {
                format!(
                    "DELETE FROM {ROLES_TABLE} WHERE {} AND {}",
                    existing(&name),
                    may_change(&name, "createrole", "drop")
                )
            }];
            sql.extend(crate::privileges::drop_role_sql(&name));
            Ok(sql)
        })
        .collect::<Result<Vec<Vec<String>>, SqlError>>()
        .map(|v| v.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_and_alter_user_are_read_as_role_statements() {
        assert_eq!(
            user_statements(
                "SELECT user; CREATE USER a; create\n  user b LOGIN; ALTER USER a PASSWORD 'x'"
            ),
            Some((
                "SELECT user; CREATE ROLE a; create\n  ROLE b LOGIN; ALTER ROLE a PASSWORD 'x'"
                    .into(),
                vec![1, 2]
            ))
        );
        for unchanged in [
            "SELECT 1",
            "SELECT user FROM t",
            "CREATE TABLE user_settings (id int)",
            "INSERT INTO t VALUES ('CREATE USER x')",
            "SELECT 1 /* ; CREATE USER x */",
        ] {
            assert_eq!(user_statements(unchanged), None, "{unchanged}");
        }
        let t = crate::translate("CREATE USER app; CREATE ROLE grp").unwrap();
        assert!(
            t[0].sqlite[0].contains("0, 1, 0, 0, NULL"),
            "{:?}",
            t[0].sqlite
        );
        assert!(
            t[1].sqlite[0].contains("0, 0, 0, 0, NULL"),
            "{:?}",
            t[1].sqlite
        );
        assert_eq!(
            crate::translate("CREATE ROLE a PASSWORD 'p'").unwrap()[0].session_values,
            vec![SessionValue::ScramVerifier("p".into())]
        );
        for (sql, sqlstate) in [
            ("CREATE ROLE pg_x", "42939"),
            ("CREATE ROLE a IN ROLE b", "0A000"),
            ("CREATE ROLE a CONNECTION LIMIT 3", "0A000"),
            ("DROP ROLE postgres", "2BP01"),
            ("ALTER ROLE postgres RENAME TO boss", "0A000"),
        ] {
            let e = crate::translate(sql).unwrap_err();
            assert_eq!(e.sqlstate, sqlstate, "{sql}: {e:?}");
        }
    }
}
