//! TLS for clients (issue 13): with `--tls-cert` and `--tls-key`, psql's `sslmode=require`
//! gets an encrypted connection, `verify-full` checks the certificate against the CA and the
//! host name, and with `--tls-required` a client in clear is refused (28000), as PostgreSQL's
//! `hostssl` lines do. The certificates are made by the test with `openssl` (a CA, and a
//! server certificate for `localhost` and 127.0.0.1 signed by it).

use std::path::Path;
use std::process::{Command, Output};

use crate::clients::{clients_dir, python, run_client, script_command, PGJDBC_JAR};
use crate::support::NodeProcess;

/// `openssl` with the words of `args` in `dir`; panics with its output if it fails.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("openssl not found: run scripts/test.sh, which installs it");
    assert!(out.status.success(), "openssl {args}: {out:?}");
}

/// A self-signed CA certificate `{name}.pem` and its key `{name}.key`.
pub fn ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={name} -keyout {name}.key -out {name}.pem"
        ),
    );
}

/// A CA (`ca.pem`) and a server certificate and key signed by it (`server.pem`,
/// `server.key`) for `localhost` and 127.0.0.1, and another CA (`other.pem`) that did not
/// sign it.
fn certificates(dir: &Path) {
    ca(dir, "other");
    ca_and_server(dir, "DNS:localhost,IP:127.0.0.1");
}

/// A CA (`ca.pem`) and a server certificate and key signed by it (`server.pem`,
/// `server.key`) for the subject alternative names `san` (`DNS:name,IP:addr,…`).
pub fn ca_and_server(dir: &Path, san: &str) {
    ca(dir, "ca");
    signed(dir, "ca", "server", &format!("subjectAltName={san}"));
}

/// A certificate `{name}.pem` and key `{name}.key` signed by the CA `{ca}.pem` (made by
/// [`ca`]), with the extension lines `ext`.
pub fn signed(dir: &Path, ca: &str, name: &str, ext: &str) {
    openssl(
        dir,
        &format!("req -newkey rsa:2048 -nodes -subj /CN={name} -keyout {name}.key -out {name}.csr"),
    );
    std::fs::write(dir.join(format!("{name}.ext")), format!("{ext}\n")).unwrap();
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -days 2 -extfile {name}.ext -out {name}.pem"
        ),
    );
}

/// The superuser's password of the first node (the second trusts its clients).
const PASSWORD: &str = "tls and scram";

fn psql(conninfo: &str, sql: &str) -> Output {
    Command::new("psql")
        .args(["-X", "-w", "-At", conninfo, "-c", sql])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_encrypts_and_verify_full_checks_the_certificate() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let file = |name: &str| certs.path().join(name).to_str().unwrap().to_string();
    let (cert, key) = (file("server.pem"), file("server.key"));
    let tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let data = tempfile::tempdir().unwrap();
    let password_file = certs.path().join("password");
    std::fs::write(&password_file, PASSWORD).unwrap();
    let password = ["--superuser-password-file", password_file.to_str().unwrap()];
    let node = NodeProcess::start(data.path(), &[&tls[..], &password[..]].concat());
    let port = node.pg_addr.port();
    let conninfo = |extra: &str| {
        format!(
            "host=localhost hostaddr=127.0.0.1 port={port} user=postgres dbname=postgres {extra}"
        )
    };

    // Encrypted, and psql says so.
    let out = psql(&conninfo("sslmode=require"), "SELECT 42");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    let info = Command::new("psql")
        .args(["-X", "-w", &conninfo("sslmode=require"), "-c", "\\conninfo"])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        text(&info).contains("SSL connection (protocol: TLSv1.3"),
        "{}",
        text(&info)
    );
    // The certificate checked against the CA and the name.
    let out = psql(
        &conninfo(&format!(
            "sslmode=verify-full sslrootcert={}",
            file("ca.pem")
        )),
        "SELECT 'verified'",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = psql(
        &conninfo(&format!(
            "sslmode=verify-ca sslrootcert={}",
            file("other.pem")
        )),
        "SELECT 1",
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("certificate verify failed"),
        "{}",
        text(&out)
    );
    // SCRAM-SHA-256-PLUS: libpq with channel_binding=require logs in only if the node offers
    // the login bound to its certificate and proves it.
    let out = psql(
        &conninfo("sslmode=require channel_binding=require"),
        "SELECT 'bound'",
    );
    assert!(out.status.success(), "{}", text(&out));
    // psycopg 3 (bound), asyncpg (checking the certificate), pgjdbc, with the password.
    let mut script = script_command(python(), "tls_clients.py");
    script.args([file("ca.pem").as_str(), PASSWORD]);
    run_client("tls_clients.py", script, node.pg_addr.to_string()).await;
    let mut java = Command::new("java");
    java.args(["-cp", PGJDBC_JAR])
        .arg(clients_dir().join("AuthJdbc.java"))
        .args([PASSWORD, "require"]);
    run_client("AuthJdbc.java", java, node.pg_addr.to_string()).await;
    // In clear, still served: TLS is not required.
    let out = psql(&conninfo("sslmode=disable"), "SELECT 'clear'");
    assert!(out.status.success(), "{}", text(&out));
    drop(node);

    // Required: a client in clear is refused, one with TLS is served.
    let data = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(data.path(), &[&tls[..], &["--tls-required"]].concat());
    let port = node.pg_addr.port();
    let conninfo =
        |extra: &str| format!("host=127.0.0.1 port={port} user=postgres dbname=postgres {extra}");
    let out = psql(&conninfo("sslmode=disable"), "SELECT 1");
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"postgres\", database \"postgres\", no encryption"
        ),
        "{}",
        text(&out)
    );
    let out = psql(&conninfo("sslmode=require"), "SELECT 'required'");
    assert!(out.status.success(), "{}", text(&out));
}
