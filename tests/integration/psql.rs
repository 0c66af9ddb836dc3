//! psql against the server: exact command tags, results and error messages, compared with a
//! golden file (`testdata/*.out`). Set `UPDATE_GOLDEN=1` to rewrite the expected output.

use std::path::PathBuf;
use std::process::Command;

use crate::support::TestNode;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/integration/testdata")
}

fn psql_available() -> bool {
    Command::new("psql")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_session_matches_golden_output() {
    psql_script_matches_golden("psql_basics").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_transaction_blocks_match_golden_output() {
    psql_script_matches_golden("psql_transactions").await;
}

/// Runs `testdata/{name}.sql` through psql against a fresh node and compares the output with
/// `testdata/{name}.out`.
async fn psql_script_matches_golden(name: &'static str) {
    assert!(
        psql_available(),
        "psql is required (the test command installs postgresql-client)"
    );
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let addr = node.pg_addr;
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .current_dir(testdata())
            .arg("-c")
            .arg(format!(
                "psql -X -a -h {} -p {} -U postgres -d postgres -v ON_ERROR_STOP=0 -f {name}.sql 2>&1",
                addr.ip(),
                addr.port()
            ))
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let actual = String::from_utf8_lossy(&out.stdout).into_owned();
    let golden = testdata().join(format!("{name}.out"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert_eq!(
        actual,
        expected,
        "psql output differs from {}",
        golden.display()
    );
    node.stop().await;
}

/// Runs `script` (a file of `testdata`) through psql against `addr`, output and errors.
fn run_psql(addr: std::net::SocketAddr, script: &str) -> String {
    let out = Command::new("psql")
        .current_dir(testdata())
        .args([
            "-X",
            "-q",
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
        ])
        .args(["-U", "postgres", "-d", "postgres", "-f", script])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// psql's describe commands (`\d`, `\dt`, `\di`, `\dv`, `\ds`, `\dn`, `\du`, `\df`, with and
/// without patterns, and `\d table` for tables and views: columns, types, defaults, indexes,
/// foreign keys both ways) print exactly what PostgreSQL 15's psql prints for the same schema, and
/// so do queries of `information_schema` (tables, columns, constraints, key columns, foreign
/// keys, schemata) as tools send them: the same script runs against a real PostgreSQL started
/// here, and its output is the expected one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describe_commands_match_postgresql() {
    let (expected, actual) =
        psql_on_both(Some("psql_catalog_schema.sql"), "psql_catalog.sql").await;
    // The comparison means something only if PostgreSQL listed the schema's objects.
    assert_same_as_postgresql(
        &expected,
        &actual,
        &[
            "orders_item_id_qty_key",
            "tags_lower_note",
            "Foreign-key constraints:",
            "Referenced by:",
            "nextval('orders_id_seq'::regclass)",
            "character varying(40)",
            "orders_item_id_fkey | items_pkey",
            "timestamp with time zone |",
            "active_items",
            "ticket_numbers",
            "Check constraints:",
            "\"shipments_light\" CHECK (weight < 1000 OR order_id IS NULL)",
            "\"shipments_order_uq\" UNIQUE CONSTRAINT, btree (order_id)",
            "btree (weight) WHERE weight > 100",
            "TABLE \"shipments\" CONSTRAINT \"shipments_order_fk\"",
            "as user \"postgres\"",
            "pg_database_owner",
            "Superuser",
        ],
    );
}

/// `\l`: the one database, with the collation SQLite compares text by (PostgreSQL lists its
/// templates too, so this is not compared with it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_the_one_database() {
    assert!(
        psql_available(),
        "psql is required (the test command installs postgresql-client)"
    );
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let addr = node.pg_addr;
    let list = tokio::task::spawn_blocking(move || {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-h", &addr.ip().to_string()])
            .args([
                "-p",
                &addr.port().to_string(),
                "-U",
                "postgres",
                "-c",
                "\\l",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .await
    .unwrap();
    assert_eq!(list, "postgres|postgres|UTF8|C|C||libc|\n");
    node.stop().await;
}

/// COPY through psql prints what PostgreSQL 15 prints: `\copy` from inline data and from a
/// file, in text and CSV with headers, NULLs, escapes, quotes and line breaks in values;
/// `\copy` and `COPY ... TO STDOUT` of tables, column lists and queries with format options;
/// the errors of bad data with PostgreSQL's messages and CONTEXT lines, after which nothing of
/// that COPY is stored; COPY inside transaction blocks, rolled back and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_copy_matches_postgresql() {
    let (expected, actual) = psql_on_both(None, "psql_copy.sql").await;
    // The comparison means something only if PostgreSQL copied and refused what it should.
    assert_same_as_postgresql(
        &expected,
        &actual,
        &[
            "3\ttab\\there\\\\back\\nslash\t-7\t0.10\tf\n",
            "13,\"multi\nline\"\n",
            "13,\"100.00\",t\n",
            "CONTEXT:  COPY items, line 3, column id: \"x\"",
            "missing data for column \"qty\"",
            "column \"nope\" of relation \"items\" does not exist",
            " 31 | committed",
            "3\t{\"x\\\\\"y\"}\t{3,4}\n",
            "2,{},\n",
            "malformed array literal: \"{a\"",
        ],
    );
}

/// Session functions and settings print what PostgreSQL 15 prints: `current_user`,
/// `session_user`, `current_database()`, `current_schemas`, `pg_backend_pid()`,
/// `inet_server_addr()`, `current_setting` (with an unknown name: 42704, or NULL with
/// `missing_ok`), `set_config` and `SHOW`, and the session's values written by an `INSERT` and
/// an `UPDATE` (bound into the log entry) and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_session_functions_match_postgresql() {
    let (expected, actual) = psql_on_both(None, "psql_session.sql").await;
    assert_same_as_postgresql(
        &expected,
        &actual,
        &[
            " postgres     | postgres     | postgres | postgres         | postgres",
            " public         | {pg_catalog,public} | {public}",
            "127.0.0.1",
            "unrecognized configuration parameter \"nope\"",
            " myapp",
            " \"$user\", public",
            " postgres@myapp | postgres",
        ],
    );
}

/// Asserts that PostgreSQL printed each of `must_print` (so that two empty or failed runs
/// cannot pass) and that the node printed exactly what PostgreSQL did.
fn assert_same_as_postgresql(expected: &str, actual: &str, must_print: &[&str]) {
    for output in must_print {
        assert!(
            expected.contains(output),
            "PostgreSQL did not print {output:?}:\n{expected}"
        );
    }
    assert_eq!(actual, expected, "psql's output differs from PostgreSQL's");
}

/// Runs `script` (a file of `testdata`) through psql against a PostgreSQL 15 started here and
/// against a fresh node, after `setup` (which must print nothing on either): (PostgreSQL's
/// output, the node's).
async fn psql_on_both(setup: Option<&'static str>, script: &'static str) -> (String, String) {
    assert!(
        psql_available(),
        "psql is required (the test command installs postgresql-client)"
    );
    let pg = crate::support::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let (sk_addr, pg_addr) = (
        node.pg_addr,
        std::net::SocketAddr::from(([127, 0, 0, 1], pg.port)),
    );
    let outputs = tokio::task::spawn_blocking(move || {
        if let Some(setup) = setup {
            assert_eq!(run_psql(pg_addr, setup), "", "PostgreSQL refused {setup}");
            assert_eq!(run_psql(sk_addr, setup), "", "sqlkeeper refused {setup}");
        }
        // `\conninfo` names the port, which differs.
        let port =
            |out: String, port: u16| out.replace(&format!("port \"{port}\""), "port \"PORT\"");
        (
            port(run_psql(pg_addr, script), pg_addr.port()),
            port(run_psql(sk_addr, script), sk_addr.port()),
        )
    })
    .await
    .unwrap();
    node.stop().await;
    outputs
}
