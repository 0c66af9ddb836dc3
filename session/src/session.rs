//! A session: one client's settings, read consistency, autocommit statements, transaction
//! blocks, admin calls and introspection. The wire protocol crate hands it query strings and
//! prepared statements and gets back what each statement produced; decisions about SQL live
//! in `sqlkeeper_sql`, decisions about where and how a statement runs here and in the node.

use std::sync::{Arc, Mutex};

use sqlkeeper_engine::{query_scratch, EngineError, LogIndex, ScratchTable, Statement};
use sqlkeeper_raft::{AdminOp, Node, NodeInfo};
use sqlkeeper_sql::{
    translate, AdminCall, ColumnHint, CommandTag, CursorOp, ParamType, PgType, SessionOp,
    SessionValue, StatementKind, Translated, TxnOp,
};

use crate::error::ClientError;
use crate::settings::{ReadConsistency, Settings};
use crate::txn::{aborted, begin_message, describe_in_block, Phase, Txn, TxnStatus};
use crate::values::{columns_from, rows_from, Column, Value};

type EngineValue = sqlkeeper_engine::Value;

/// Time a write may take, including finding a leader and retries across a leader change.
pub(crate) const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Time a membership change may take, including a new voter catching up.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Settings whose change Postgres reports to the client with a ParameterStatus message.
const REPORTED_SETTINGS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "timezone",
];

/// A statement prepared with the extended protocol: translated once at Parse, described once.
#[derive(Debug, Clone)]
pub struct Prepared {
    translated: Translated,
    columns: Vec<Column>,
    /// Each parameter's type as a column would declare it, where the statement decides it
    /// (`None`: the client's type, else `text`).
    param_types: Vec<Option<String>>,
}

impl Prepared {
    /// Parameters the statement uses (`$1` .. `$n`).
    pub fn param_count(&self) -> usize {
        self.translated.param_count
    }

    /// Its result columns, as described at Parse (empty: none, or unknown until it runs).
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The translator's Postgres names and types of the result columns.
    pub fn hints(&self) -> &[ColumnHint] {
        &self.translated.columns
    }

    /// The inferred type of parameter `i` (0 is `$1`), as a declared column type
    /// (`integer`, `timestamptz`), or `None` where nothing in the statement decides it.
    pub fn param_type(&self, i: usize) -> Option<&str> {
        self.param_types.get(i)?.as_deref()
    }
}

/// The parameters' types from the statement's [`ParamType`]s and its described type probe
/// (`probe`: its result columns, or `None` when it has none or did not prepare).
fn param_types(t: &Translated, probe: Option<&[sqlkeeper_engine::Column]>) -> Vec<Option<String>> {
    t.params
        .iter()
        .map(|p| match p {
            ParamType::Unknown => None,
            ParamType::Named(name) => Some(name.clone()),
            ParamType::Column(i) => probe?.get(*i)?.decl_type.clone(),
            ParamType::Compared(i) => {
                let decl = probe?.get(*i)?.decl_type.clone()?;
                match sqlkeeper_sql::pg_type_of_name(&decl) {
                    Some(PgType::Varchar) => Some("text".into()),
                    _ => Some(decl),
                }
            }
            // `c = ANY ($1)`: an array of the column's type (`text[]` for a `varchar`, as
            // compared); `$1 = ANY (c)`: the element type of the column's array type.
            ParamType::ArrayOf(i) => {
                let decl = probe?.get(*i)?.decl_type.clone()?;
                match sqlkeeper_sql::pg_type_of_name(&decl)? {
                    PgType::Varchar => Some("text[]".into()),
                    t => Some(t.array()?.name().into()),
                }
            }
            ParamType::ElementOf(i) => {
                let decl = probe?.get(*i)?.decl_type.clone()?;
                match sqlkeeper_sql::pg_type_of_name(&decl)?.element()? {
                    PgType::Varchar => Some("text".into()),
                    t => Some(t.name().into()),
                }
            }
        })
        .collect()
}

/// What one statement produced, before the protocol turns it into messages.
#[derive(Debug)]
pub enum Produced {
    /// Rows (of a read, or a write with `RETURNING`).
    Rows {
        /// The result columns, as SQLite describes them.
        columns: Vec<Column>,
        /// The rows.
        rows: Vec<Vec<Value>>,
        /// The command tag to complete with.
        tag: CommandTag,
        /// Postgres names and types of the columns, from the translator.
        hints: Vec<ColumnHint>,
    },
    /// No rows: the command tag.
    Done(String),
    /// `COPY ... TO STDOUT`: rows the protocol sends as COPY data.
    CopyOut {
        /// The statement's format and options.
        spec: sqlkeeper_sql::CopySpec,
        /// The result columns, as SQLite describes them.
        columns: Vec<Column>,
        /// The rows.
        rows: Vec<Vec<Value>>,
        /// Postgres names and types of the columns, from the translator.
        hints: Vec<ColumnHint>,
    },
    /// `COPY ... FROM STDIN`: the protocol reads the rows, then calls [`Session::copy_in`].
    CopyIn(crate::copy::CopyIn),
    /// A setting changed that the client must be told about (ParameterStatus).
    Setting {
        /// The command tag.
        tag: String,
        /// The setting's name, as Postgres spells it in `SHOW`.
        name: String,
        /// Its new value.
        value: String,
    },
}

impl Produced {
    /// Rows of a read (or a write with RETURNING), with the translator's column hints.
    pub(crate) fn rows(r: sqlkeeper_engine::StatementResult, t: &Translated) -> Produced {
        Produced::result(r, t.tag.clone(), t.columns.clone())
    }

    pub(crate) fn result(
        r: sqlkeeper_engine::StatementResult,
        tag: CommandTag,
        hints: Vec<ColumnHint>,
    ) -> Produced {
        Produced::Rows {
            columns: columns_from(r.columns),
            rows: rows_from(r.rows),
            tag,
            hints,
        }
    }

    /// One text column of one row: `SHOW`, admin calls.
    pub(crate) fn text(name: String, value: String, tag: CommandTag) -> Produced {
        Produced::Rows {
            columns: vec![Column {
                name,
                decl_type: None,
            }],
            rows: vec![vec![Value::Text(value)]],
            tag,
            hints: Vec::new(),
        }
    }
}

/// Bytes of the state per row of `sqlkeeper.backup()`: large enough that the rows cost little,
/// small enough to show a backup's progress.
const BACKUP_CHUNK_BYTES: usize = 1024 * 1024;

/// The result columns of an admin call: one text column named after it, but for
/// `sqlkeeper.backup()` (the log index of the copy, its size in bytes, and a chunk of it).
fn admin_columns(call: &AdminCall) -> Vec<sqlkeeper_engine::Column> {
    let column = |name: &str, decl_type: Option<&str>| sqlkeeper_engine::Column {
        name: name.to_string(),
        decl_type: decl_type.map(str::to_string),
    };
    match call.function.as_str() {
        "backup" => vec![
            column("log_index", Some("BIGINT")),
            column("size", Some("BIGINT")),
            column("chunk", Some("BYTEA")),
        ],
        f => vec![column(f, None)],
    }
}

/// Opens sessions on one node: what the protocol server is given.
#[derive(Clone)]
pub struct Sessions {
    node: Arc<Node>,
}

impl Sessions {
    /// Sessions on `node`.
    pub fn new(node: Arc<Node>) -> Sessions {
        Sessions { node }
    }

    /// A new session, with default settings and no transaction block.
    pub fn open(&self) -> Session {
        Session::new(self.node.clone())
    }

    /// How role `user` may log in, from this node's state: `None` if no role of that name has
    /// a row (`postgres` has one only once `ALTER ROLE postgres` changed it).
    pub async fn login(&self, user: &str) -> Result<Option<Login>, ClientError> {
        let stmt = Statement::plain(
            format!(
                "SELECT login, password FROM {} WHERE name = ?1",
                sqlkeeper_sql::ROLES_TABLE
            ),
            vec![EngineValue::Text(user.to_string())],
        );
        let result = self
            .node
            .read(LOGIN_READ_TIMEOUT, move |v| {
                v.query(&stmt).map_err(EngineError::from)
            })
            .await
            .map_err(ClientError::from)?;
        Ok(result.rows.into_iter().next().map(|row| {
            let mut row = row.into_iter();
            let may_log_in = matches!(row.next(), Some(EngineValue::Integer(1)));
            let verifier = match row.next() {
                Some(EngineValue::Text(t)) => crate::scram::Verifier::parse(&t),
                _ => None,
            };
            Login {
                may_log_in,
                verifier,
            }
        }))
    }
}

/// How long a login may wait for this node's read of the role (the start-up's own deadline is
/// longer; a node too busy to read one row in this time refuses the login).
const LOGIN_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a role's row says about logging in.
#[derive(Debug, Clone)]
pub struct Login {
    /// `LOGIN` (CREATE USER) or `NOLOGIN` (CREATE ROLE's default).
    pub may_log_in: bool,
    /// Its password's verifier, if it has a password.
    pub verifier: Option<crate::scram::Verifier>,
}

/// One client's session.
pub struct Session {
    pub(crate) node: Arc<Node>,
    /// Settings. A std mutex: never held across an await.
    settings: Mutex<Settings>,
    /// The transaction block. A tokio mutex: held while a statement runs.
    pub(crate) txn: Arc<tokio::sync::Mutex<Txn>>,
    /// Set while a COMMIT is being replicated: a cancel request waits for it.
    pub(crate) committing: Arc<std::sync::atomic::AtomicBool>,
    /// Notices for the client (SQLSTATE, message), sent before the statements' results.
    notices: Mutex<Vec<(&'static str, String)>>,
    /// Who connected, to what, from the start-up: the values of `current_user`,
    /// `pg_backend_pid()`, ... .
    connection: Mutex<Connection>,
    /// The role the session's statements run as ([`Session::role`]), once known.
    role: tokio::sync::OnceCell<Option<String>>,
}

/// What the protocol learned at start-up about the connection.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The role the client named (`user`).
    pub user: String,
    /// The database the client named (`database`, else the user's name, as PostgreSQL).
    pub database: String,
    /// The process id sent in BackendKeyData.
    pub pid: i32,
    /// The address the client connected to.
    pub server_addr: Option<std::net::SocketAddr>,
    /// The client proved the role's password (SCRAM); else it was trusted.
    pub password_checked: bool,
}

impl Default for Connection {
    fn default() -> Connection {
        Connection {
            user: "postgres".into(),
            database: "postgres".into(),
            pid: 0,
            server_addr: None,
            password_checked: false,
        }
    }
}

impl Session {
    fn new(node: Arc<Node>) -> Session {
        Session {
            node,
            settings: Mutex::new(Settings::default()),
            txn: Arc::new(tokio::sync::Mutex::new(Txn::default())),
            committing: Arc::default(),
            notices: Mutex::default(),
            connection: Mutex::default(),
            role: tokio::sync::OnceCell::new(),
        }
    }

    /// The role the session's statements run as, checked against its privileges where they
    /// run (`None`: a superuser, not checked). `postgres` is the superuser. A role that proved
    /// its password is checked (its row says whether it is a superuser). Under trust
    /// authentication (loopback only, no password configured) a name without a role acts as
    /// the superuser, as every client did before roles existed; a name with one is checked.
    pub(crate) async fn role(&self) -> Result<Option<String>, ClientError> {
        let c = self
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if c.user == sqlkeeper_sql::SUPERUSER {
            return Ok(None);
        }
        if c.password_checked {
            return Ok(Some(c.user));
        }
        self.role
            .get_or_try_init(|| async {
                let known = Sessions::new(self.node.clone()).login(&c.user).await?;
                Ok(known.map(|_| c.user.clone()))
            })
            .await
            .cloned()
    }

    /// Records what start-up learned about the connection.
    pub fn set_connection(&self, c: Connection) {
        *self.connection.lock().unwrap_or_else(|p| p.into_inner()) = c;
    }

    /// The values bound to `t`'s SQLite statements: the client's parameters, then the
    /// literals the translator took out of the statement's text
    /// (`sqlkeeper_sql::Translated::literals`), then the session's values of its session
    /// functions (`current_user`, `current_setting('x')`, ...). With a wrong number of client
    /// parameters nothing is added, and SQLite reports the count.
    pub(crate) fn bound(
        &self,
        t: &Translated,
        mut params: Vec<EngineValue>,
    ) -> Result<Vec<EngineValue>, ClientError> {
        if params.len() != t.param_count {
            return Ok(params);
        }
        params.extend(t.literals.iter().map(EngineValue::from));
        for v in &t.session_values {
            params.push(self.session_value(v)?);
        }
        Ok(params)
    }

    fn session_value(&self, v: &SessionValue) -> Result<EngineValue, ClientError> {
        let c = self
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(match v {
            SessionValue::User => EngineValue::Text(c.user),
            SessionValue::Database => EngineValue::Text(c.database),
            SessionValue::BackendPid => EngineValue::Integer(i64::from(c.pid)),
            SessionValue::ServerAddr => c
                .server_addr
                .map_or(EngineValue::Null, |a| EngineValue::Text(a.ip().to_string())),
            SessionValue::ServerPort => c.server_addr.map_or(EngineValue::Null, |a| {
                EngineValue::Integer(i64::from(a.port()))
            }),
            SessionValue::ScramVerifier(password) => {
                EngineValue::Text(crate::scram::Verifier::stored_form(password)?)
            }
            SessionValue::Setting { name, missing_ok } => match self.settings().show(name) {
                Some(value) => EngineValue::Text(value),
                None if *missing_ok => EngineValue::Null,
                None => {
                    return Err(ClientError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    ))
                }
            },
        })
    }

    /// The notices the last statements raised (SQLSTATE, message), for the protocol to send.
    pub fn take_notices(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The `IF [NOT] EXISTS` notices `batch` will raise, from this node's schema (the
    /// session's own earlier writes are in it; a concurrent change elsewhere may not be, which
    /// only ever affects the notice).
    async fn existence_notices(
        &self,
        batch: &[(Translated, Vec<EngineValue>)],
    ) -> Vec<(&'static str, String)> {
        let mut notices = Vec::new();
        let timeout = self.settings().statement_timeout();
        for (t, _) in batch {
            let Some(n) = &t.existence_notice else {
                continue;
            };
            for name in &n.names {
                let owned = name.clone();
                let of_type = n.kind == "type";
                let exists = self
                    .node
                    .read(timeout, move |v| {
                        match of_type {
                            true => v.type_exists(&owned),
                            false => v.relation_exists(&owned),
                        }
                        .map_err(EngineError::from)
                    })
                    .await;
                if let Ok(exists) = exists {
                    if exists == n.when_exists {
                        notices.push(n.message(name));
                    }
                }
            }
        }
        notices
    }

    pub(crate) fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn session_op(&self, op: &SessionOp) -> Result<Produced, ClientError> {
        let mut s = self.settings();
        match op {
            SessionOp::Show(name) if name == "all" => {
                let text = |n: &str| Column {
                    name: n.into(),
                    decl_type: Some("text".into()),
                };
                Ok(Produced::Rows {
                    columns: vec![text("name"), text("setting"), text("description")],
                    rows: s
                        .all()
                        .into_iter()
                        .map(|(n, v)| {
                            vec![Value::Text(n), Value::Text(v), Value::Text(String::new())]
                        })
                        .collect(),
                    tag: CommandTag::Fixed("SHOW"),
                    hints: Vec::new(),
                })
            }
            SessionOp::SetConfig { name, value } => {
                s.set(name, value.clone())
                    .map_err(|(state, msg)| ClientError::new(state, msg))?;
                let value = s.show(name).unwrap_or_default();
                Ok(Produced::text(
                    "set_config".into(),
                    value,
                    CommandTag::Select,
                ))
            }
            SessionOp::Show(name) => {
                let value = s.show(name).ok_or_else(|| {
                    ClientError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                Ok(Produced::text(
                    name.clone(),
                    value,
                    CommandTag::Fixed("SHOW"),
                ))
            }
            SessionOp::Set { name, value } => {
                s.set(name, value.clone())
                    .map_err(|(state, msg)| ClientError::new(state, msg))?;
                if REPORTED_SETTINGS.contains(&name.as_str()) {
                    let value = s.show(name).unwrap_or_default();
                    return Ok(Produced::Setting {
                        tag: "SET".into(),
                        name: name.clone(),
                        value,
                    });
                }
                Ok(Produced::Done("SET".into()))
            }
            SessionOp::Reset(None) => {
                s.reset_all();
                Ok(Produced::Done("RESET".into()))
            }
            SessionOp::Reset(Some(name)) => {
                s.set(name, None)
                    .map_err(|(state, msg)| ClientError::new(state, msg))?;
                Ok(Produced::Done("RESET".into()))
            }
        }
    }

    /// Brings this node up to every write the leader acknowledged (a read index), and the
    /// session's token with it.
    async fn linearize(&self, timeout: std::time::Duration) -> Result<(), ClientError> {
        let index = self.node.linearizable_barrier(timeout).await?;
        self.settings().observe(index.0);
        Ok(())
    }

    /// Waits until this node has applied the session's token (the last log index it wrote or
    /// read), so the session never goes back in time here.
    async fn wait_for_token(
        &self,
        token: u64,
        timeout: std::time::Duration,
    ) -> Result<(), ClientError> {
        if token == 0 {
            return Ok(());
        }
        self.node
            .wait_applied(LogIndex(token), timeout)
            .await
            .map_err(|_| {
                ClientError::new(
                    "57014",
                    format!(
                        "canceling statement: this node has not applied log index {token} within sqlkeeper.read_timeout ({timeout:?})"
                    ),
                )
            })
    }

    /// Makes this node's state recent enough for the session's read consistency.
    pub(crate) async fn before_read(&self) -> Result<(), ClientError> {
        let started = std::time::Instant::now();
        let r = self.consistency_wait().await;
        metrics::histogram!("sqlkeeper_read_wait_seconds").record(started.elapsed());
        r
    }

    /// What the session's read consistency asks of a read before it runs (`before_read`).
    async fn consistency_wait(&self) -> Result<(), ClientError> {
        let (mode, timeout, token, max_staleness) = {
            let s = self.settings();
            (
                s.read_consistency(),
                s.read_timeout(),
                s.token(),
                s.max_staleness(),
            )
        };
        match mode {
            ReadConsistency::Sequential => {
                self.wait_for_token(token, timeout).await?;
            }
            ReadConsistency::Linearizable => {
                self.linearize(timeout).await?;
            }
            ReadConsistency::Stale => {
                if let Some(max) = max_staleness {
                    match self.node.staleness() {
                        Some(age) if age <= max => {}
                        age => {
                            let heard = match age {
                                Some(a) => format!("for {:.1}s", a.as_secs_f64()),
                                None => "since it started".to_string(),
                            };
                            return Err(ClientError::new(
                                "57P03",
                                format!(
                                    "this node has not heard from a leader {heard}, more than sqlkeeper.max_staleness ({max:?})"
                                ),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn read_one(
        &self,
        t: &Translated,
        params: Vec<EngineValue>,
    ) -> Result<Produced, ClientError> {
        self.read_one_at(t, params, sqlkeeper_engine::local_stamp())
            .await
    }

    /// A read on the latest state this node has (after the session's consistency wait), with
    /// the time and randomness of `stamp`.
    pub(crate) async fn read_one_at(
        &self,
        t: &Translated,
        params: Vec<EngineValue>,
        stamp: sqlkeeper_engine::Stamp,
    ) -> Result<Produced, ClientError> {
        self.before_read().await?;
        let params = self.bound(t, params)?;
        let stmts: Vec<Statement> = t
            .sqlite
            .iter()
            .map(|sql| Statement::plain(sql.clone(), params.clone()))
            .collect();
        let tag = t.tag.clone();
        let timeout = self.settings().statement_timeout();
        let role = self.role().await?;
        let (mut results, applied) = self
            .node
            .read_at(stamp, timeout, move |view| {
                let mut out = Vec::with_capacity(stmts.len());
                for s in &stmts {
                    out.push(
                        view.query_as(role.as_deref(), s)
                            .map_err(EngineError::from)?,
                    );
                }
                Ok((out, view.applied_index()?))
            })
            .await?;
        if let Some(applied) = applied {
            self.settings().observe(applied.0);
        }
        let last = results.pop().unwrap_or_default();
        Ok(Produced::result(last, tag, t.columns.clone()))
    }

    /// Whether the session's role is a superuser: the `sqlkeeper.*` functions are theirs.
    async fn superuser(&self) -> Result<bool, ClientError> {
        let Some(role) = self.role().await? else {
            return Ok(true);
        };
        let stmt = Statement::plain(
            format!(
                "SELECT superuser FROM {} WHERE name = ?1",
                sqlkeeper_sql::ROLES_TABLE
            ),
            vec![EngineValue::Text(role)],
        );
        let r = self
            .node
            .read(LOGIN_READ_TIMEOUT, move |v| {
                v.query(&stmt).map_err(EngineError::from)
            })
            .await?;
        Ok(matches!(
            r.rows.first().and_then(|row| row.first()),
            Some(EngineValue::Integer(1))
        ))
    }

    async fn admin(&self, call: &AdminCall) -> Result<Produced, ClientError> {
        if !self.superuser().await? {
            return Err(ClientError::new(
                "42501",
                format!("permission denied for function sqlkeeper.{}", call.function),
            ));
        }
        let id = |s: &str| -> Result<u64, ClientError> {
            s.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ClientError::new("22023", format!("invalid node id \"{s}\"")))
        };
        let info = |addr: &str| NodeInfo {
            raft_addr: addr.to_string(),
            pg_addr: String::new(),
        };
        if call.function == "backup" {
            // Local: a consistent copy of this node's applied state, in chunks (`sqlkeeper
            // backup` writes them to a file in order).
            let (index, chunks) = self.node.backup(BACKUP_CHUNK_BYTES).await?;
            self.settings().observe(index);
            let size = chunks.iter().map(Vec::len).sum::<usize>() as i64;
            let rows = chunks
                .into_iter()
                .map(|c| {
                    vec![
                        Value::Integer(index as i64),
                        Value::Integer(size),
                        Value::Blob(c),
                    ]
                })
                .collect();
            return Ok(Produced::Rows {
                columns: columns_from(admin_columns(call)),
                rows,
                tag: CommandTag::Select,
                hints: Vec::new(),
            });
        }
        if call.function == "state_hash" {
            // Local: the hash of this node's applied state, to compare replicas.
            let hash = self.node.state_hash().await?;
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            return Ok(Produced::text("state_hash".into(), hex, CommandTag::Select));
        }
        let op = match (call.function.as_str(), call.args.as_slice()) {
            ("add_learner", [n, addr]) => AdminOp::AddLearner {
                node_id: id(n)?,
                info: info(addr),
            },
            ("add_node", [n, addr]) => AdminOp::AddNode {
                node_id: id(n)?,
                info: info(addr),
            },
            ("remove_node", [n]) => AdminOp::RemoveNode { node_id: id(n)? },
            ("transfer_leader", [n]) => AdminOp::TransferLeader { node_id: id(n)? },
            _ => {
                return Err(ClientError::new(
                    "42883",
                    format!("function sqlkeeper.{} does not exist", call.function),
                ))
            }
        };
        let msg = self.node.admin(op, ADMIN_TIMEOUT).await?;
        Ok(Produced::text(
            call.function.clone(),
            msg,
            CommandTag::Select,
        ))
    }

    pub(crate) async fn introspect(
        &self,
        t: &Translated,
        params: Vec<EngineValue>,
    ) -> Result<Produced, ClientError> {
        let tables = introspection_tables(&self.node, true).await;
        let stmt = Statement::plain(t.sqlite.first().cloned().unwrap_or_default(), params);
        let r = tokio::task::spawn_blocking(move || query_scratch("sqlkeeper", &tables, &stmt))
            .await
            .map_err(|e| ClientError::new("XX000", format!("introspection task: {e}")))??;
        Ok(Produced::result(r, t.tag.clone(), Vec::new()))
    }

    /// Runs the statements of one query string in order, stopping at the first error, and
    /// returns what each produced. Several statements that change data run as one log entry
    /// (all or nothing), as Postgres runs a multi-statement query string in one implicit
    /// transaction.
    pub(crate) async fn run(
        &self,
        batch: Vec<(Translated, Vec<EngineValue>)>,
    ) -> (Vec<Produced>, Option<ClientError>) {
        if self.in_block_or_control(&batch).await {
            return self.run_block(batch).await;
        }
        let writes = batch
            .iter()
            .any(|(t, _)| matches!(t.kind, StatementKind::Write | StatementKind::Ddl));
        if batch.len() > 1 && writes {
            // One entry, all or nothing, as PostgreSQL's implicit transaction of a query
            // string: a literal that does not convert fails all of it before anything runs.
            if let Some(e) = batch
                .iter()
                .find_map(|(t, _)| crate::values::literal_cast_error(t))
            {
                return (Vec::new(), Some(e));
            }
            return self.run_as_one_entry(batch).await;
        }
        let mut out = Vec::new();
        for (t, params) in batch {
            if let Some(e) = crate::values::literal_cast_error(&t) {
                return (out, Some(e));
            }
            match self.run_autocommit_one(t, params).await {
                Ok(p) => out.push(p),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    /// Runs one statement outside a transaction block: a write is one log entry.
    pub(crate) async fn run_autocommit_one(
        &self,
        t: Translated,
        params: Vec<EngineValue>,
    ) -> Result<Produced, ClientError> {
        match &t.kind {
            StatementKind::Read => self.read_one(&t, params).await,
            StatementKind::Write | StatementKind::Ddl => {
                let (mut produced, err) = self.run_as_one_entry(vec![(t, params)]).await;
                match err {
                    Some(e) => Err(e),
                    None => produced
                        .pop()
                        .ok_or_else(|| ClientError::new("XX000", "write produced no result")),
                }
            }
            StatementKind::Session(op) => self.session_op(op),
            StatementKind::Admin(call) => self.admin(call).await,
            StatementKind::Introspection => self.introspect(&t, params).await,
            StatementKind::Cursor(op) => Session::cursor_outside_block(op),
            StatementKind::Transaction(_) => Err(ClientError::new(
                "XX000",
                "transaction control reached the autocommit path",
            )),
            StatementKind::Copy(_) => Err(ClientError::new(
                "XX000",
                "COPY reached the autocommit path",
            )),
        }
    }

    async fn run_as_one_entry(
        &self,
        batch: Vec<(Translated, Vec<EngineValue>)>,
    ) -> (Vec<Produced>, Option<ClientError>) {
        if let Some((t, _)) = batch.iter().find(|(t, _)| {
            !matches!(
                t.kind,
                StatementKind::Read | StatementKind::Write | StatementKind::Ddl
            )
        }) {
            return (
                Vec::new(),
                Some(ClientError::new(
                    "0A000",
                    format!("\"{}\" cannot be combined with data-changing statements in one query string", t.original),
                )),
            );
        }
        let mut spans = Vec::with_capacity(batch.len());
        let mut statements = Vec::new();
        let mut probes = Vec::new();
        for (t, params) in &batch {
            let params = match self.bound(t, params.clone()) {
                Ok(p) => p,
                Err(e) => return (Vec::new(), Some(e)),
            };
            spans.push(t.sqlite.len());
            statements.extend(t.sqlite.iter().map(|sql| Statement {
                sql: sql.clone(),
                params: params.clone(),
                effect: t.effect.clone(),
            }));
            // What the entry will read without bound, run here first with its budget: a
            // write's probe, or a read that is part of the entry.
            let probe = match (&t.kind, &t.probe, t.sqlite.as_slice()) {
                (_, Some(p), _) => Some(p.clone()),
                (StatementKind::Read, None, [sql]) => Some(format!("SELECT count(*) FROM ({sql})")),
                _ => None,
            };
            probes.extend(probe.map(|sql| Statement::plain(sql, params.clone())));
        }
        let role = match self.role().await {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Some(e)),
        };
        if let Err(e) = self.node.probe(role.clone(), probes).await {
            return (Vec::new(), Some(e.into()));
        }
        let notices = self.existence_notices(&batch).await;
        let (outcome, index) = match self.node.write_as(role, statements, WRITE_TIMEOUT).await {
            Ok(o) => o,
            Err(e) => return (Vec::new(), Some(e.into())),
        };
        if outcome.error.is_none() {
            self.notices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(notices);
        }
        self.settings().observe(index.0);
        let mut results = outcome.results.into_iter();
        let mut produced = Vec::with_capacity(batch.len());
        let mut done = 0usize;
        for ((t, _), span) in batch.into_iter().zip(spans) {
            if let Some((at, err)) = &outcome.error {
                if *at < done + span {
                    return (produced, Some(err.clone().into()));
                }
            }
            let mut last = None;
            for _ in 0..span {
                last = results.next();
            }
            done += span;
            let r = last.unwrap_or_default();
            produced.push(if r.columns.is_empty() || t.kind == StatementKind::Ddl {
                Produced::Done(t.tag.render(r.rows_affected))
            } else {
                Produced::result(r, t.tag, t.columns)
            });
        }
        (produced, None)
    }
}

/// The first SQLite statement of `t`, with its effect, to describe (without parameters).
fn described_statement(t: &Translated) -> Statement {
    Statement {
        sql: t.sqlite.first().cloned().unwrap_or_default(),
        params: Vec::new(),
        effect: t.effect.clone(),
    }
}

/// The node's introspection views as scratch tables (`sqlkeeper.status`, `sqlkeeper.nodes`),
/// with the current values, or empty (to describe a statement).
async fn introspection_tables(node: &Node, with_rows: bool) -> Vec<ScratchTable> {
    let cols = |c: &[(&str, &str)]| {
        c.iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect()
    };
    let opt = |v: Option<u64>| {
        v.map(|i| EngineValue::Integer(i as i64))
            .unwrap_or(EngineValue::Null)
    };
    let mut status = ScratchTable {
        name: "status".into(),
        columns: cols(&[
            ("node_id", "BIGINT"),
            ("role", "TEXT"),
            ("term", "BIGINT"),
            ("leader_id", "BIGINT"),
            ("commit_index", "BIGINT"),
            ("applied_index", "BIGINT"),
            ("snapshot_index", "BIGINT"),
            ("last_contact_ms", "BIGINT"),
            ("wal_bytes", "BIGINT"),
        ]),
        rows: Vec::new(),
    };
    let mut nodes = ScratchTable {
        name: "nodes".into(),
        columns: cols(&[
            ("node_id", "BIGINT"),
            ("raft_addr", "TEXT"),
            ("pg_addr", "TEXT"),
            ("role", "TEXT"),
            ("voter", "BOOLEAN"),
            ("matched_index", "BIGINT"),
        ]),
        rows: Vec::new(),
    };
    if with_rows {
        let st = node.status();
        status.rows.push(vec![
            EngineValue::Integer(st.node_id as i64),
            EngineValue::Text(st.role.to_string()),
            EngineValue::Integer(st.term as i64),
            opt(st.leader_id),
            opt(st.commit_index),
            opt(st.applied_index),
            opt(st.snapshot_index),
            opt(node.staleness().map(|d| d.as_millis() as u64)),
            EngineValue::Integer(st.wal_bytes as i64),
        ]);
        nodes.rows = node
            .members()
            .await
            .into_iter()
            .map(|m| {
                vec![
                    EngineValue::Integer(m.node_id as i64),
                    EngineValue::Text(m.raft_addr),
                    m.pg_addr
                        .map(EngineValue::Text)
                        .unwrap_or(EngineValue::Null),
                    EngineValue::Text(m.role.to_string()),
                    EngineValue::Integer(m.voter as i64),
                    opt(m.matched_index),
                ]
            })
            .collect();
    }
    vec![status, nodes]
}

impl Session {
    /// Called when a message that runs something arrives: a block the idle timeout ended is
    /// reported (FATAL, the connection closes), and the idle timer stops.
    pub async fn begin_message(&self) -> Result<(), ClientError> {
        begin_message(&self.txn).await
    }

    /// After a message ran: an error fails an open block; `idle` arms the block's idle timer
    /// (the client now waits on us no longer). Returns the ReadyForQuery status.
    pub async fn finish_message(&self, errored: bool, idle: bool) -> TxnStatus {
        let timeout = self.settings().idle_in_transaction_timeout();
        let mut txn = self.txn.lock().await;
        if errored {
            txn.fail();
        }
        if idle {
            Txn::went_idle(&self.txn, &mut txn, timeout, &self.node);
        }
        txn.status()
    }

    /// Returns once no COMMIT of this session is being replicated: as in Postgres, a cancel
    /// that arrives while a COMMIT is in flight waits for it (the client must learn whether it
    /// committed).
    pub async fn commit_settled(&self) {
        while self.committing.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Runs a simple-protocol query string: its statements in order, stopping at the first
    /// error; returns what each produced and the error, if any.
    pub async fn execute(&self, query: &str) -> (Vec<Produced>, Option<ClientError>) {
        tracing::debug!(query, "simple query");
        let mut translated = match translate(query) {
            Ok(t) => t,
            Err(e) => return (Vec::new(), Some(e.into())),
        };
        for t in &mut translated {
            self.type_aggregates(t).await;
        }
        let batch = translated.into_iter().map(|t| (t, Vec::new())).collect();
        // Boxed: the statement paths nest deeply, and callers select on this future.
        Box::pin(self.run_copying(batch)).await
    }

    /// Runs a prepared statement with its parameters (one per `param_count`). Rows are
    /// described with the columns Parse described, which must not have changed.
    pub async fn execute_prepared(
        &self,
        prepared: &Prepared,
        params: Vec<Value>,
    ) -> Result<Produced, ClientError> {
        let mut params: Vec<EngineValue> = params.into_iter().map(Value::into_engine).collect();
        params.truncate(prepared.translated.param_count);
        let (produced, error) =
            Box::pin(self.run_copying(vec![(prepared.translated.clone(), params)])).await;
        if let Some(e) = error {
            return Err(e);
        }
        let p = produced
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::new("XX000", "statement produced no result"))?;
        match p {
            Produced::Rows {
                columns,
                rows,
                tag,
                hints,
            } if !prepared.columns.is_empty() => {
                if prepared.columns.len() != columns.len() {
                    return Err(ClientError::new(
                        "0A000",
                        "cached plan must not change result type",
                    ));
                }
                Ok(Produced::Rows {
                    columns: prepared.columns.clone(),
                    rows,
                    tag,
                    hints,
                })
            }
            p => Ok(p),
        }
    }

    /// Types the result columns that aggregate a table column (`sum(balance)` is `bigint` for
    /// an `integer` column) from the declared types of the statement's column probe, described
    /// on the state the statement will run on: an open block's own (where a table the block
    /// created exists), else this node's latest. Where the probe does not describe (a table
    /// created earlier in the same query string), those columns stay untyped, as SQLite
    /// reports them.
    async fn type_aggregates(&self, t: &mut Translated) {
        let mut txn = self.txn.lock().await;
        self.type_aggregates_in(&mut txn, t).await;
    }

    /// [`Session::type_aggregates`] with the block already in hand (a cursor's query).
    pub(crate) async fn type_aggregates_in(&self, txn: &mut Txn, t: &mut Translated) {
        let Some(probe) = t.column_probe.take() else {
            return;
        };
        let timeout = self.settings().statement_timeout();
        let stmt = Statement::plain(probe, Vec::new());
        let in_block = describe_in_block(&self.node, txn, &stmt, timeout).await;
        let described = match in_block {
            Some(d) => d.map_err(|_| ()),
            None => self
                .node
                .read(timeout, move |v| {
                    v.describe(&stmt)
                        .map(|(cols, _)| cols)
                        .map_err(EngineError::from)
                })
                .await
                .map_err(|_| ()),
        };
        let Ok(columns) = described else {
            return;
        };
        for hint in &mut t.columns {
            if let Some((aggregate, i)) = hint.of_column.take() {
                let decl = columns.get(i).and_then(|c| c.decl_type.as_deref());
                let arg = decl.and_then(sqlkeeper_sql::pg_type_of_name);
                hint.pg_type = arg.and_then(|arg| aggregate.result_type(arg));
                if arg == Some(PgType::Numeric) && aggregate.keeps_scale() {
                    hint.numeric_typmod = decl.map(sqlkeeper_sql::pg_typmod_of_name);
                }
            }
        }
    }

    /// The description of the block's cursor `name` (a Describe of the portal of that name,
    /// as psycopg 3 sends after `DECLARE`), if it has one open.
    pub async fn cursor_description(&self, name: &str) -> Option<(Vec<Column>, Vec<ColumnHint>)> {
        crate::cursor::description(&self.txn.lock().await.cursors, name)
    }

    /// Translates and describes one statement for Parse. An error fails an open block, as
    /// in Postgres.
    pub async fn prepare(&self, sql: &str) -> Result<Option<Prepared>, ClientError> {
        self.begin_message().await?;
        let r = self.prepare_checked(sql).await;
        if r.is_err() {
            self.txn.lock().await.fail();
        }
        r
    }

    pub(crate) async fn prepare_checked(&self, sql: &str) -> Result<Option<Prepared>, ClientError> {
        let mut translated = translate(sql)?;
        if translated.len() > 1 {
            return Err(ClientError::new(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(mut t) = translated.pop() else {
            return Ok(None);
        };
        self.type_aggregates(&mut t).await;
        if let Some(e) = crate::values::literal_cast_error(&t) {
            return Err(e);
        }
        // Converted once, here, as PostgreSQL converts them at Parse: its executions need not
        // convert them again.
        t.literal_casts.clear();
        {
            let mut txn = self.txn.lock().await;
            if txn.phase == Phase::Failed
                && !matches!(
                    t.kind,
                    StatementKind::Transaction(
                        TxnOp::Rollback | TxnOp::Commit | TxnOp::RollbackTo(_)
                    )
                )
            {
                return Err(aborted());
            }
            // FETCH from a cursor of the block: described as the cursor.
            if let StatementKind::Cursor(CursorOp::Fetch { name, .. }) = &t.kind {
                if let Some((columns, hints)) = crate::cursor::description(&txn.cursors, name) {
                    let mut t = t;
                    t.columns = hints;
                    return Ok(Some(Prepared {
                        param_types: Vec::new(),
                        translated: t,
                        columns,
                    }));
                }
            }
            if matches!(t.kind, StatementKind::Read | StatementKind::Write) && t.sqlite.len() == 1 {
                let timeout = self.settings().statement_timeout();
                if let Some(r) =
                    describe_in_block(&self.node, &mut txn, &described_statement(&t), timeout).await
                {
                    let columns = r?;
                    let probe = match &t.param_probe {
                        Some(p) => describe_in_block(
                            &self.node,
                            &mut txn,
                            &Statement::plain(p.clone(), Vec::new()),
                            timeout,
                        )
                        .await
                        .and_then(Result::ok),
                        None => None,
                    };
                    return Ok(Some(Prepared {
                        param_types: param_types(&t, probe.as_deref()),
                        translated: t,
                        columns: columns_from(columns),
                    }));
                }
            }
        }
        if matches!(t.kind, StatementKind::Read | StatementKind::Write) {
            let (token, timeout, mode) = {
                let s = self.settings();
                (s.token(), s.read_timeout(), s.read_consistency())
            };
            if mode == ReadConsistency::Linearizable {
                // Describe against the state the statement will read: every acknowledged write.
                self.linearize(timeout).await?;
            } else {
                self.wait_for_token(token, timeout).await?;
            }
        }
        let mut probe = None;
        let columns = match &t.kind {
            StatementKind::Read | StatementKind::Write if t.sqlite.len() == 1 => {
                let timeout = self.settings().statement_timeout();
                let describe_sql = |stmt: Statement| {
                    self.node.read(timeout, move |v| {
                        v.describe(&stmt)
                            .map(|(cols, _)| cols)
                            .map_err(EngineError::from)
                    })
                };
                let describe = || describe_sql(described_statement(&t));
                let described = match describe().await {
                    Ok(cols) => cols,
                    // A write runs on the leader, whose schema may be ahead of this node's: a
                    // table created moments ago elsewhere is not here yet. Catch up to the
                    // leader's commit before concluding that it does not exist.
                    Err(_) if t.kind == StatementKind::Write => {
                        let timeout = self.settings().read_timeout();
                        self.linearize(timeout).await?;
                        describe().await.map_err(ClientError::from)?
                    }
                    Err(e) => return Err(ClientError::from(e)),
                };
                if let Some(p) = &t.param_probe {
                    probe = describe_sql(Statement::plain(p.clone(), Vec::new()))
                        .await
                        .ok();
                }
                described
            }
            StatementKind::Session(SessionOp::Show(name)) if name == "all" => {
                ["name", "setting", "description"]
                    .iter()
                    .map(|n| sqlkeeper_engine::Column {
                        name: n.to_string(),
                        decl_type: Some("text".into()),
                    })
                    .collect()
            }
            StatementKind::Session(SessionOp::Show(name)) => vec![sqlkeeper_engine::Column {
                name: name.clone(),
                decl_type: None,
            }],
            StatementKind::Session(SessionOp::SetConfig { .. }) => {
                vec![sqlkeeper_engine::Column {
                    name: "set_config".into(),
                    decl_type: None,
                }]
            }
            StatementKind::Admin(call) => admin_columns(call),
            StatementKind::Introspection => {
                let tables = introspection_tables(&self.node, false).await;
                let stmt = Statement::plain(
                    t.sqlite.first().cloned().unwrap_or_default(),
                    (0..t.param_count).map(|_| EngineValue::Null).collect(),
                );
                tokio::task::spawn_blocking(move || query_scratch("sqlkeeper", &tables, &stmt))
                    .await
                    .map_err(|e| ClientError::new("XX000", format!("describe: {e}")))?
                    .map_err(ClientError::from)?
                    .columns
            }
            _ => Vec::new(),
        };
        Ok(Some(Prepared {
            param_types: param_types(&t, probe.as_deref()),
            translated: t,
            columns: columns_from(columns),
        }))
    }
}
