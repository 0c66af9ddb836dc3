//! `sqlkeeper backup` and `sqlkeeper restore`: a consistent SQLite file taken from a running
//! cluster through any node's Postgres port, and a new node's data directory seeded from such a
//! file (or from any SQLite database). Format and guarantees: `docs/snapshot-format.md`, Backup
//! and restore.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use futures::TryStreamExt;
use tokio_rustls::rustls;

/// `sqlkeeper backup`.
#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// A node's Postgres address (any node of the cluster).
    #[arg(long, env = "SQLKEEPER_PG_ADDR", default_value = "127.0.0.1:5433")]
    pub pg_addr: String,
    /// The file to write (an SQLite database); it is replaced only once the backup is
    /// complete and checked.
    #[arg(long)]
    pub to: PathBuf,
    /// The role to log in as.
    #[arg(long, default_value = "postgres")]
    pub user: String,
    /// File holding the role's password (its first line); otherwise `PGPASSWORD`, if set.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// TLS, as libpq's `sslmode`: `disable`; `prefer` (TLS if the node offers it) and `require`
    /// (TLS or nothing), which check the node's certificate only with --sslrootcert; or
    /// `verify-ca` and `verify-full`, which need --sslrootcert (both also check that the
    /// certificate names the host).
    #[arg(
        long,
        env = "PGSSLMODE",
        default_value = "prefer",
        value_parser = ["disable", "prefer", "require", "verify-ca", "verify-full"]
    )]
    pub sslmode: String,
    /// CA certificates (PEM) the node's certificate must chain to.
    #[arg(long, env = "PGSSLROOTCERT")]
    pub sslrootcert: Option<PathBuf>,
}

/// A certificate verifier that accepts any certificate (libpq's `prefer` and `require`
/// without a root certificate: encryption, not identity), and still checks that the server
/// holds the certificate's key.
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS connector `sslmode` and `sslrootcert` ask for (with `disable`, tokio-postgres
/// never uses it).
fn tls_connector(args: &BackupArgs) -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS")?;
    let config = match &args.sslrootcert {
        Some(file) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in sqlkeeper_raft::peer_tls::certificates(file)
                .map_err(|e| anyhow::anyhow!("--sslrootcert: {e}"))?
            {
                roots.add(c).with_context(|| {
                    format!("--sslrootcert {}: not a CA certificate", file.display())
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None if args.sslmode.starts_with("verify") => {
            bail!(
                "--sslmode {} needs --sslrootcert (the CA certificates to verify the node with)",
                args.sslmode
            )
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `sqlkeeper restore`.
#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The SQLite file: a backup, a snapshot, or any SQLite database.
    #[arg(long)]
    pub from: PathBuf,
    /// The new node's data directory (absent or empty).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The new node's id: start it with the same one.
    #[arg(long, default_value_t = 1)]
    pub node_id: u64,
    /// The Raft address the node will listen on: start it with the same one.
    #[arg(long, default_value = "127.0.0.1:7433")]
    pub raft_addr: String,
    /// The Postgres address the node will listen on.
    #[arg(long, default_value = "127.0.0.1:5433")]
    pub pg_addr: String,
}

/// Streams `SELECT sqlkeeper.backup()` from a node into `args.to`: written to a `.partial`
/// file, fsynced, checked with `PRAGMA integrity_check`, then renamed over the destination.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let (host, port) = args
        .pg_addr
        .rsplit_once(':')
        .with_context(|| format!("--pg-addr {:?} is not HOST:PORT", args.pg_addr))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("--pg-addr {:?}: invalid port", args.pg_addr))?;
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port)
        .user(&args.user)
        .dbname("postgres")
        .application_name("sqlkeeper backup");
    let password = match &args.password_file {
        Some(f) => Some(crate::first_line(f, "--password-file", "password")?),
        None => std::env::var("PGPASSWORD").ok(),
    };
    if let Some(p) = password {
        config.password(p);
    }
    config.ssl_mode(match args.sslmode.as_str() {
        "disable" => tokio_postgres::config::SslMode::Disable,
        "prefer" => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    let (client, connection) = config
        .connect(tls_connector(&args)?)
        .await
        .with_context(|| format!("cannot connect to {}", args.pg_addr))?;
    let connection = tokio::spawn(connection);

    let partial = PathBuf::from(format!("{}.partial", args.to.display()));
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let result = async {
        let rows = client
            .query_raw("SELECT sqlkeeper.backup()", std::iter::empty::<i64>())
            .await
            .context("backup refused")?;
        futures::pin_mut!(rows);
        let mut bar: Option<indicatif::ProgressBar> = None;
        let (mut index, mut size, mut written) = (0i64, 0i64, 0u64);
        while let Some(row) = rows.try_next().await.context("backup interrupted")? {
            index = row.get(0);
            size = row.get(1);
            let chunk: &[u8] = row.get(2);
            let bar = bar.get_or_insert_with(|| progress_bar(size as u64));
            file.write_all(chunk)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            written += chunk.len() as u64;
            bar.set_position(written);
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if written == 0 || written != size as u64 {
            bail!("the node sent {written} bytes of a {size}-byte copy");
        }
        file.sync_all()
            .with_context(|| format!("cannot fsync {}", partial.display()))?;
        check_backup(&partial, index)?;
        Ok((index, written))
    }
    .await;
    drop(client);
    let _ = connection.await;
    let (index, written) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, &args.to).with_context(|| {
        format!(
            "cannot rename {} to {}",
            partial.display(),
            args.to.display()
        )
    })?;
    if let Some(dir) = args.to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot fsync {}", dir.display()))?;
    }
    println!(
        "backup at log index {index}: {written} bytes written to {}",
        args.to.display()
    );
    Ok(())
}

/// A progress bar on stderr (drawn only on a terminal).
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The received file opens as an SQLite database, passes its integrity check and is at the log
/// index the node announced.
fn check_backup(path: &Path, index: i64) -> anyhow::Result<()> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .context("the received copy does not open as an SQLite database")?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .context("the received copy cannot be checked")?;
    if check != "ok" {
        bail!("the received copy fails SQLite's integrity check: {check}");
    }
    let applied: i64 = conn
        .query_row(
            "SELECT value FROM _sqlkeeper_meta WHERE key = 'applied_index'",
            [],
            |r| r.get(0),
        )
        .context("the received copy has no applied index")?;
    if applied != index {
        bail!("the received copy is at log index {applied}, the node announced {index}");
    }
    Ok(())
}

/// Seeds a new data directory from an SQLite file.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    if args.node_id == 0 {
        bail!("--node-id must be a positive integer");
    }
    let config = sqlkeeper_raft::RestoreConfig {
        node_id: args.node_id,
        data_dir: args.data_dir.clone(),
        raft_addr: args.raft_addr.clone(),
        pg_addr: args.pg_addr.clone(),
    };
    let restored = sqlkeeper_raft::restore(&args.from, &config).await?;
    let what = match restored.source_index {
        Some(i) => format!(
            "a sqlkeeper state at log index {i} (the new cluster's log starts after index {})",
            restored.log_index
        ),
        None => "an SQLite database (the engine's tables added)".to_string(),
    };
    println!(
        "restored {what} into {}; start the node with: sqlkeeper --node-id {} --data-dir {} \
         --raft-addr {} --pg-addr {}",
        args.data_dir.display(),
        args.node_id,
        args.data_dir.display(),
        args.raft_addr,
        args.pg_addr
    );
    Ok(())
}
