//! What a role may do, decided where statements run: on the apply connection (every entry, on
//! every replica), on the writer for transaction blocks, and on read connections.
//!
//! Each log entry carries the role of the session that made it (`Command::Execute::role`,
//! `TxnRecord::role`; `None` for a superuser), and the privileges are rows of the replicated
//! state (`sqlkeeper_sql::PRIVILEGES_TABLE`, `MEMBERS_TABLE`, `OWNERS_TABLE`, `ROLES_TABLE`):
//! so every replica decides the same for the same entry, in log order. A follower's session
//! refuses what its node's state refuses before anything is replicated (its reads, and its
//! blocks' statements on the block writer), and the apply of the entry decides again.
//!
//! The decision is SQLite's authorizer ([`Guard::decide`]): every table a statement reads
//! (SELECT), inserts into, updates or deletes from, and every table it creates, alters or
//! drops, is checked when the statement is prepared. Statements a connection prepared for other
//! privileges are dropped from its statement cache when the privileges it runs with change
//! ([`Guard::prepare`]), so no statement prepared for one role runs for another.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::functions::FunctionFlags;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::Value;
use rusqlite::Connection;

const SELECT: u8 = 1;
const INSERT: u8 = 2;
const UPDATE: u8 = 4;
const DELETE: u8 = 8;

/// Changes to the privilege tables committed by this process's apply connections (or a
/// snapshot installed): a connection reads a role's rights again when it moved.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Marks the privileges as changed for every read connection of this process.
pub(crate) fn changed() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Whether `table` is one of the tables privileges are kept in.
pub(crate) fn is_privilege_table(table: &str) -> bool {
    table == sqlkeeper_sql::PRIVILEGES_TABLE
        || table == sqlkeeper_sql::MEMBERS_TABLE
        || table == sqlkeeper_sql::OWNERS_TABLE
        || table == sqlkeeper_sql::ROLES_TABLE
}

/// The engine's own tables and SQLite's: the translator refuses them in client SQL
/// (`sqlkeeper_sql::translate`), and translated statements use them on the client's behalf.
fn is_internal(table: &str) -> bool {
    let lower = |p: &str| {
        table
            .get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    };
    lower("_sqlkeeper_") || lower("sqlite_")
}

fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA schema_version")?
        .query_row([], |r| r.get(0))
}

/// What one role that is not a superuser may do, read from the state.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Rights {
    role: String,
    createrole: bool,
    /// CREATE on the schema `public`.
    create: bool,
    /// Privileges on every table (`pg_read_all_data`, `pg_write_all_data`).
    all: u8,
    /// Granted privileges per table (lower case), to the role, a role it is a member of, or
    /// PUBLIC.
    tables: HashMap<String, u8>,
    /// Tables owned by the role or a role it is a member of (lower case).
    owned: HashSet<String>,
    /// The role and the roles it is a member of, directly or through others.
    member_of: HashSet<String>,
    /// The views of the database (lower case): a read through one needs SELECT on the view
    /// too.
    views: HashSet<String>,
    /// The tables and views of the database (lower case, and as named): what is checked.
    /// Other names an authorizer sees are SQLite's table-valued functions
    /// (`pragma_table_info`, `json_each`) and the engine's own tables.
    relations: HashMap<String, String>,
    /// `PRAGMA schema_version` when read: a read connection reads again after DDL.
    schema_version: i64,
}

fn bit(privilege: &str) -> u8 {
    match privilege {
        "SELECT" => SELECT,
        "INSERT" => INSERT,
        "UPDATE" => UPDATE,
        "DELETE" => DELETE,
        _ => 0,
    }
}

impl Rights {
    /// `role`'s privileges; `None` when it is a superuser.
    fn load(conn: &Connection, role: &str) -> rusqlite::Result<Option<Rights>> {
        use rusqlite::OptionalExtension;
        if role == sqlkeeper_sql::SUPERUSER {
            return Ok(None);
        }
        let flags: Option<(i64, i64)> = conn
            .prepare_cached(&format!(
                "SELECT superuser, createrole FROM {} WHERE name = ?1",
                sqlkeeper_sql::ROLES_TABLE
            ))?
            .query_row([role], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if flags.is_some_and(|(superuser, _)| superuser == 1) {
            return Ok(None);
        }
        let mut rights = Rights {
            role: role.to_string(),
            createrole: flags.is_some_and(|(_, c)| c == 1),
            ..Rights::default()
        };
        // The role and every role it is a member of, directly or through others.
        let roles = format!(
            "WITH RECURSIVE m(name) AS (SELECT ?1 UNION SELECT r.role FROM {} AS r, m \
             WHERE r.member = m.name)",
            sqlkeeper_sql::MEMBERS_TABLE
        );
        let mut s = conn.prepare_cached(&format!("{roles} SELECT name FROM m"))?;
        let mut rows = s.query([role])?;
        while let Some(r) = rows.next()? {
            let name = r.get_ref(0)?.as_str()?;
            match name {
                sqlkeeper_sql::READ_ALL_DATA => rights.all |= SELECT,
                sqlkeeper_sql::WRITE_ALL_DATA => rights.all |= INSERT | UPDATE | DELETE,
                _ => {}
            }
            rights.member_of.insert(name.to_string());
        }
        let mut s = conn.prepare_cached(&format!(
            "{roles} SELECT kind, name, privilege FROM {} WHERE grantee IN \
             (SELECT name FROM m UNION ALL SELECT '{}')",
            sqlkeeper_sql::PRIVILEGES_TABLE,
            sqlkeeper_sql::PUBLIC
        ))?;
        let mut rows = s.query([role])?;
        while let Some(r) = rows.next()? {
            let (kind, name, privilege) = (
                r.get_ref(0)?.as_str()?,
                r.get_ref(1)?.as_str()?,
                r.get_ref(2)?.as_str()?,
            );
            match kind {
                "table" => {
                    *rights.tables.entry(name.to_ascii_lowercase()).or_default() |= bit(privilege)
                }
                "schema" if privilege == "CREATE" => rights.create = true,
                _ => {}
            }
        }
        let mut s = conn.prepare_cached(&format!(
            "{roles} SELECT name FROM {} WHERE owner IN (SELECT name FROM m)",
            sqlkeeper_sql::OWNERS_TABLE
        ))?;
        let mut rows = s.query([role])?;
        while let Some(r) = rows.next()? {
            rights
                .owned
                .insert(r.get_ref(0)?.as_str()?.to_ascii_lowercase());
        }
        let mut s = conn.prepare_cached(
            "SELECT name, type = 'view' FROM sqlite_schema WHERE type IN ('table', 'view')",
        )?;
        let mut rows = s.query([])?;
        while let Some(r) = rows.next()? {
            let name = r.get_ref(0)?.as_str()?.to_ascii_lowercase();
            if is_internal(&name) {
                continue;
            }
            if r.get::<_, bool>(1)? {
                rights.views.insert(name.clone());
            }
            rights
                .relations
                .insert(name, r.get_ref(0)?.as_str()?.to_string());
        }
        rights.schema_version = schema_version(conn)?;
        Ok(Some(rights))
    }

    fn owns(&self, table: &str) -> bool {
        self.owned.contains(&table.to_ascii_lowercase())
    }

    fn has(&self, table: &str, bit: u8) -> bool {
        let t = table.to_ascii_lowercase();
        self.all & bit != 0
            || self.owned.contains(&t)
            || self.tables.get(&t).is_some_and(|b| b & bit != 0)
    }

    /// `has_table_privilege(table, privileges)`: `table` is a name (`t`, `public.t`, `"T"`)
    /// or an oid; `privileges` one or more of `SELECT`, `INSERT`, `UPDATE`, `DELETE` (any
    /// held is enough, as in PostgreSQL), each maybe `WITH GRANT OPTION` (never held).
    fn has_table_privilege(&self, table: &Value, privileges: &str) -> rusqlite::Result<bool> {
        let name = match table {
            Value::Integer(oid) => self
                .relations
                .iter()
                .filter(|(_, named)| crate::catalogfuncs::relation_oid(named) == *oid)
                .map(|(lower, _)| lower.clone())
                .min(),
            Value::Text(t) => {
                let t = t.strip_prefix("public.").unwrap_or(t);
                let name = match t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                    Some(quoted) => quoted.to_string(),
                    None => t.to_lowercase(),
                };
                Some(name.to_ascii_lowercase()).filter(|n| self.relations.contains_key(n))
            }
            _ => None,
        };
        let Some(name) = name else {
            let shown = match table {
                Value::Text(t) => t.clone(),
                other => format!("{other:?}"),
            };
            return Err(crate::error::raise(
                "42P01",
                format!("relation \"{shown}\" does not exist"),
            ));
        };
        let mut held = false;
        for p in privileges.split(',') {
            let p = p.trim().to_ascii_uppercase();
            let bit = match p.as_str() {
                "SELECT" => SELECT,
                "INSERT" => INSERT,
                "UPDATE" => UPDATE,
                // TRUNCATE runs as a DELETE here.
                "DELETE" | "TRUNCATE" => DELETE,
                // Held by the owner; granted, they change nothing here.
                "REFERENCES" | "TRIGGER" => 0,
                _ if p.ends_with("WITH GRANT OPTION") => continue,
                _ => {
                    return Err(crate::error::raise(
                        "22023",
                        format!("unrecognized privilege type: \"{}\"", p.to_lowercase()),
                    ))
                }
            };
            held |= self.owns(&name) || (bit != 0 && self.has(&name, bit));
        }
        Ok(held)
    }

    /// `_sqlkeeper_may(what, name)`.
    fn may(&self, what: &str, name: &str) -> bool {
        match what {
            "own" => self.owns(name),
            "create" => self.create,
            "createrole" => self.createrole,
            "self" => self.createrole || self.role == name,
            "member" => self.member_of.contains(name),
            _ => false,
        }
    }

    /// Why the role may not, if it may not: PostgreSQL's message.
    fn refuse(&self, ctx: &AuthContext<'_>) -> Option<String> {
        let denied = |table: &str| Some(format!("permission denied for table {table}"));
        let not_owner = |table: &str| Some(format!("must be owner of table {table}"));
        let need = |table: &str, bit: u8| {
            if !self.relations.contains_key(&table.to_ascii_lowercase()) || self.has(table, bit) {
                None
            } else {
                denied(table)
            }
        };
        // Statements of the engine's triggers (column checks, enum labels) run for the table
        // they belong to (client SQL cannot name such a trigger or refer to a relation of that
        // prefix). A read through a view needs SELECT on the view and on what it reads: the
        // accessor SQLite names may also be a WITH query of the same name, so it never stands
        // in for the table (PostgreSQL checks the tables against the view's owner instead).
        match ctx.accessor {
            Some(a) if is_internal(a) => return None,
            Some(a) if self.views.contains(&a.to_ascii_lowercase()) => {
                if let AuthAction::Read { .. } = ctx.action {
                    if let Some(refused) = need(a, SELECT) {
                        return Some(refused);
                    }
                }
            }
            _ => {}
        }
        match ctx.action {
            AuthAction::Read { table_name, .. } => need(table_name, SELECT),
            AuthAction::Insert { table_name } => need(table_name, INSERT),
            AuthAction::Update { table_name, .. } => need(table_name, UPDATE),
            AuthAction::Delete { table_name } => need(table_name, DELETE),
            AuthAction::CreateTable { table_name } if !is_internal(table_name) => {
                (!self.create).then(|| "permission denied for schema public".to_string())
            }
            AuthAction::CreateView { .. } if !self.create => {
                Some("permission denied for schema public".to_string())
            }
            AuthAction::DropTable { table_name }
            | AuthAction::AlterTable { table_name, .. }
            | AuthAction::CreateIndex { table_name, .. }
            | AuthAction::DropIndex { table_name, .. }
            | AuthAction::CreateTrigger { table_name, .. }
            | AuthAction::DropTrigger { table_name, .. }
                if !is_internal(table_name) && !self.owns(table_name) =>
            {
                not_owner(table_name)
            }
            AuthAction::DropView { view_name } if !self.owns(view_name) => {
                Some(format!("must be owner of view {view_name}"))
            }
            _ => None,
        }
    }
}

#[derive(Default)]
struct GuardState {
    /// The role statements run as; `None`: a superuser.
    role: Option<String>,
    /// What [`Guard::decide`] checks against: the role's rights, `None` for a superuser.
    rights: Option<Arc<Rights>>,
    /// The last rights read for a role that is not a superuser, and [`GENERATION`] then: kept
    /// while the connection runs as the superuser between that role's statements.
    loaded: Option<(Arc<Rights>, u64)>,
    /// The rights every statement in the connection's cache was authorized for; `None` once a
    /// statement may have been prepared unchecked (as the superuser, or for the engine's own
    /// work), which a role that is not a superuser must not reuse.
    prepared_for: Option<Arc<Rights>>,
    /// The first refusal since the statement began.
    denied: Option<String>,
}

/// The privileges one connection checks statements against.
#[derive(Default)]
pub(crate) struct Guard {
    state: Mutex<GuardState>,
    /// A row of a privilege table changed on this connection and is not known to be
    /// committed (its update hook sets it; the apply connection clears it when the batch
    /// commits): until then the rights are read before every statement, as a rollback may
    /// undo the change.
    pub(crate) touched: AtomicBool,
    /// Work of the engine's own (a table rebuild, resolving defaults): nothing is checked.
    suspended: AtomicBool,
    /// The rights are being read: the statements that read them need no check and do not
    /// count as prepared unchecked.
    loading: AtomicBool,
}

impl Guard {
    fn lock(&self) -> MutexGuard<'_, GuardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The role the next statements run as. A superuser (`None`) is not checked from now on;
    /// another role's privileges are read (if they may have changed) by the next
    /// [`Guard::prepare`].
    pub(crate) fn set_role(&self, role: Option<&str>) {
        let mut st = self.lock();
        if st.role.as_deref() != role {
            st.role = role.map(str::to_string);
        }
        if role.is_none() {
            st.rights = None;
        }
    }

    /// Makes the role's rights the ones statements are checked against, before a statement:
    /// read again when they may have changed (another role; a committed change of the
    /// privileges in this process; a change on this connection not yet committed; another
    /// schema). Drops the connection's cached statements when they were not all authorized
    /// for these rights.
    pub(crate) fn prepare(&self, conn: &Connection) -> rusqlite::Result<()> {
        let generation = GENERATION.load(Ordering::SeqCst);
        let (role, candidate) = {
            let mut st = self.lock();
            st.denied = None;
            let Some(role) = st.role.clone() else {
                st.rights = None;
                return Ok(());
            };
            let candidate = st
                .loaded
                .as_ref()
                .filter(|(r, g)| r.role == role && *g == generation)
                .map(|(r, _)| r.clone())
                .filter(|_| !self.touched.load(Ordering::SeqCst));
            (role, candidate)
        };
        // No lock is held while the connection prepares anything: preparing calls the
        // authorizer, which takes it.
        self.loading.store(true, Ordering::SeqCst);
        let fresh = match &candidate {
            Some(r) => schema_version(conn).map(|now| now == r.schema_version),
            None => Ok(false),
        };
        let rights = match fresh {
            Ok(true) => Ok(candidate),
            Ok(false) => Rights::load(conn, &role).map(|r| r.map(Arc::new)),
            Err(e) => Err(e),
        };
        self.loading.store(false, Ordering::SeqCst);
        let rights = rights?;
        let mut st = self.lock();
        if let Some(r) = &rights {
            st.loaded = Some((r.clone(), generation));
            let same = st
                .prepared_for
                .as_ref()
                .is_some_and(|p| Arc::ptr_eq(p, r) || **p == **r);
            if !same {
                conn.flush_prepared_statement_cache();
                st.prepared_for = Some(r.clone());
            }
        }
        st.rights = rights;
        Ok(())
    }

    /// Runs `f` with nothing checked: the engine's own work for a statement.
    pub(crate) fn unchecked<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = self.suspended.swap(true, Ordering::SeqCst);
        let r = f();
        self.suspended.store(was, Ordering::SeqCst);
        r
    }

    /// The authorizer's answer.
    pub(crate) fn decide(&self, ctx: &AuthContext<'_>) -> Authorization {
        if self.loading.load(Ordering::Relaxed) {
            return Authorization::Allow;
        }
        // A statement that writes the privileges (also a `DELETE` without `WHERE`, which
        // SQLite runs without calling the update hook).
        if let AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name } = ctx.action
        {
            if is_privilege_table(table_name) {
                self.touched.store(true, Ordering::SeqCst);
            }
        }
        let mut st = self.lock();
        let Some(rights) = st.rights.clone() else {
            // Prepared as the superuser: a role must not reuse the statement.
            st.prepared_for = None;
            return Authorization::Allow;
        };
        let refused = rights.refuse(ctx);
        if self.suspended.load(Ordering::Relaxed) {
            // The engine's own work goes on; a statement that did what the role may not
            // must not be reused for it.
            if refused.is_some() {
                st.prepared_for = None;
            }
            return Authorization::Allow;
        }
        match refused {
            None => Authorization::Allow,
            Some(why) => {
                st.denied.get_or_insert(why);
                Authorization::Deny
            }
        }
    }

    /// The refusal that failed the statement, if one did: 42501.
    pub(crate) fn take_denied(&self) -> Option<crate::ExecError> {
        self.lock()
            .denied
            .take()
            .map(|m| crate::ExecError::new("42501", m))
    }

    /// Whether the role may own `table` (a table rebuild, which no authorizer action shows).
    pub(crate) fn owns(&self, table: &str) -> bool {
        self.lock().rights.as_ref().is_none_or(|r| r.owns(table))
    }
}

/// Registers `_sqlkeeper_role()` and `_sqlkeeper_may(what, name)` (`sqlkeeper_sql`'s
/// `ROLE_FUNCTION` and `MAY_FUNCTION`) for the statements of the connection guarded by `guard`.
pub(crate) fn install(conn: &Connection, guard: &Arc<Guard>) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8;
    let g = guard.clone();
    conn.create_scalar_function(sqlkeeper_sql::ROLE_FUNCTION, 0, flags, move |_| {
        let st = g.lock();
        Ok(st.rights.as_ref().map(|r| r.role.clone()))
    })?;
    let g = guard.clone();
    conn.create_scalar_function(sqlkeeper_sql::MAY_FUNCTION, 2, flags, move |ctx| {
        let what: String = ctx.get(0)?;
        let name: String = ctx.get(1)?;
        let st = g.lock();
        Ok(st.rights.as_ref().is_none_or(|r| r.may(&what, &name)))
    })?;
    // What the session's role holds. Of another role the function cannot read the
    // privileges, and answers as for a superuser (true), as before roles were checked.
    let g = guard.clone();
    conn.create_scalar_function("has_table_privilege", 2, flags, move |ctx| {
        let table: Value = ctx.get(0)?;
        let privileges: String = ctx.get(1)?;
        let st = g.lock();
        match st.rights.as_ref() {
            None => Ok(true),
            Some(r) => r.has_table_privilege(&table, &privileges),
        }
    })?;
    let g = guard.clone();
    conn.create_scalar_function("has_table_privilege", 3, flags, move |ctx| {
        let user: Value = ctx.get(0)?;
        let table: Value = ctx.get(1)?;
        let privileges: String = ctx.get(2)?;
        let st = g.lock();
        match st.rights.as_ref() {
            Some(r) if matches!(&user, Value::Text(u) if *u == r.role) => {
                r.has_table_privilege(&table, &privileges)
            }
            _ => Ok(true),
        }
    })?;
    let g = guard.clone();
    conn.create_scalar_function("has_schema_privilege", 2, flags, move |ctx| {
        let privileges: String = ctx.get(1)?;
        let st = g.lock();
        Ok(st.rights.as_ref().is_none_or(|r| {
            privileges
                .split(',')
                .any(|p| !p.trim().eq_ignore_ascii_case("CREATE") || r.create)
        }))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::apply::tests::{apply1, exec};
    use crate::apply::StateMachine;
    use crate::command::Command;
    use crate::Statement;

    fn as_role(role: &str, sql: &str) -> Command {
        let mut cmd = exec(sql);
        if let Command::Execute { role: r, .. } = &mut cmd {
            *r = Some(role.to_string());
        }
        cmd
    }

    fn sqlstate(o: &crate::Outcome) -> Option<&str> {
        o.error.as_ref().map(|(_, e)| e.sqlstate.as_str())
    }

    /// What an entry may do depends on the role it carries and the privileges in the state,
    /// whoever proposed it: the same entry is refused or applied on every replica alike, and
    /// a grant in the log changes what the next entry of the role may do.
    #[test]
    fn entries_run_with_the_privileges_of_their_role() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let mut i = 0;
        let mut apply = |sm: &mut StateMachine, cmd: Command| {
            i += 1;
            apply1(sm, i, &cmd)
        };
        assert!(apply(&mut sm, exec("CREATE TABLE t (x INTEGER)"))
            .error
            .is_none());
        assert!(apply(
            &mut sm,
            exec("INSERT INTO _sqlkeeper_roles VALUES ('r', 5, 0, 1, 0, 0, NULL)")
        )
        .error
        .is_none());
        for sql in [
            "INSERT INTO t VALUES (1)",
            "SELECT * FROM t",
            "DELETE FROM t",
            "CREATE TABLE u (x INTEGER)",
            "DROP TABLE t",
        ] {
            assert_eq!(
                sqlstate(&apply(&mut sm, as_role("r", sql))),
                Some("42501"),
                "{sql}"
            );
            // The superuser's entry of the same statement text, prepared after the refusal.
            assert_eq!(sqlstate(&apply(&mut sm, exec(sql))), None, "{sql}");
            if sql.starts_with("DROP") || sql.starts_with("CREATE") {
                let undo = if sql.starts_with("DROP") {
                    "CREATE TABLE t (x INTEGER)"
                } else {
                    "DROP TABLE u"
                };
                assert_eq!(sqlstate(&apply(&mut sm, exec(undo))), None);
            }
        }
        // A statement the superuser's entry prepared is not reused for the role.
        assert_eq!(
            sqlstate(&apply(&mut sm, as_role("r", "INSERT INTO t VALUES (1)"))),
            Some("42501")
        );
        assert!(apply(
            &mut sm,
            exec(
                "INSERT INTO _sqlkeeper_privileges VALUES ('table', 't', 'r', 'INSERT'), \
                 ('table', 't', 'r', 'SELECT')"
            )
        )
        .error
        .is_none());
        let o = apply(
            &mut sm,
            as_role("r", "INSERT INTO t VALUES (2) RETURNING x"),
        );
        assert_eq!(sqlstate(&o), None);
        assert_eq!(o.results[0].rows, vec![vec![crate::Value::Integer(2)]]);
        assert_eq!(
            sqlstate(&apply(&mut sm, as_role("r", "UPDATE t SET x = 3"))),
            Some("42501")
        );
        // Read connections decide alike, and see the grant.
        let reads = sm.read_pool();
        let read = |role: Option<&str>, sql: &str| {
            reads
                .read(
                    |_| {},
                    |v| {
                        v.query_as(role, &Statement::plain(sql, vec![]))
                            .map_err(crate::EngineError::from)
                    },
                )
                .map(|r| r.rows.len())
                .map_err(|e| match e {
                    crate::EngineError::Exec(e) => e.sqlstate.to_string(),
                    other => other.to_string(),
                })
        };
        assert_eq!(read(Some("r"), "SELECT x FROM t"), Ok(1));
        assert!(
            read(Some("r"), "SELECT name FROM sqlite_schema").is_ok_and(|n| n > 1),
            "SQLite's own tables are not checked"
        );
        assert!(apply(&mut sm, exec("CREATE TABLE v (y INTEGER)"))
            .error
            .is_none());
        assert_eq!(read(None, "SELECT y FROM v"), Ok(0));
        assert_eq!(read(Some("r"), "SELECT y FROM v"), Err("42501".into()));
        assert!(
            apply(&mut sm, exec("DELETE FROM _sqlkeeper_privileges WHERE 1"))
                .error
                .is_none()
        );
        assert_eq!(read(Some("r"), "SELECT x FROM t"), Err("42501".into()));
    }
}
