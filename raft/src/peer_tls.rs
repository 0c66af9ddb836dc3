//! Mutual TLS between nodes (`--peer-tls-ca`, `--peer-tls-cert`, `--peer-tls-key`): every
//! cluster connection is encrypted, and each side proves with a certificate signed by the
//! cluster's CA that it is a member. The connecting node checks the listener's certificate
//! against the address it dialled (its IP address or host name must be in the certificate);
//! the listener requires a client certificate from the same CA. Used alone or under the
//! cluster secret's handshake ([`crate::peer_auth`]), which then runs inside the TLS stream.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A cluster connection's bytes: TCP, or TLS over it.
pub trait PeerIo: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> PeerIo for T {}

/// A cluster connection's stream, whichever it is.
pub type PeerStream = Pin<Box<dyn PeerIo>>;

/// The node's side of mutual TLS with its peers.
#[derive(Clone)]
pub struct PeerTls {
    connector: TlsConnector,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls")
    }
}

/// The certificates of the PEM file at `path` (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

impl PeerTls {
    /// Mutual TLS with the cluster CA's certificates in `ca`, and this node's certificate
    /// chain and key in `cert` and `key` (PEM files). The node's certificate serves both ways:
    /// as a server to the nodes that connect to it, as a client to those it connects to.
    pub fn from_pem_files(ca: &Path, cert: &Path, key: &Path) -> Result<PeerTls, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in certificates(ca)? {
            roots
                .add(c)
                .map_err(|e| format!("{}: not a CA certificate: {e}", ca.display()))?;
        }
        let roots = Arc::new(roots);
        let chain = certificates(cert)?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| format!("peer TLS: {e}"))?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("peer TLS: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("the peer certificate and key do not make a TLS identity: {e}"))?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("peer TLS: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the peer certificate and key do not make a TLS identity: {e}"))?;
        Ok(PeerTls {
            connector: TlsConnector::from(Arc::new(client)),
            acceptor: TlsAcceptor::from(Arc::new(server)),
        })
    }

    /// The client side over `tcp`, to the node at `addr` (`host:port`), whose certificate must
    /// name `host`.
    pub(crate) async fn connect(&self, addr: &str, tcp: TcpStream) -> io::Result<PeerStream> {
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("peer address {addr}: {e}"),
            )
        })?;
        let tls = self.connector.connect(name, tcp).await.map_err(|e| {
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("TLS with the node at {addr}: {e}"),
            )
        })?;
        Ok(Box::pin(tls))
    }

    /// The server side over an accepted `tcp`: the peer must present a certificate of the CA.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> io::Result<PeerStream> {
        let tls = self.acceptor.accept(tcp).await.map_err(|e| {
            io::Error::new(io::ErrorKind::PermissionDenied, format!("peer TLS: {e}"))
        })?;
        Ok(Box::pin(tls))
    }
}
