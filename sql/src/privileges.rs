//! Privileges, as replicated rows: `GRANT`/`REVOKE` of table privileges (to roles and to
//! `PUBLIC`, on tables or on `ALL TABLES IN SCHEMA public`), `CREATE` on the schema `public`,
//! role membership (`GRANT pg_read_all_data TO alice`), and table owners (`CREATE TABLE` by a
//! role that is not a superuser, `ALTER TABLE ... OWNER TO`).
//!
//! The statements here only change the internal tables. What a role may do is decided where
//! statements run, by the engine (`engine/src/privileges.rs`): from these tables and the role
//! that travels in each log entry, so every replica decides the same. The engine gives the
//! translated SQL two functions: [`ROLE_FUNCTION`] (the entry's role, NULL for a superuser) and
//! [`MAY_FUNCTION`] (`_sqlkeeper_may(what, name)`: whether that role may).

use sqlparser::ast::{
    Action, AlterTableOperation, GrantObjects, Grantee, GranteeName, GranteesType, Ident,
    ObjectName, Owner, Privileges, Statement,
};

use crate::classify::{CommandTag, StatementKind};
use crate::error::SqlError;
use crate::roles::{ROLES_TABLE, SUPERUSER};
use crate::translate::Translated;

/// Granted privileges: one row per object, grantee and privilege. `kind` is `table` (a table
/// or a view, `name` its name) or `schema` (`public`); `grantee` is a role or `public`.
pub const PRIVILEGES_TABLE: &str = "_sqlkeeper_privileges";
/// Role membership: `member` has the privileges of `role`.
pub const MEMBERS_TABLE: &str = "_sqlkeeper_members";
/// Owners of the tables and views a role that is not a superuser created (or was given); a
/// table without a row is owned by the superuser `postgres`.
pub const OWNERS_TABLE: &str = "_sqlkeeper_owners";

/// Their definitions, run by the engine when it opens a state database.
pub const PRIVILEGES_TABLES_SQL: &str = "CREATE TABLE IF NOT EXISTS _sqlkeeper_privileges \
     (kind TEXT NOT NULL, name TEXT NOT NULL COLLATE NOCASE, grantee TEXT NOT NULL, \
     privilege TEXT NOT NULL, PRIMARY KEY (kind, name, grantee, privilege)) STRICT; \
     CREATE INDEX IF NOT EXISTS _sqlkeeper_privileges_by_grantee ON _sqlkeeper_privileges (grantee); \
     CREATE TABLE IF NOT EXISTS _sqlkeeper_members (role TEXT NOT NULL, member TEXT NOT NULL, \
     PRIMARY KEY (role, member)) STRICT; \
     CREATE TABLE IF NOT EXISTS _sqlkeeper_owners (name TEXT PRIMARY KEY COLLATE NOCASE, \
     owner TEXT NOT NULL) STRICT";

/// `_sqlkeeper_role()`: the role of the statement's log entry, NULL for a superuser.
pub const ROLE_FUNCTION: &str = "_sqlkeeper_role";
/// `_sqlkeeper_may(what, name)`: whether the entry's role may: `'own'` the table `name`,
/// `'create'` in the schema `public`, `'createrole'`, change the role `name` (`'self'`: it is
/// that role, or has CREATEROLE), or act as a `'superuser'`.
pub const MAY_FUNCTION: &str = "_sqlkeeper_may";

/// PostgreSQL's predefined role with SELECT on every table.
pub const READ_ALL_DATA: &str = "pg_read_all_data";
/// PostgreSQL's predefined role with INSERT, UPDATE and DELETE on every table.
pub const WRITE_ALL_DATA: &str = "pg_write_all_data";
/// The grantee that stands for every role.
pub const PUBLIC: &str = "public";

/// Roles that exist without a row in the roles table.
const PREDEFINED: &[&str] = &[
    SUPERUSER,
    READ_ALL_DATA,
    WRITE_ALL_DATA,
    "pg_database_owner",
];

/// Table privileges PostgreSQL has, as they are stored (`ALL` is all of them).
const TABLE_PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn error(sqlstate: &str, message: impl Into<String>) -> SqlError {
    SqlError {
        sqlstate: crate::SqlState::new(sqlstate),
        message: message.into(),
        position: None,
    }
}

/// `CASE WHEN NOT (cond) THEN pg_raise(...) ... ELSE 1 END`: 1, or the first failed check's
/// error.
pub(crate) fn guard(checks: &[(String, &str, String)]) -> String {
    let mut sql = "CASE".to_string();
    for (cond, sqlstate, message) in checks {
        sql.push_str(&format!(
            " WHEN NOT ({cond}) THEN pg_raise('{sqlstate}', {})",
            quote(message)
        ));
    }
    sql.push_str(" ELSE 1 END");
    sql
}

/// `CASE WHEN NOT (cond) THEN <42501 with message> ELSE 1 END`.
pub(crate) fn require(cond: String, message: &str) -> String {
    guard(&[(cond, "42501", message.to_string())])
}

/// `_sqlkeeper_may('what', 'name')`.
pub(crate) fn may(what: &str, name: &str) -> String {
    format!("{MAY_FUNCTION}('{what}', {})", quote(name))
}

fn table_exists(table: &str) -> (String, &'static str, String) {
    (
        format!(
            "EXISTS (SELECT 1 FROM sqlite_schema WHERE type IN ('table', 'view') \
             AND name = {} COLLATE NOCASE)",
            quote(table)
        ),
        "42P01",
        format!("relation \"{table}\" does not exist"),
    )
}

fn owns(table: &str) -> (String, &'static str, String) {
    (
        may("own", table),
        "42501",
        format!("must be owner of table {table}"),
    )
}

fn role_exists(role: &str) -> (String, &'static str, String) {
    let cond = if PREDEFINED.contains(&role) || role == PUBLIC {
        "1".to_string()
    } else {
        format!(
            "EXISTS (SELECT 1 FROM {ROLES_TABLE} WHERE name = {})",
            quote(role)
        )
    };
    (cond, "42704", format!("role \"{role}\" does not exist"))
}

/// The name of a table as the translator folded it (the last part; the only schema is
/// `public`).
fn table_name(name: &ObjectName) -> Result<String, SqlError> {
    let parts = crate::comments::fold(name);
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [schema, t] if schema == "public" => Ok(t.clone()),
        [schema, _] => Err(error(
            "3F000",
            format!("schema \"{schema}\" does not exist"),
        )),
        _ => Err(error("42601", format!("improper relation name: {name}"))),
    }
}

fn ident_name(i: &Ident) -> String {
    crate::comments::fold(&ObjectName::from(vec![i.clone()])).concat()
}

fn grantee_names(grantees: &[Grantee]) -> Result<Vec<String>, SqlError> {
    grantees
        .iter()
        .map(|g| match (&g.grantee_type, &g.name) {
            (GranteesType::Public, _) => Ok(PUBLIC.to_string()),
            (
                GranteesType::None | GranteesType::Role | GranteesType::User | GranteesType::Group,
                Some(GranteeName::ObjectName(n)),
            ) => {
                let name = crate::comments::fold(n).concat();
                Ok(if name == "public" {
                    PUBLIC.to_string()
                } else {
                    name
                })
            }
            _ => Err(SqlError::unsupported(format!("grantee {g}"))),
        })
        .collect()
}

/// The table privileges named, as stored.
fn table_privileges(p: &Privileges) -> Result<Vec<&'static str>, SqlError> {
    let actions = match p {
        Privileges::All { .. } => return Ok(TABLE_PRIVILEGES.to_vec()),
        Privileges::Actions(a) => a,
    };
    actions
        .iter()
        .map(|a| match a {
            Action::Select { columns: None } => Ok("SELECT"),
            Action::Insert { columns: None } => Ok("INSERT"),
            Action::Update { columns: None } => Ok("UPDATE"),
            Action::Delete => Ok("DELETE"),
            Action::Truncate => Ok("TRUNCATE"),
            Action::References { columns: None } => Ok("REFERENCES"),
            Action::Trigger => Ok("TRIGGER"),
            Action::Select { .. } | Action::Insert { .. } | Action::Update { .. } => {
                Err(SqlError::unsupported("column privileges"))
            }
            other => Err(error(
                "0LP01",
                format!("invalid privilege type {other} for relation"),
            )),
        })
        .collect()
}

/// The schema privileges named (`CREATE`, `USAGE`).
fn schema_privileges(p: &Privileges) -> Result<Vec<&'static str>, SqlError> {
    let actions = match p {
        Privileges::All { .. } => return Ok(vec!["CREATE", "USAGE"]),
        Privileges::Actions(a) => a,
    };
    actions
        .iter()
        .map(|a| match a {
            Action::Create { obj_type: None } => Ok("CREATE"),
            Action::Usage => Ok("USAGE"),
            other => Err(error(
                "0LP01",
                format!("invalid privilege type {other} for schema"),
            )),
        })
        .collect()
}

fn only_public(schemas: &[ObjectName]) -> Result<(), SqlError> {
    for s in schemas {
        let name = crate::comments::fold(s).concat();
        if name != "public" {
            return Err(error("3F000", format!("schema \"{name}\" does not exist")));
        }
    }
    Ok(())
}

/// `(VALUES ('a'), ('b'))`.
fn values(items: &[impl AsRef<str>]) -> String {
    let rows: Vec<String> = items
        .iter()
        .map(|i| format!("({})", quote(i.as_ref())))
        .collect();
    format!("(VALUES {})", rows.join(", "))
}

/// A `GRANT` or `REVOKE` of privileges on tables or the schema, or `ALTER TABLE ... OWNER TO`;
/// `None` for other statements.
pub(crate) fn translate(stmt: &Statement, original: &str) -> Result<Option<Translated>, SqlError> {
    let (sqlite, tag) = match stmt {
        Statement::Grant(g) if g.objects.is_none() => match granted_roles(&g.privileges) {
            Some(roles) => (membership_sql(&roles, &g.grantees, true)?, "GRANT ROLE"),
            None => return Err(error("42601", "syntax error: GRANT needs ON")),
        },
        Statement::Revoke(r) if r.objects.is_none() => match granted_roles(&r.privileges) {
            Some(roles) => (membership_sql(&roles, &r.grantees, false)?, "REVOKE ROLE"),
            None => return Err(error("42601", "syntax error: REVOKE needs ON")),
        },
        Statement::Grant(g) => {
            if g.with_grant_option {
                return Err(SqlError::unsupported("WITH GRANT OPTION"));
            }
            (
                grant_sql(&g.privileges, g.objects.as_ref(), &g.grantees, true)?,
                "GRANT",
            )
        }
        Statement::Revoke(r) => (
            grant_sql(&r.privileges, r.objects.as_ref(), &r.grantees, false)?,
            "REVOKE",
        ),
        Statement::AlterTable(at) => {
            let [AlterTableOperation::OwnerTo { new_owner }] = at.operations.as_slice() else {
                if at
                    .operations
                    .iter()
                    .any(|o| matches!(o, AlterTableOperation::OwnerTo { .. }))
                {
                    return Err(SqlError::unsupported(
                        "OWNER TO with other changes in one ALTER TABLE",
                    ));
                }
                return Ok(None);
            };
            (owner_to(&table_name(&at.name)?, new_owner)?, "ALTER TABLE")
        }
        _ => return Ok(None),
    };
    Ok(Some(write(sqlite, tag, original)))
}

fn write(sqlite: Vec<String>, tag: &'static str, original: &str) -> Translated {
    let mut t = Translated::without_sql(
        StatementKind::Write,
        CommandTag::Fixed(tag),
        original.to_string(),
    );
    t.sqlite = sqlite;
    t
}

fn grant_sql(
    privileges: &Privileges,
    objects: Option<&GrantObjects>,
    grantees: &[Grantee],
    grant: bool,
) -> Result<Vec<String>, SqlError> {
    let grantees = grantee_names(grantees)?;
    let grantee_checks: Vec<_> = grantees.iter().map(|g| role_exists(g)).collect();
    let Some(objects) = objects else {
        return Err(error("42601", "syntax error: GRANT and REVOKE need ON"));
    };
    let mut out = Vec::new();
    match objects {
        GrantObjects::Tables(names) => {
            let privileges = table_privileges(privileges)?;
            for n in names {
                let table = table_name(n)?;
                let mut checks = vec![table_exists(&table), owns(&table)];
                checks.extend(grantee_checks.iter().cloned());
                out.push(change_sql(
                    "table",
                    &quote(&table),
                    &privileges,
                    &grantees,
                    &guard(&checks),
                    grant,
                ));
            }
        }
        GrantObjects::AllTablesInSchema { schemas } => {
            only_public(schemas)?;
            let privileges = table_privileges(privileges)?;
            // The tables of the schema now, that the role owns (PostgreSQL refuses the
            // statement if it does not own one; here it changes those it owns).
            out.push(format!(
                "{} FROM sqlite_schema AS s, {} AS g, {} AS p \
                 WHERE s.type IN ('table', 'view') AND s.name NOT LIKE '\\_sqlkeeper\\_%' ESCAPE '\\' \
                 AND s.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND {MAY_FUNCTION}('own', s.name) \
                 AND {}",
                if grant {
                    format!(
                        "INSERT OR IGNORE INTO {PRIVILEGES_TABLE} (kind, name, grantee, privilege) \
                         SELECT 'table', s.name, g.column1, p.column1"
                    )
                } else {
                    format!(
                        "DELETE FROM {PRIVILEGES_TABLE} WHERE (kind, name, grantee, privilege) IN \
                         (SELECT 'table', s.name, g.column1, p.column1"
                    )
                },
                values(&grantees),
                values(&privileges),
                guard(&grantee_checks),
            ) + if grant { "" } else { ")" });
        }
        GrantObjects::Schemas(schemas) => {
            only_public(schemas)?;
            let privileges = schema_privileges(privileges)?;
            let mut checks = vec![(
                may("superuser", ""),
                "42501",
                "permission denied for schema public".to_string(),
            )];
            checks.extend(grantee_checks.iter().cloned());
            out.push(change_sql(
                "schema",
                "'public'",
                &privileges,
                &grantees,
                &guard(&checks),
                grant,
            ));
        }
        // Every role may connect, use sequences and call functions here: accepted, and
        // nothing to keep (the grantees must still exist).
        GrantObjects::Databases(_)
        | GrantObjects::Sequences(_)
        | GrantObjects::AllSequencesInSchema { .. }
        | GrantObjects::AllFunctionsInSchema { .. }
        | GrantObjects::Function { .. } => {
            if !grantee_checks.is_empty() {
                out.push(format!(
                    "DELETE FROM {PRIVILEGES_TABLE} WHERE kind = 'none' AND name = \
                     (SELECT CASE WHEN {} THEN '' END)",
                    guard(&grantee_checks)
                ));
            }
        }
        other => return Err(SqlError::unsupported(format!("GRANT ON {other}"))),
    }
    Ok(out)
}

/// Adds (`grant`) or removes the rows of `privileges` on one object for `grantees`, after
/// `guard` (evaluated once, before any row is looked at: its errors come whatever the table
/// holds).
fn change_sql(
    kind: &str,
    name_sql: &str,
    privileges: &[&str],
    grantees: &[String],
    guard: &str,
    grant: bool,
) -> String {
    if grant {
        format!(
            "INSERT OR IGNORE INTO {PRIVILEGES_TABLE} (kind, name, grantee, privilege) \
             SELECT '{kind}', {name_sql}, g.column1, p.column1 FROM {} AS g, {} AS p WHERE {guard}",
            values(grantees),
            values(privileges),
        )
    } else {
        format!(
            "DELETE FROM {PRIVILEGES_TABLE} WHERE kind = '{kind}' \
             AND name = (SELECT CASE WHEN {guard} THEN {name_sql} END) \
             AND grantee IN {} AND privilege IN {}",
            values(grantees),
            values(privileges),
        )
    }
}

fn owner_to(table: &str, new_owner: &Owner) -> Result<Vec<String>, SqlError> {
    let owner = match new_owner {
        Owner::Ident(i) => ident_name(i),
        Owner::CurrentRole | Owner::CurrentUser | Owner::SessionUser => {
            return Err(SqlError::unsupported(format!("OWNER TO {new_owner}")))
        }
    };
    if owner == PUBLIC || owner.starts_with("pg_") && owner != SUPERUSER {
        return Err(error("42704", format!("role \"{owner}\" does not exist")));
    }
    let checks = [
        table_exists(table),
        owns(table),
        role_exists(&owner),
        (
            format!("{} OR {}", may("member", &owner), may("superuser", "")),
            "42501",
            format!("must be able to SET ROLE \"{owner}\""),
        ),
    ];
    Ok(vec![format!(
        "INSERT OR REPLACE INTO {OWNERS_TABLE} (name, owner) SELECT {}, {} WHERE {}",
        quote(table),
        quote(&owner),
        guard(&checks)
    )])
}

/// Before a `CREATE TABLE` or `CREATE VIEW` of `table`: the role of the entry owns it, unless
/// it is a superuser (then `postgres` does, and no row says so) or the table exists already
/// (`IF NOT EXISTS`, which leaves it as it is).
pub(crate) fn owner_sql(table: &str) -> String {
    format!(
        "INSERT OR REPLACE INTO {OWNERS_TABLE} (name, owner) SELECT {t}, {ROLE_FUNCTION}() \
         WHERE {ROLE_FUNCTION}() IS NOT NULL AND NOT EXISTS (SELECT 1 FROM sqlite_schema \
         WHERE name = {t} COLLATE NOCASE)",
        t = quote(table)
    )
}

/// What a `DROP` or an `ALTER TABLE ... RENAME TO` does to owners and grants: a renamed table
/// keeps them, a dropped one loses them (a new table of its name starts with none).
pub(crate) fn maintenance(stmt: &Statement) -> Vec<String> {
    match stmt {
        Statement::AlterTable(at) => {
            let Ok(table) = table_name(&at.name) else {
                return Vec::new();
            };
            at.operations
                .iter()
                .filter_map(|op| match op {
                    AlterTableOperation::RenameTable { table_name } => {
                        let new = match table_name {
                            sqlparser::ast::RenameTableNameKind::As(n)
                            | sqlparser::ast::RenameTableNameKind::To(n) => {
                                crate::comments::fold(n).pop().unwrap_or_default()
                            }
                        };
                        Some([
                            format!(
                                "UPDATE {OWNERS_TABLE} SET name = {} WHERE name = {}",
                                quote(&new),
                                quote(&table)
                            ),
                            format!(
                                "UPDATE {PRIVILEGES_TABLE} SET name = {} WHERE kind = 'table' \
                                 AND name = {}",
                                quote(&new),
                                quote(&table)
                            ),
                        ])
                    }
                    _ => None,
                })
                .flatten()
                .collect()
        }
        Statement::Drop { .. } => vec![
            format!(
                "DELETE FROM {OWNERS_TABLE} WHERE NOT EXISTS (SELECT 1 FROM sqlite_schema AS s \
                 WHERE s.name = {OWNERS_TABLE}.name COLLATE NOCASE)"
            ),
            format!(
                "DELETE FROM {PRIVILEGES_TABLE} WHERE kind = 'table' AND NOT EXISTS \
                 (SELECT 1 FROM sqlite_schema AS s WHERE s.name = {PRIVILEGES_TABLE}.name \
                 COLLATE NOCASE)"
            ),
        ],
        _ => Vec::new(),
    }
}

/// `query` with each `GRANT role [, ...] TO ...` and `REVOKE role [, ...] FROM ...` (membership
/// in a role, PostgreSQL's predefined `pg_read_all_data` and `pg_write_all_data` among them)
/// written `GRANT ROLE role, ROLE ... TO ...`, the form sqlparser reads; `None` when it has
/// none. A `GRANT` or `REVOKE` with `ON` grants privileges, and is left as it is.
pub(crate) fn role_grant_statements(query: &str) -> Option<String> {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::keywords::Keyword;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let mentions = |word: &[u8]| {
        query
            .as_bytes()
            .windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word))
    };
    if !(mentions(b"grant") || mentions(b"revoke")) {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, query)
        .tokenize()
        .ok()?;
    let significant =
        |from: usize| (from..tokens.len()).filter(|j| !matches!(tokens[*j], Token::Whitespace(_)));
    // Token positions before which `ROLE ` goes.
    let mut roles = Vec::new();
    let mut start = true;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::SemiColon => start = true,
            Token::Whitespace(_) => {}
            Token::Word(w) if start && matches!(w.keyword, Keyword::GRANT | Keyword::REVOKE) => {
                start = false;
                let until = if w.keyword == Keyword::GRANT {
                    Keyword::TO
                } else {
                    Keyword::FROM
                };
                let mut names = Vec::new();
                let mut expect_name = true;
                for j in significant(i + 1) {
                    match &tokens[j] {
                        Token::Word(w) if !expect_name && w.keyword == until => break,
                        Token::Word(w)
                            if expect_name
                                && (w.quote_style.is_some()
                                    || matches!(w.keyword, Keyword::NoKeyword)) =>
                        {
                            names.push(j);
                            expect_name = false;
                        }
                        Token::Comma if !expect_name => expect_name = true,
                        // A privilege, `ON`, `ROLE` already: not a role grant.
                        _ => {
                            names.clear();
                            break;
                        }
                    }
                }
                roles.extend(names);
            }
            _ => start = false,
        }
    }
    if roles.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(query.len() + 5 * roles.len());
    for (i, t) in tokens.iter().enumerate() {
        if roles.contains(&i) {
            out.push_str("ROLE ");
        }
        out.push_str(&t.to_string());
    }
    Some(out)
}

/// `GRANT ROLE a TO b` and `REVOKE ROLE a FROM b` ([`role_grant_statements`]).
fn membership_sql(
    roles: &[ObjectName],
    grantees: &[Grantee],
    grant: bool,
) -> Result<Vec<String>, SqlError> {
    let roles: Vec<String> = roles
        .iter()
        .map(|r| crate::comments::fold(r).concat())
        .collect();
    let members = grantee_names(grantees)?;
    if members.iter().any(|m| m == PUBLIC) {
        return Err(error(
            "0LP01",
            "role \"public\" cannot have explicit members",
        ));
    }
    let mut checks: Vec<_> = roles.iter().map(|r| role_exists(r)).collect();
    checks.extend(members.iter().map(|m| role_exists(m)));
    // CREATEROLE grants any role but a superuser one.
    checks.push((
        format!(
            "{} AND (NOT EXISTS (SELECT 1 FROM {ROLES_TABLE} WHERE superuser = 1 AND name IN \
             (SELECT column1 FROM {})) OR {})",
            may("createrole", ""),
            values(&roles),
            may("superuser", "")
        ),
        "42501",
        format!(
            "permission denied to {} role \"{}\"",
            if grant { "grant" } else { "revoke" },
            roles.first().map_or("", String::as_str)
        ),
    ));
    let guard = guard(&checks);
    Ok(vec![if grant {
        format!(
            "INSERT OR IGNORE INTO {MEMBERS_TABLE} (role, member) SELECT r.column1, m.column1 \
             FROM {} AS r, {} AS m WHERE {guard}",
            values(&roles),
            values(&members)
        )
    } else {
        format!(
            "DELETE FROM {MEMBERS_TABLE} WHERE role IN (SELECT column1 FROM {} WHERE {guard}) \
             AND member IN {}",
            values(&roles),
            values(&members)
        )
    }])
}

/// The roles of `GRANT ROLE a, ROLE b`, if that is what `privileges` are.
fn granted_roles(privileges: &Privileges) -> Option<Vec<ObjectName>> {
    match privileges {
        Privileges::Actions(actions) if !actions.is_empty() => actions
            .iter()
            .map(|a| match a {
                Action::Role { role } => Some(role.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// What `DROP ROLE name` also removes: the role's grants and memberships. A role that still
/// owns tables cannot be dropped (2BP01), as in PostgreSQL. Each statement checks the caller
/// may drop roles itself: with `IF EXISTS` and no such role, the role's own statement checks
/// nothing.
pub(crate) fn drop_role_sql(name: &str) -> Vec<String> {
    let n = quote(name);
    let allowed = require(
        may("createrole", ""),
        &format!("permission denied to drop role \"{name}\""),
    );
    vec![
        format!(
            "DELETE FROM {OWNERS_TABLE} WHERE owner = {n} AND {allowed} AND pg_raise('2BP01', {})",
            quote(&format!(
                "role \"{name}\" cannot be dropped because some objects depend on it"
            ))
        ),
        format!("DELETE FROM {PRIVILEGES_TABLE} WHERE grantee = {n} AND {allowed}"),
        format!("DELETE FROM {MEMBERS_TABLE} WHERE (role = {n} OR member = {n}) AND {allowed}"),
    ]
}

/// What `ALTER ROLE old RENAME TO new` also changes: the grants, memberships and tables of the
/// role follow it (after the role's own statement, which checks the caller may rename it).
pub(crate) fn rename_role_sql(old: &str, new: &str) -> Vec<String> {
    let (o, n) = (quote(old), quote(new));
    vec![
        format!("UPDATE {PRIVILEGES_TABLE} SET grantee = {n} WHERE grantee = {o}"),
        format!("UPDATE {MEMBERS_TABLE} SET role = {n} WHERE role = {o}"),
        format!("UPDATE {MEMBERS_TABLE} SET member = {n} WHERE member = {o}"),
        format!("UPDATE {OWNERS_TABLE} SET owner = {n} WHERE owner = {o}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_grants_are_written_as_sqlparser_reads_them() {
        assert_eq!(
            role_grant_statements(
                "SELECT 1; GRANT pg_read_all_data TO alice; revoke a, \"B\" FROM c"
            )
            .as_deref(),
            Some(
                "SELECT 1; GRANT ROLE pg_read_all_data TO alice; revoke ROLE a, ROLE \"B\" FROM c"
            )
        );
        for not_one in [
            "GRANT SELECT ON t TO a",
            "GRANT ALL ON t TO a",
            "GRANT ROLE a TO b",
            "REVOKE INSERT, UPDATE ON t FROM a",
            "SELECT 'grant a to b'",
            "GRANT CREATE ON SCHEMA public TO a",
        ] {
            assert_eq!(role_grant_statements(not_one), None, "{not_one}");
        }
    }
}
