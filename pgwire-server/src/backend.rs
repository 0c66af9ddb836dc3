//! The query handlers of one connection: turn protocol messages into calls on the node and
//! results back into messages. Decisions about SQL live in `sqlkeeper_sql`; decisions about
//! where and how a statement runs live in the node.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    DataRowEncoder, DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo,
    QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{ClientInfo, ClientPortalStore, Type, DEFAULT_NAME};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{Describe, TARGET_TYPE_BYTE_STATEMENT};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;
use sqlkeeper_engine::{
    query_scratch, Column, EngineError, LogIndex, ScratchTable, Statement, Value,
};
use sqlkeeper_raft::{AdminOp, Node, NodeInfo};
use sqlkeeper_sql::{
    translate, AdminCall, ColumnHint, CommandTag, SessionOp, StatementKind, Translated, TxnOp,
};

use crate::encode::{decode_param, encode_value, fields};
use crate::errors::ClientError;
use crate::session::{ReadConsistency, Session};
use crate::txn::{aborted, begin_message, describe_in_block, Phase, Txn};
use futures::future::{select, Either};
use pgwire::api::query::{
    send_execution_response, send_partial_query_response, send_query_response, send_ready_for_query,
};
use pgwire::api::{ConnectionHandle, PgWireConnectionState};
use pgwire::messages::extendedquery::{Bind, BindComplete, Execute, Sync as PgSync};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;

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
    param_types: Vec<Type>,
    columns: Vec<Column>,
}

/// What one statement produced, before it is turned into protocol messages.
pub(crate) enum Produced {
    Rows {
        columns: Vec<Column>,
        rows: Vec<Vec<Value>>,
        tag: CommandTag,
        /// Postgres names and types of the columns, from the translator.
        hints: Vec<ColumnHint>,
    },
    Done(String),
    /// A setting changed that the client must be told about.
    Setting {
        tag: String,
        name: String,
        value: String,
    },
}

impl Produced {
    /// Rows of a read (or a write with RETURNING), with the translator's column hints.
    pub(crate) fn rows(r: sqlkeeper_engine::StatementResult, t: &Translated) -> Produced {
        Produced::Rows {
            columns: r.columns,
            rows: r.rows,
            tag: t.tag.clone(),
            hints: t.columns.clone(),
        }
    }
}

/// Query handlers for one connection.
pub(crate) struct Backend {
    pub(crate) node: Arc<Node>,
    /// This connection's settings. A std mutex: never held across an await.
    session: Arc<Mutex<Session>>,
    parser: Arc<Parser>,
    /// The connection's transaction block. A tokio mutex: held while a statement runs.
    pub(crate) txn: Arc<tokio::sync::Mutex<Txn>>,
    /// Set while a COMMIT is being replicated: a cancel request waits for it.
    pub(crate) committing: Arc<std::sync::atomic::AtomicBool>,
}

/// Parses and describes statements for the extended protocol.
pub(crate) struct Parser {
    node: Arc<Node>,
    /// The connection's session, shared with the Backend: describing a statement must see a
    /// state at least as new as the session's token, as its reads do.
    session: Arc<Mutex<Session>>,
    /// The transaction block, shared with the Backend: inside one, statements are described
    /// against the block's own state.
    txn: Arc<tokio::sync::Mutex<Txn>>,
}

impl Backend {
    pub(crate) fn new(node: Arc<Node>) -> Backend {
        let session = Arc::new(Mutex::new(Session::default()));
        let txn = Arc::new(tokio::sync::Mutex::new(Txn::default()));
        Backend {
            parser: Arc::new(Parser {
                node: node.clone(),
                session: session.clone(),
                txn: txn.clone(),
            }),
            node,
            session,
            txn,
            committing: Arc::default(),
        }
    }

    pub(crate) fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn session_op(&self, op: &SessionOp) -> Result<Produced, ClientError> {
        let mut s = self.session();
        match op {
            SessionOp::Show(name) => {
                let value = s.show(name).ok_or_else(|| {
                    ClientError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                Ok(Produced::Rows {
                    columns: vec![Column {
                        name: name.clone(),
                        decl_type: None,
                    }],
                    rows: vec![vec![Value::Text(value)]],
                    tag: CommandTag::Fixed("SHOW"),
                    hints: Vec::new(),
                })
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

    /// Makes this node's state recent enough for the session's read consistency.
    pub(crate) async fn before_read(&self) -> Result<(), ClientError> {
        let (mode, timeout, token, max_staleness) = {
            let s = self.session();
            (
                s.read_consistency(),
                s.read_timeout(),
                s.token(),
                s.max_staleness(),
            )
        };
        match mode {
            ReadConsistency::Sequential => {
                if token > 0 {
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
                        })?;
                }
            }
            ReadConsistency::Linearizable => {
                let index = self
                    .node
                    .linearizable_barrier(timeout)
                    .await
                    .map_err(ClientError::from)?;
                self.session().observe(index.0);
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

    async fn read_one(&self, t: &Translated, params: Vec<Value>) -> Result<Produced, ClientError> {
        self.read_one_at(t, params, sqlkeeper_engine::local_stamp())
            .await
    }

    /// A read on the latest state this node has (after the session's consistency wait), with
    /// the time and randomness of `stamp`.
    pub(crate) async fn read_one_at(
        &self,
        t: &Translated,
        params: Vec<Value>,
        stamp: sqlkeeper_engine::Stamp,
    ) -> Result<Produced, ClientError> {
        self.before_read().await?;
        let stmts: Vec<Statement> = t
            .sqlite
            .iter()
            .map(|sql| Statement {
                sql: sql.clone(),
                params: params.clone(),
            })
            .collect();
        let tag = t.tag.clone();
        let timeout = self.session().statement_timeout();
        let (mut results, applied) = self
            .node
            .read_at(stamp, timeout, move |view| {
                let mut out = Vec::with_capacity(stmts.len());
                for s in &stmts {
                    out.push(view.query(s).map_err(EngineError::from)?);
                }
                Ok((out, view.applied_index()?))
            })
            .await?;
        if let Some(applied) = applied {
            self.session().observe(applied.0);
        }
        let last = results.pop().unwrap_or_default();
        Ok(Produced::Rows {
            columns: last.columns,
            rows: last.rows,
            tag,
            hints: t.columns.clone(),
        })
    }

    async fn admin(&self, call: &AdminCall) -> Result<Produced, ClientError> {
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
        if call.function == "state_hash" {
            // Local: the hash of this node's applied state, to compare replicas.
            let hash = self.node.state_hash().await?;
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            return Ok(Produced::Rows {
                columns: vec![Column {
                    name: "state_hash".into(),
                    decl_type: None,
                }],
                rows: vec![vec![Value::Text(hex)]],
                tag: CommandTag::Select,
                hints: Vec::new(),
            });
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
        Ok(Produced::Rows {
            columns: vec![Column {
                name: call.function.clone(),
                decl_type: None,
            }],
            rows: vec![vec![Value::Text(msg)]],
            tag: CommandTag::Select,
            hints: Vec::new(),
        })
    }

    pub(crate) async fn introspect(
        &self,
        t: &Translated,
        params: Vec<Value>,
    ) -> Result<Produced, ClientError> {
        let tables = introspection_tables(&self.node, true).await;
        let stmt = Statement {
            sql: t.sqlite.first().cloned().unwrap_or_default(),
            params,
        };
        let r = tokio::task::spawn_blocking(move || query_scratch("sqlkeeper", &tables, &stmt))
            .await
            .map_err(|e| ClientError::new("XX000", format!("introspection task: {e}")))??;
        Ok(Produced::Rows {
            columns: r.columns,
            rows: r.rows,
            tag: t.tag.clone(),
            hints: Vec::new(),
        })
    }

    /// Runs the statements of one query string in order, stopping at the first error, and
    /// returns what each produced. Several statements that change data run as one log entry
    /// (all or nothing), as Postgres runs a multi-statement query string in one implicit
    /// transaction.
    async fn run(
        &self,
        batch: Vec<(Translated, Vec<Value>)>,
    ) -> (Vec<Produced>, Option<ClientError>) {
        if self.in_block_or_control(&batch).await {
            return self.run_block(batch).await;
        }
        let writes = batch
            .iter()
            .any(|(t, _)| matches!(t.kind, StatementKind::Write | StatementKind::Ddl));
        if batch.len() > 1 && writes {
            return self.run_as_one_entry(batch).await;
        }
        let mut out = Vec::new();
        for (t, params) in batch {
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
        params: Vec<Value>,
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
            StatementKind::Transaction(_) => Err(ClientError::new(
                "XX000",
                "transaction control reached the autocommit path",
            )),
        }
    }

    async fn run_as_one_entry(
        &self,
        batch: Vec<(Translated, Vec<Value>)>,
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
            spans.push(t.sqlite.len());
            statements.extend(t.sqlite.iter().map(|sql| Statement {
                sql: sql.clone(),
                params: params.clone(),
            }));
            // What the entry will read without bound, run here first with its budget: a
            // write's probe, or a read that is part of the entry.
            let probe = match (&t.kind, &t.probe, t.sqlite.as_slice()) {
                (_, Some(p), _) => Some(p.clone()),
                (StatementKind::Read, None, [sql]) => Some(format!("SELECT count(*) FROM ({sql})")),
                _ => None,
            };
            probes.extend(probe.map(|sql| Statement {
                sql,
                params: params.clone(),
            }));
        }
        if let Err(e) = self.node.probe(probes).await {
            return (Vec::new(), Some(e.into()));
        }
        let (outcome, index) = match self.node.write(statements, WRITE_TIMEOUT).await {
            Ok(o) => o,
            Err(e) => return (Vec::new(), Some(e.into())),
        };
        self.session().observe(index.0);
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
                Produced::Rows {
                    columns: r.columns,
                    rows: r.rows,
                    tag: t.tag,
                    hints: t.columns,
                }
            });
        }
        (produced, None)
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
    let opt = |v: Option<u64>| v.map(|i| Value::Integer(i as i64)).unwrap_or(Value::Null);
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
            Value::Integer(st.node_id as i64),
            Value::Text(st.role.to_string()),
            Value::Integer(st.term as i64),
            opt(st.leader_id),
            opt(st.commit_index),
            opt(st.applied_index),
            opt(st.snapshot_index),
            opt(node.staleness().map(|d| d.as_millis() as u64)),
            Value::Integer(st.wal_bytes as i64),
        ]);
        nodes.rows = node
            .members()
            .await
            .into_iter()
            .map(|m| {
                vec![
                    Value::Integer(m.node_id as i64),
                    Value::Text(m.raft_addr),
                    m.pg_addr.map(Value::Text).unwrap_or(Value::Null),
                    Value::Text(m.role.to_string()),
                    Value::Integer(m.voter as i64),
                    opt(m.matched_index),
                ]
            })
            .collect();
    }
    vec![status, nodes]
}

/// Turns what a statement produced into a response, with result columns in the formats
/// `format` gives.
fn respond(
    p: Produced,
    described: Option<&[Column]>,
    format: impl Fn(usize) -> FieldFormat,
) -> Result<Response, ClientError> {
    match p {
        Produced::Done(tag) => Ok(Response::Execution(Tag::new(&tag))),
        Produced::Setting { tag, .. } => Ok(Response::Execution(Tag::new(&tag))),
        Produced::Rows {
            columns,
            rows,
            tag,
            hints,
        } => {
            let columns = match described {
                Some(d) if d.len() == columns.len() => d.to_vec(),
                Some(_) => {
                    return Err(ClientError::new(
                        "0A000",
                        "cached plan must not change result type",
                    ));
                }
                None => columns,
            };
            let schema = Arc::new(fields(&columns, &hints, format));
            let mut enc = DataRowEncoder::new(schema.clone());
            let mut encoded = Vec::with_capacity(rows.len());
            for row in rows {
                for (v, f) in row.iter().zip(schema.iter()) {
                    if let Err(e) = encode_value(&mut enc, v, f)? {
                        return Err(ClientError::new("XX000", format!("encode value: {e}")));
                    }
                }
                encoded.push(Ok(enc.take_row()));
            }
            let mut q = QueryResponse::new(schema, stream::iter(encoded));
            let prefix = match tag {
                CommandTag::Select => "SELECT",
                CommandTag::Insert => "INSERT 0",
                CommandTag::Update => "UPDATE",
                CommandTag::Delete => "DELETE",
                CommandTag::Fixed(t) => t,
            };
            q.set_command_tag(prefix);
            Ok(Response::Query(q))
        }
    }
}

async fn report_settings<C>(client: &mut C, produced: &[Produced]) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for p in produced {
        if let Produced::Setting { name, value, .. } = p {
            let name = match name.as_str() {
                "datestyle" => "DateStyle",
                "intervalstyle" => "IntervalStyle",
                "timezone" => "TimeZone",
                other => other,
            };
            client
                .feed(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    name.to_string(),
                    value.clone(),
                )))
                .await?;
        }
    }
    Ok(())
}

impl Backend {
    /// After a message ran: an error fails an open block; `idle` arms the block's idle timer
    /// (the client now waits on us no longer). Returns the ReadyForQuery status.
    async fn finish_message(&self, errored: bool, idle: bool) -> TransactionStatus {
        let timeout = self.session().idle_in_transaction_timeout();
        let mut txn = self.txn.lock().await;
        if errored {
            txn.fail();
        }
        if idle {
            Txn::went_idle(&self.txn, &mut txn, timeout, &self.node);
        }
        txn.status()
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    /// pgwire's default computes the ReadyForQuery status from the responses alone; the
    /// transaction block knows it exactly (`I`, `T`, `E`, as Postgres sends them).
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        begin_message(&self.txn)
            .await
            .map_err(ClientError::into_pgwire)?;
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut errored = false;
        let result: PgWireResult<()> = async {
            if query.query.chars().all(|c| c == ';' || c.is_whitespace()) {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                return Ok(());
            }
            let handle = client.session_extensions().get::<Arc<ConnectionHandle>>();
            let resp = match handle {
                Some(h) => {
                    let cancel = h.start_query().await;
                    // As in Postgres, a cancel that arrives while a COMMIT is being replicated
                    // waits for it: the client must learn whether it committed.
                    let committing = self.committing.clone();
                    let cancel = Box::pin(async move {
                        let _ = cancel.await;
                        while committing.load(std::sync::atomic::Ordering::SeqCst) {
                            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        }
                    });
                    match select(
                        SimpleQueryHandler::do_query(self, client, &query.query),
                        cancel,
                    )
                    .await
                    {
                        Either::Left((r, _)) => r,
                        Either::Right(_) => Err(PgWireError::QueryCanceled),
                    }
                }
                None => SimpleQueryHandler::do_query(self, client, &query.query).await,
            }?;
            for r in resp {
                match r {
                    Response::Query(q) => send_query_response(client, q, true).await?,
                    Response::Execution(tag)
                    | Response::TransactionStart(tag)
                    | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
                    Response::EmptyQuery => {
                        client
                            .feed(PgWireBackendMessage::EmptyQueryResponse(
                                EmptyQueryResponse::new(),
                            ))
                            .await?
                    }
                    Response::Error(e) => {
                        errored = true;
                        client
                            .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
                            .await?
                    }
                    Response::CopyIn(_) | Response::CopyOut(_) | Response::CopyBoth(_) => {
                        return Err(ClientError::new("0A000", "COPY is not supported").into_pgwire())
                    }
                }
            }
            Ok(())
        }
        .await;
        let status = self.finish_message(errored || result.is_err(), true).await;
        client.set_transaction_status(status);
        result?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        tracing::debug!(query, "simple query");
        let translated = translate(query).map_err(|e| ClientError::from(e).into_pgwire())?;
        let batch = translated.into_iter().map(|t| (t, Vec::new())).collect();
        let (produced, error) = self.run(batch).await;
        report_settings(client, &produced).await?;
        let mut responses = Vec::with_capacity(produced.len() + 1);
        for p in produced {
            match respond(p, None, |_| FieldFormat::Text) {
                Ok(r) => responses.push(r),
                Err(e) => {
                    responses.push(Response::Error(Box::new(e.into_info())));
                    return Ok(responses);
                }
            }
        }
        if let Some(e) = error {
            if responses.is_empty() {
                return Err(e.into_pgwire());
            }
            responses.push(Response::Error(Box::new(e.into_info())));
        }
        Ok(responses)
    }
}

impl Parser {
    /// Translates and describes one statement for Parse.
    async fn parse_checked(
        &self,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>> {
        let mut translated = translate(sql).map_err(|e| ClientError::from(e).into_pgwire())?;
        if translated.len() > 1 {
            return Err(ClientError::new(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            )
            .into_pgwire());
        }
        let Some(t) = translated.pop() else {
            return Ok(None);
        };
        // As in PostgreSQL, the statement has the parameters it uses and any more the client
        // declared types for; Bind must supply them all, and the unused ones are dropped.
        let param_types = (0..t.param_count.max(types.len()))
            .map(|i| types.get(i).cloned().flatten().unwrap_or(Type::TEXT))
            .collect();
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
                return Err(aborted().into_pgwire());
            }
            if matches!(t.kind, StatementKind::Read | StatementKind::Write) && t.sqlite.len() == 1 {
                let timeout = self
                    .session
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .statement_timeout();
                if let Some(r) =
                    describe_in_block(&self.node, &mut txn, &t.sqlite[0], timeout).await
                {
                    let columns = r.map_err(ClientError::into_pgwire)?;
                    return Ok(Some(Prepared {
                        translated: t,
                        param_types,
                        columns,
                    }));
                }
            }
        }
        if matches!(t.kind, StatementKind::Read | StatementKind::Write) {
            let (token, timeout, mode) = {
                let s = self.session.lock().unwrap_or_else(|p| p.into_inner());
                (s.token(), s.read_timeout(), s.read_consistency())
            };
            if mode == ReadConsistency::Linearizable {
                // Describe against the state the statement will read: every acknowledged write.
                let index = self
                    .node
                    .linearizable_barrier(timeout)
                    .await
                    .map_err(|e| ClientError::from(e).into_pgwire())?;
                self.session
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .observe(index.0);
            } else if token > 0 {
                self.node
                    .wait_applied(LogIndex(token), timeout)
                    .await
                    .map_err(|_| {
                        ClientError::new(
                            "57014",
                            format!("canceling statement: this node has not applied log index {token} within sqlkeeper.read_timeout ({timeout:?})"),
                        )
                        .into_pgwire()
                    })?;
            }
        }
        let columns = match &t.kind {
            StatementKind::Read | StatementKind::Write if t.sqlite.len() == 1 => {
                let timeout = self
                    .session
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .statement_timeout();
                let describe = || {
                    let sql = t.sqlite[0].clone();
                    self.node.read(timeout, move |v| {
                        v.describe(&sql)
                            .map(|(cols, _)| cols)
                            .map_err(EngineError::from)
                    })
                };
                match describe().await {
                    Ok(cols) => cols,
                    // A write runs on the leader, whose schema may be ahead of this node's: a
                    // table created moments ago elsewhere is not here yet. Catch up to the
                    // leader's commit before concluding that it does not exist.
                    Err(_) if t.kind == StatementKind::Write => {
                        let timeout = self
                            .session
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .read_timeout();
                        self.node
                            .linearizable_barrier(timeout)
                            .await
                            .map_err(|e| ClientError::from(e).into_pgwire())?;
                        describe()
                            .await
                            .map_err(|e| ClientError::from(e).into_pgwire())?
                    }
                    Err(e) => return Err(ClientError::from(e).into_pgwire()),
                }
            }
            StatementKind::Session(SessionOp::Show(name)) => vec![Column {
                name: name.clone(),
                decl_type: None,
            }],
            StatementKind::Admin(call) => vec![Column {
                name: call.function.clone(),
                decl_type: None,
            }],
            StatementKind::Introspection => {
                let tables = introspection_tables(&self.node, false).await;
                let stmt = Statement {
                    sql: t.sqlite.first().cloned().unwrap_or_default(),
                    params: (0..t.param_count).map(|_| Value::Null).collect(),
                };
                tokio::task::spawn_blocking(move || query_scratch("sqlkeeper", &tables, &stmt))
                    .await
                    .map_err(|e| ClientError::new("XX000", format!("describe: {e}")).into_pgwire())?
                    .map_err(|e| ClientError::from(e).into_pgwire())?
                    .columns
            }
            _ => Vec::new(),
        };
        Ok(Some(Prepared {
            translated: t,
            param_types,
            columns,
        }))
    }
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        begin_message(&self.txn)
            .await
            .map_err(ClientError::into_pgwire)?;
        let r = self.parse_checked(sql, types).await;
        if r.is_err() {
            // As in Postgres, an error at Parse fails an open block.
            self.txn.lock().await.fail();
        }
        r
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(fields(&stmt.columns, &stmt.translated.columns, |i| {
            column_format
                .map(|f| format_at(f, i))
                .unwrap_or(FieldFormat::Text)
        }))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    /// Binds a portal after PostgreSQL's checks against the statement, which pgwire's default
    /// does not make (compare with postgres' backend/tcop/postgres.c exec_bind_message). The
    /// frame guard already checked the message itself: its structure, parameter format count
    /// (0, 1 or one per value) and format codes (0 or 1).
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let supplied = message.parameters.len();
        let count_error = |required: usize| {
            let shown = message.statement_name.as_deref().unwrap_or("");
            ClientError::new(
                "08P01",
                format!(
                    "bind message supplies {supplied} parameters, but prepared statement \"{shown}\" requires {required}"
                ),
            )
            .into_pgwire()
        };
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let required = statement.statement.param_types.len();
                if supplied != required {
                    return Err(count_error(required));
                }
                check_formats(&message.parameter_format_codes, supplied)
                    .map_err(ClientError::into_pgwire)?;
                let results = message.result_column_format_codes.len();
                let columns = statement.statement.columns.len();
                if results > 1 && results != columns {
                    return Err(ClientError::new(
                        "08P01",
                        format!("bind message has {results} result formats but query has {columns} columns"),
                    )
                    .into_pgwire());
                }
                check_formats(&message.result_column_format_codes, results)
                    .map_err(ClientError::into_pgwire)?;
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                if supplied != 0 {
                    return Err(count_error(0));
                }
                let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    /// Runs the portal, then records the block's state for the next ReadyForQuery.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        begin_message(&self.txn)
            .await
            .map_err(ClientError::into_pgwire)?;
        let r = self.execute_portal(client, message).await;
        let status = self.finish_message(r.is_err(), false).await;
        client.set_transaction_status(status);
        r
    }

    /// ReadyForQuery with the block's exact status; the connection is idle from here.
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        client.portal_store().rm_portal(DEFAULT_NAME);
        // An error pgwire answered itself since the last Execute (at Bind, Describe, ...) left
        // the status at E: as in Postgres, it fails the block.
        let errored = matches!(client.transaction_status(), TransactionStatus::Error);
        let status = self.finish_message(errored, true).await;
        client.set_transaction_status(status);
        client
            .send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
                status,
            )))
            .await?;
        client.flush().await?;
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        // `on_bind` checked that one value came per parameter. Values for parameters the
        // client declared but the statement does not use are checked, then not passed on.
        let mut params = Vec::with_capacity(prepared.param_types.len());
        for (i, ty) in prepared.param_types.iter().enumerate() {
            let raw = portal.parameters.get(i).and_then(|p| p.as_deref());
            let binary = format_at(&portal.parameter_format, i) == FieldFormat::Binary;
            params.push(decode_param(i, raw, ty, binary).map_err(ClientError::into_pgwire)?);
        }
        params.truncate(prepared.translated.param_count);
        let (produced, error) = self.run(vec![(prepared.translated.clone(), params)]).await;
        if let Some(e) = error {
            return Err(e.into_pgwire());
        }
        report_settings(client, &produced).await?;
        let p = produced.into_iter().next().ok_or_else(|| {
            ClientError::new("XX000", "statement produced no result").into_pgwire()
        })?;
        let described = (!prepared.columns.is_empty()).then_some(prepared.columns.as_slice());
        respond(p, described, |i| format_at(&portal.result_column_format, i))
            .map_err(ClientError::into_pgwire)
    }

    async fn do_describe_statement<C>(
        &self,
        _client: &mut C,
        target: &StoredStatement<Prepared>,
    ) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Parse already merged the client's parameter types with the inferred ones.
        let p = &target.statement;
        Ok(DescribeStatementResponse::new(
            p.param_types.clone(),
            fields(&p.columns, &p.translated.columns, |_| FieldFormat::Text),
        ))
    }

    async fn do_describe_portal<C>(
        &self,
        _client: &mut C,
        target: &Portal<Prepared>,
    ) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let p = &target.statement.statement;
        Ok(DescribePortalResponse::new(fields(
            &p.columns,
            &p.translated.columns,
            |i| format_at(&target.result_column_format, i),
        )))
    }

    /// Postgres answers Describe of a statement with parameters but no result columns with
    /// ParameterDescription + NoData; pgwire's default would send an empty RowDescription.
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) {
                let d = self.do_describe_statement(client, &stmt).await?;
                if d.fields.is_empty() {
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(
                                d.parameters.iter().map(|t| t.oid()).collect(),
                            ),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }
}

/// The format of result column or parameter `i`. pgwire's `Format::format_for` indexes its
/// codes without a bounds check and reads an unknown code as text. `on_bind` makes sure that
/// per-item codes come one per item and are 0 or 1, so neither can happen here; if it did, the
/// item is sent as text rather than the connection panicking.
pub(crate) fn format_at(format: &Format, i: usize) -> FieldFormat {
    match format {
        Format::UnifiedText => FieldFormat::Text,
        Format::UnifiedBinary => FieldFormat::Binary,
        Format::Individual(codes) => match codes.get(i) {
            Some(&code) => FieldFormat::from(code),
            None => {
                debug_assert!(false, "format code {i} of {} was asked for", codes.len());
                FieldFormat::Text
            }
        },
    }
}

/// PostgreSQL's checks of a Bind's format codes: none, one for all, or one per item
/// (08P01), each 0 (text) or 1 (binary) (22023).
fn check_formats(codes: &[i16], items: usize) -> Result<(), ClientError> {
    if codes.len() > 1 && codes.len() != items {
        return Err(ClientError::new(
            "08P01",
            format!(
                "bind message has {} parameter formats but {items} parameters",
                codes.len()
            ),
        ));
    }
    match codes.iter().find(|c| !matches!(c, 0 | 1)) {
        Some(c) => Err(ClientError::new(
            "22023",
            format!("unsupported format code: {c}"),
        )),
        None => Ok(()),
    }
}

impl Backend {
    /// Runs a portal for Execute, as pgwire's `_on_execute` does but without its hazard:
    /// pgwire reads `max_rows` as a `usize` and preallocates that many rows, so -1 panics
    /// (capacity overflow) and `i32::MAX` asks for ~80 GiB. Here rows go to the client one by
    /// one, and a count of zero or less means all rows, as in PostgreSQL
    /// (backend/tcop/postgres.c exec_execute_message).
    async fn execute_portal<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let portal_name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let max_rows = usize::try_from(message.max_rows).unwrap_or(0);
        let portal = match client.portal_store().get_portal(portal_name) {
            Some(Entry::Value(portal)) => portal,
            Some(Entry::Empty) => {
                client
                    .feed(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                return Ok(());
            }
            None => return Err(PgWireError::PortalNotFound(portal_name.to_owned())),
        };
        client.set_state(PgWireConnectionState::QueryInProgress);
        let state = portal.state();
        let mut state = state.lock().await;
        if matches!(*state, PortalExecutionState::Initial) {
            let handle = client.session_extensions().get::<Arc<ConnectionHandle>>();
            let response = match handle {
                Some(h) => {
                    let cancel = h.start_query().await;
                    match select(
                        ExtendedQueryHandler::do_query(self, client, &portal, max_rows),
                        cancel,
                    )
                    .await
                    {
                        Either::Left((r, _)) => r,
                        Either::Right(_) => Err(PgWireError::QueryCanceled),
                    }
                }
                None => ExtendedQueryHandler::do_query(self, client, &portal, max_rows).await,
            }?;
            match response {
                Response::Query(rows) => *state = PortalExecutionState::Suspended(rows),
                Response::EmptyQuery => {
                    client
                        .feed(PgWireBackendMessage::EmptyQueryResponse(
                            EmptyQueryResponse::new(),
                        ))
                        .await?;
                }
                Response::Execution(tag)
                | Response::TransactionStart(tag)
                | Response::TransactionEnd(tag) => send_execution_response(client, tag).await?,
                Response::Error(e) => return Err(PgWireError::UserError(e)),
                Response::CopyIn(_) | Response::CopyOut(_) | Response::CopyBoth(_) => {
                    return Err(ClientError::new("0A000", "COPY is not supported").into_pgwire())
                }
            }
        }
        match &mut *state {
            PortalExecutionState::Suspended(rows) => {
                if !send_partial_query_response(client, rows, max_rows).await? {
                    *state = PortalExecutionState::Finished;
                }
            }
            // Executed to its end before: no more rows, as pgwire answers.
            PortalExecutionState::Finished => {
                client
                    .send(PgWireBackendMessage::CommandComplete(
                        Tag::new("SELECT").with_rows(0).into(),
                    ))
                    .await?;
            }
            // A statement without rows: its response was sent; it runs again next time.
            PortalExecutionState::Initial => {}
        }
        client.set_state(PgWireConnectionState::ReadyForQuery);
        Ok(())
    }
}
