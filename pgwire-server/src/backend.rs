//! The query handlers of one connection: turn protocol messages into calls on the
//! connection's session (`sqlkeeper_session`) and what it produced back into messages.

use std::fmt::Debug;
use std::sync::Arc;

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
use pgwire::messages::data::{NoData, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    Describe, TARGET_TYPE_BYTE_PORTAL, TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::PgWireBackendMessage;
use sqlkeeper_session::{Between, Produced, Session, TxnStatus};
use sqlkeeper_sql::CommandTag;

use crate::copy::{copy_out, CopyOut, CopyReader};
use crate::encode::{decode_param, encode_row, fields, fields_for_rows};
use crate::errors::{ClientError, IntoPgWire};
use futures::future::{select, Either};
use pgwire::api::copy::CopyHandler;
use pgwire::api::query::{
    send_execution_response, send_partial_query_response, send_query_response, send_ready_for_query,
};
use pgwire::api::{ConnectionHandle, PgWireConnectionState};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyInResponse, CopyOutResponse};
use pgwire::messages::extendedquery::{Bind, BindComplete, Execute, Sync as PgSync};
use pgwire::messages::response::{EmptyQueryResponse, ReadyForQuery, TransactionStatus};
use pgwire::messages::simplequery::Query;
use sqlkeeper_session::CopyIn;
use sqlkeeper_sql::CopyFormat;

/// A statement prepared with the extended protocol: the session's prepared statement and the
/// parameter types Parse settled on.
#[derive(Debug, Clone)]
pub struct Prepared {
    prepared: sqlkeeper_session::Prepared,
    param_types: Vec<Type>,
}

/// Query handlers for one connection.
pub(crate) struct Backend {
    session: Arc<Session>,
    parser: Arc<Parser>,
    /// The `COPY ... FROM STDIN` whose rows are arriving. A std mutex: never held across an
    /// await.
    copy: std::sync::Mutex<Option<Incoming>>,
}

/// A `COPY ... FROM STDIN` in progress: its target, and its reader, or the error that ended
/// reading (reported at CopyDone, as PostgreSQL reports it once the client stops sending).
struct Incoming {
    copy: CopyIn,
    reader: Result<CopyReader, ClientError>,
}

/// What one statement's result becomes on the wire.
enum Reply {
    /// A response pgwire knows how to send.
    Pg(Response),
    /// `COPY ... TO STDOUT`: CopyOutResponse, the data, CopyDone, `COPY n`.
    CopyOut(CopyOut),
    /// `COPY ... FROM STDIN`: CopyInResponse, then the client sends the rows.
    CopyIn(CopyIn),
}

/// Sends a `COPY ... TO STDOUT`'s messages, ending with its `COPY n` CommandComplete.
async fn send_copy_out<C>(client: &mut C, out: CopyOut) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let formats = vec![i16::from(out.format); out.columns];
    let columns = i16::try_from(out.columns).unwrap_or(i16::MAX);
    client
        .feed(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            out.format, columns, formats,
        )))
        .await?;
    for data in out.messages {
        client
            .feed(PgWireBackendMessage::CopyData(CopyData::new(data)))
            .await?;
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    client
        .feed(PgWireBackendMessage::CommandComplete(
            Tag::new("COPY").with_rows(out.rows).into(),
        ))
        .await?;
    Ok(())
}

/// Parses and describes statements for the extended protocol.
pub(crate) struct Parser {
    session: Arc<Session>,
}

/// The ReadyForQuery status byte for a session's state.
fn ready_status(s: TxnStatus) -> TransactionStatus {
    match s {
        TxnStatus::Idle => TransactionStatus::Idle,
        TxnStatus::InBlock => TransactionStatus::Transaction,
        TxnStatus::Failed => TransactionStatus::Error,
    }
}

impl Backend {
    pub(crate) fn new(session: Session) -> Backend {
        let session = Arc::new(session);
        Backend {
            parser: Arc::new(Parser {
                session: session.clone(),
            }),
            session,
            copy: std::sync::Mutex::default(),
        }
    }

    fn incoming(&self) -> std::sync::MutexGuard<'_, Option<Incoming>> {
        self.copy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends CopyInResponse and waits for the rows (`CopyHandler`).
    async fn start_copy_in<C>(
        &self,
        client: &mut C,
        copy: CopyIn,
        extended: bool,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let format = i8::from(copy.spec.format == CopyFormat::Binary);
        let columns = i16::try_from(copy.columns.len()).unwrap_or(i16::MAX);
        let formats = vec![i16::from(format); copy.columns.len()];
        let reader = CopyReader::new(copy.spec.clone(), &copy.columns);
        *self.incoming() = Some(Incoming {
            copy,
            reader: Ok(reader),
        });
        client.set_state(PgWireConnectionState::CopyInProgress(extended));
        client
            .send(PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
                format, columns, formats,
            )))
            .await?;
        Ok(())
    }

    /// Tells the session who connected, to what (after start-up).
    pub(crate) fn introduce(&self, c: sqlkeeper_session::Connection) {
        self.session.set_connection(c);
    }

    /// Where the session stands between messages.
    pub(crate) fn between(&self) -> Between {
        self.session.between()
    }

    /// Fails an open block after an error the connection loop answered itself.
    pub(crate) async fn fail_block(&self) {
        self.session.fail_block().await
    }

    async fn finish_message(&self, errored: bool, idle: bool) -> TransactionStatus {
        ready_status(self.session.finish_message(errored, idle).await)
    }
}

/// Counts a statement that succeeded by its command (the words of its tag before any count:
/// `INSERT`, `CREATE TABLE`, `SELECT`), a set as bounded as PostgreSQL's command tags.
fn count_statement(p: &Produced) {
    // A static label where the command is known statically: no allocation per statement.
    let command: std::borrow::Cow<'static, str> = match p {
        Produced::Done(tag) | Produced::Setting { tag, .. } => {
            // Up to the first word that is a count: "INSERT 0 1" is INSERT.
            let end = tag
                .match_indices(' ')
                .find(|(i, _)| tag[i + 1..].starts_with(|c: char| c.is_ascii_digit()))
                .map_or(tag.len(), |(i, _)| i);
            tag[..end].to_string().into()
        }
        Produced::CopyOut { .. } | Produced::CopyIn(_) => "COPY".into(),
        Produced::Rows { tag, .. } => match tag {
            CommandTag::Select => "SELECT",
            CommandTag::Insert => "INSERT",
            CommandTag::Update => "UPDATE",
            CommandTag::Delete => "DELETE",
            CommandTag::Fixed(t) => t,
            CommandTag::Copy => "COPY",
            CommandTag::Fetch => "FETCH",
        }
        .into(),
    };
    metrics::counter!("sqlkeeper_statements_total", "command" => command).increment(1);
}

/// Turns what a statement produced into a response, with result columns in the formats
/// `format` gives. `described`: the client was (or can be) sent the row description before
/// the statement ran (the extended protocol), so the columns keep the types it gave;
/// otherwise the row description goes out with the rows, and untyped expression columns are
/// typed by their values (`encode::fields_for_rows`).
fn respond(
    p: Produced,
    described: bool,
    format: impl Fn(usize) -> FieldFormat,
) -> Result<Reply, ClientError> {
    count_statement(&p);
    match p {
        Produced::Done(tag) => Ok(Reply::Pg(Response::Execution(Tag::new(&tag)))),
        Produced::Setting { tag, .. } => Ok(Reply::Pg(Response::Execution(Tag::new(&tag)))),
        Produced::CopyOut {
            spec,
            columns,
            rows,
            hints,
        } => Ok(Reply::CopyOut(copy_out(&spec, &columns, &hints, &rows)?)),
        Produced::CopyIn(c) => Ok(Reply::CopyIn(c)),
        Produced::Rows {
            columns,
            rows,
            tag,
            hints,
        } => {
            let schema = Arc::new(match described {
                true => fields(&columns, &hints, format),
                false => fields_for_rows(&columns, &hints, &rows, format),
            });
            let mut enc = DataRowEncoder::new(schema.clone());
            let mut encoded = Vec::with_capacity(rows.len());
            for row in rows {
                encoded.push(Ok(encode_row(&mut enc, &row, &schema, &hints)?));
            }
            let mut q = QueryResponse::new(schema, stream::iter(encoded));
            let prefix = match tag {
                CommandTag::Select => "SELECT",
                CommandTag::Insert => "INSERT 0",
                CommandTag::Update => "UPDATE",
                CommandTag::Delete => "DELETE",
                CommandTag::Fixed(t) => t,
                CommandTag::Copy => "COPY",
                CommandTag::Fetch => "FETCH",
            };
            q.set_command_tag(prefix);
            Ok(Reply::Pg(Response::Query(q)))
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

/// Sends the notices the session's last statements raised (`IF [NOT] EXISTS` skips), as
/// PostgreSQL does before the statement's completion.
async fn send_notices<C>(client: &mut C, session: &Session) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    for (code, message) in session.take_notices() {
        let info = pgwire::error::ErrorInfo::new("NOTICE".into(), code.into(), message);
        client
            .feed(PgWireBackendMessage::NoticeResponse(info.into()))
            .await?;
    }
    Ok(())
}

#[async_trait]
impl CopyHandler for Backend {
    async fn on_copy_data<C>(&self, _client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(incoming) = self.incoming().as_mut() {
            if let Ok(reader) = &mut incoming.reader {
                if let Err(e) = reader.feed(&data.data) {
                    incoming.reader = Err(e);
                }
            }
        }
        Ok(())
    }

    /// Writes the rows and answers `COPY n`; pgwire sends ReadyForQuery (simple protocol) or
    /// waits for the client's Sync (extended).
    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let incoming = self.incoming().take();
        let Some(incoming) = incoming else {
            return Err(ClientError::new("08P01", "CopyDone outside COPY").into_pgwire());
        };
        let result = match incoming.reader.and_then(CopyReader::finish) {
            Ok(rows) => self.session.copy_in(&incoming.copy, rows).await,
            Err(e) => Err(e),
        };
        let status = self.finish_message(result.is_err(), true).await;
        client.set_transaction_status(status);
        send_notices(client, &self.session).await?;
        match result {
            Ok(tag) => {
                client
                    .send(PgWireBackendMessage::CommandComplete(Tag::new(&tag).into()))
                    .await?;
                Ok(())
            }
            // In the extended protocol the connection then waits for the client's Sync
            // (`conn.rs` reads the COPY's messages as extended-protocol ones).
            Err(e) => Err(e.into_pgwire()),
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.incoming().take();
        let status = self.finish_message(true, true).await;
        client.set_transaction_status(status);
        ClientError::new("57014", format!("COPY from stdin failed: {}", fail.message)).into_pgwire()
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
        self.session
            .begin_message()
            .await
            .map_err(ClientError::into_pgwire)?;
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut errored = false;
        let mut copying = false;
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
                    let session = self.session.clone();
                    let cancel = Box::pin(async move {
                        let _ = cancel.await;
                        session.commit_settled().await;
                    });
                    match select(Box::pin(self.replies(client, &query.query)), cancel).await {
                        Either::Left((r, _)) => r,
                        Either::Right(_) => Err(PgWireError::QueryCanceled),
                    }
                }
                None => self.replies(client, &query.query).await,
            }?;
            for r in resp {
                let r = match r {
                    Reply::Pg(r) => r,
                    Reply::CopyOut(out) => {
                        send_copy_out(client, out).await?;
                        continue;
                    }
                    Reply::CopyIn(c) => {
                        self.start_copy_in(client, c, false).await?;
                        copying = true;
                        continue;
                    }
                };
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
                        return Err(
                            ClientError::new("XX000", "unexpected COPY response").into_pgwire()
                        )
                    }
                }
            }
            Ok(())
        }
        .await;
        if copying && result.is_ok() {
            // The client sends the rows next; `on_copy_done` answers and sends ReadyForQuery.
            return Ok(());
        }
        let status = self.finish_message(errored || result.is_err(), true).await;
        client.set_transaction_status(status);
        result?;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        send_ready_for_query(client, status).await
    }

    /// Not used: `on_query` calls [`Backend::replies`], which also carries COPY.
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.replies(client, query)
            .await?
            .into_iter()
            .map(|r| match r {
                Reply::Pg(r) => Ok(r),
                _ => Err(ClientError::new("0A000", "COPY through do_query").into_pgwire()),
            })
            .collect()
    }
}

impl Backend {
    /// Runs a simple-protocol query string: what each statement produced, as replies.
    async fn replies<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Reply>>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (produced, error) = self.session.execute(query).await;
        report_settings(client, &produced).await?;
        send_notices(client, &self.session).await?;
        let mut responses = Vec::with_capacity(produced.len() + 1);
        for p in produced {
            match respond(p, false, |_| FieldFormat::Text) {
                Ok(r) => responses.push(r),
                Err(e) => {
                    responses.push(Reply::Pg(Response::Error(Box::new(e.into_info()))));
                    return Ok(responses);
                }
            }
        }
        if let Some(e) = error {
            if responses.is_empty() {
                return Err(e.into_pgwire());
            }
            responses.push(Reply::Pg(Response::Error(Box::new(e.into_info()))));
        }
        Ok(responses)
    }
}

impl Backend {
    /// Runs a bound portal: what it produced, as a reply.
    async fn portal_reply<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<Reply>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
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
        let p = self
            .session
            .execute_prepared(&prepared.prepared, params)
            .await
            .map_err(ClientError::into_pgwire)?;
        report_settings(client, std::slice::from_ref(&p)).await?;
        send_notices(client, &self.session).await?;
        respond(p, true, |i| format_at(&portal.result_column_format, i))
            .map_err(ClientError::into_pgwire)
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
        let Some(prepared) = self
            .session
            .prepare(sql)
            .await
            .map_err(ClientError::into_pgwire)?
        else {
            return Ok(None);
        };
        // As in PostgreSQL, the statement has the parameters it uses and any more the client
        // declared types for; Bind must supply them all, and the unused ones are dropped.
        // A type the client left out is the one the statement gives the parameter (a column
        // it is compared with or assigned to, a cast), else text.
        let param_types = (0..prepared.param_count().max(types.len()))
            .map(|i| {
                types.get(i).cloned().flatten().unwrap_or_else(|| {
                    prepared
                        .param_type(i)
                        .map_or(Type::TEXT, crate::encode::declared_type)
                })
            })
            .collect();
        Ok(Some(Prepared {
            prepared,
            param_types,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.param_types.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(fields(
            stmt.prepared.columns(),
            stmt.prepared.hints(),
            |i| {
                column_format
                    .map(|f| format_at(f, i))
                    .unwrap_or(FieldFormat::Text)
            },
        ))
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
                let columns = statement.statement.prepared.columns().len();
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
        self.session
            .begin_message()
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

    /// Not used: `execute_portal` calls [`Backend::portal_reply`], which also carries COPY.
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
        match self.portal_reply(client, portal).await? {
            Reply::Pg(r) => Ok(r),
            _ => Err(ClientError::new("0A000", "COPY through do_query").into_pgwire()),
        }
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
            fields(p.prepared.columns(), p.prepared.hints(), |_| {
                FieldFormat::Text
            }),
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
            p.prepared.columns(),
            p.prepared.hints(),
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
        // A cursor's name is a portal's in PostgreSQL: psycopg 3 describes it after DECLARE.
        if message.target_type == TARGET_TYPE_BYTE_PORTAL {
            let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
            if client.portal_store().get_portal(name).is_none() {
                if let Some((columns, hints)) = self.session.cursor_description(name).await {
                    let fields = fields(&columns, &hints, |_| FieldFormat::Text);
                    client
                        .send(PgWireBackendMessage::RowDescription(RowDescription::new(
                            fields.iter().map(Into::into).collect(),
                        )))
                        .await?;
                    return Ok(());
                }
            }
        }
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
                    match select(Box::pin(self.portal_reply(client, &portal)), cancel).await {
                        Either::Left((r, _)) => r,
                        Either::Right(_) => Err(PgWireError::QueryCanceled),
                    }
                }
                None => self.portal_reply(client, &portal).await,
            }?;
            let response = match response {
                Reply::Pg(r) => r,
                Reply::CopyOut(out) => {
                    send_copy_out(client, out).await?;
                    client.set_state(PgWireConnectionState::ReadyForQuery);
                    return Ok(());
                }
                Reply::CopyIn(c) => {
                    // CopyData follows; `on_copy_done` answers, the client's Sync gets
                    // ReadyForQuery.
                    return self.start_copy_in(client, c, true).await;
                }
            };
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
