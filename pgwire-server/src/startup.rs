//! Connection start-up: protocol negotiation, authentication (SCRAM-SHA-256 when a password
//! is configured, `auth.rs`; otherwise trust, which the binary allows on loopback only), and
//! the server parameters clients read.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Sink;
use futures::SinkExt;
use pgwire::api::auth::sasl::{SCRAM_SHA_256_METHOD, SCRAM_SHA_256_PLUS_METHOD};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
    DefaultServerParameterProvider, StartupHandler,
};
use pgwire::api::{
    ClientInfo, ConnectionGuard, ConnectionHandle, ConnectionManager, PgWireConnectionState,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, METADATA_USER,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use sqlkeeper_session::{ClientError, Sessions, SERVER_VERSION};

use crate::auth::{failed, ChannelBinding, ClientAuth, Exchange};
use crate::errors::IntoPgWire;
use crate::tls::Tls;

/// Start-up handler shared by all connections.
pub(crate) struct Startup {
    params: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
    /// Registry of running queries, for CancelRequest.
    manager: Arc<ConnectionManager>,
    /// What a client must prove (SCRAM-SHA-256); `None`: trust (loopback only).
    auth: Option<Arc<ClientAuth>>,
    /// Refuse a StartupMessage that did not come over TLS.
    tls_required: bool,
    /// SCRAM-SHA-256-PLUS on TLS connections, bound to the node's certificate.
    channel_binding: Option<ChannelBinding>,
    /// Where roles are looked up.
    sessions: Sessions,
}

impl Startup {
    /// Whether clients prove a password (else trust).
    pub(crate) fn checks_passwords(&self) -> bool {
        self.auth.is_some()
    }

    pub(crate) fn new(
        manager: Arc<ConnectionManager>,
        auth: Option<Arc<ClientAuth>>,
        tls: Option<&Tls>,
        sessions: Sessions,
    ) -> Startup {
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = SERVER_VERSION.to_string();
        params.date_style = "ISO, MDY".to_string();
        params.time_zone = "UTC".to_string();
        Startup {
            params,
            pids: RandomPidSecretKeyGenerator::default(),
            manager,
            auth,
            tls_required: tls.is_some_and(|t| t.required),
            channel_binding: tls.and_then(|t| ChannelBinding::of_certificate(&t.cert_pem)),
            sessions,
        }
    }

    /// The channel binding of `client`'s connection, when it is TLS and the certificate has one.
    fn bound<C: ClientInfo>(&self, client: &C) -> Option<&ChannelBinding> {
        self.channel_binding.as_ref().filter(|_| client.is_secure())
    }

    /// The client is in: its key for CancelRequest, then AuthenticationOk, the server
    /// parameters and ReadyForQuery.
    async fn admit<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, key.clone());
        let (handle, guard) = self.manager.register(pid, key);
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert::<ConnectionGuard>(guard);
        finish_authentication(client, &self.params).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            if self.tls_required && !client.is_secure() {
                let param = |k: &str| startup.parameters.get(k).cloned().unwrap_or_default();
                let user = param("user");
                let database = Some(param("database"))
                    .filter(|d| !d.is_empty())
                    .unwrap_or_else(|| user.clone());
                return Err(ClientError::fatal(
                    "28000",
                    format!(
                        "no pg_hba.conf entry for host \"{}\", user \"{user}\", database \"{database}\", no encryption",
                        client.socket_addr().ip()
                    ),
                )
                .into_pgwire());
            }
        }
        match (message, &self.auth) {
            (PgWireFrontendMessage::Startup(ref startup), None) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                tracing::debug!(user = ?client.metadata().get("user"), "client authenticated (trust)");
                self.admit(client).await?;
            }
            // SCRAM-SHA-256, and on TLS first SCRAM-SHA-256-PLUS, as PostgreSQL offers them:
            // AuthenticationSASL, then the client's first message and the server's, then the
            // client's proof and the server's signature.
            (PgWireFrontendMessage::Startup(ref startup), Some(_)) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                let mut mechanisms = vec![SCRAM_SHA_256_METHOD.to_string()];
                if self.bound(client).is_some() {
                    mechanisms.insert(0, SCRAM_SHA_256_PLUS_METHOD.to_string());
                }
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        mechanisms,
                    )))
                    .await?;
            }
            (PgWireFrontendMessage::PasswordMessageFamily(m), Some(auth)) => {
                let exchange = client
                    .session_extensions()
                    .get_or_insert_with(Exchange::default);
                let waiting = exchange.0.lock().ok().and_then(|mut w| w.take());
                match waiting {
                    None => {
                        let initial = m
                            .into_sasl_initial_response()
                            .map_err(|_| failed(&user).into_pgwire())?;
                        let bound = self.bound(client);
                        let offered = initial.auth_method == SCRAM_SHA_256_METHOD
                            || initial.auth_method == SCRAM_SHA_256_PLUS_METHOD && bound.is_some();
                        if !offered {
                            return Err(ClientError::fatal(
                                "28000",
                                "SASL authentication mechanism not supported",
                            )
                            .into_pgwire());
                        }
                        let data = initial.data.unwrap_or_default();
                        let login = self.sessions.login(&user).await.map_err(|e| {
                            tracing::warn!(user, error = %e.message, "role lookup failed");
                            failed(&user).into_pgwire()
                        })?;
                        let (verifier, may_log_in) = auth.verifier_of(&user, login);
                        let (first, waiting) = auth
                            .first(&user, verifier, &data, bound)
                            .map_err(IntoPgWire::into_pgwire)?;
                        if let Ok(mut w) = exchange.0.lock() {
                            *w = Some((waiting, may_log_in));
                        }
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(Bytes::from(first)),
                            ))
                            .await?;
                    }
                    Some((waiting, may_log_in)) => {
                        let response = m
                            .into_sasl_response()
                            .map_err(|_| failed(&user).into_pgwire())?;
                        let last =
                            waiting
                                .on_client_final_message(&response.data)
                                .map_err(|_| {
                                    tracing::info!(user, "password authentication failed");
                                    failed(&user).into_pgwire()
                                })?;
                        if !may_log_in {
                            return Err(ClientError::fatal(
                                "28000",
                                format!("role \"{user}\" is not permitted to log in"),
                            )
                            .into_pgwire());
                        }
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLFinal(Bytes::from(last)),
                            ))
                            .await?;
                        tracing::debug!(user, "client authenticated (SCRAM-SHA-256)");
                        self.admit(client).await?;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
