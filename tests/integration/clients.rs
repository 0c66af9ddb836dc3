//! Client libraries against a real node: SQLAlchemy 2 (psycopg2) ORM sessions and an Alembic
//! migration (`tests/clients/sqlalchemy_alembic.py`), and typed values through asyncpg and
//! psycopg 3 (`tests/clients/typed_drivers.py`), and pgjdbc (`tests/clients/TypedJdbc.java`, run
//! as a single-file Java program), and node-postgres with knex migrations
//! (`tests/clients/node_clients.js`). The test command (`scripts/test.sh`) installs the Python
//! clients in a virtualenv and names its Python in `SQLKEEPER_TEST_PYTHON`, and installs
//! Debian's pgjdbc package and the Node packages.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{Postgres, TestCluster, TestNode};

pub(crate) fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("SQLKEEPER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/test-venv/bin/python"))
}

/// Runs `cmd` to its end and returns its output (stdout, then stderr); panics with it if the
/// program fails.
pub(crate) async fn output_of(what: &str, mut cmd: Command) -> String {
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// Runs a client program (`cmd`, which gets the server's `HOST:PORT` as its last argument);
/// panics with its output unless it ends with `== OK`.
pub(crate) async fn run_client(what: &str, mut cmd: Command, addr: String) {
    cmd.arg(addr);
    let text = output_of(what, cmd).await;
    assert!(text.contains("== OK"), "{text}");
}

/// `python tests/clients/{script}`, with `python` one the test command installed.
pub(crate) fn script_command(python: PathBuf, script: &str) -> Command {
    assert!(
        python.exists(),
        "{} not found: run scripts/test.sh, which installs the Python clients and applications",
        python.display()
    );
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join(script))
        .env("PYTHONDONTWRITEBYTECODE", "1");
    cmd
}

/// Runs the Python script `tests/clients/{script}` against the server at `addr`.
async fn run_script(script: &str, addr: String) {
    run_client(script, script_command(python(), script), addr).await;
}

pub(crate) fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// SQLAlchemy ORM sessions, full reflection (`inspect()`: columns, keys, indexes, unique and
/// check constraints, comments) and Alembic `upgrade`, `check`, `downgrade`; the script passes
/// against PostgreSQL 15 first, so its expectations are PostgreSQL's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_orm_and_alembic_migrations() {
    let pg = Postgres::start();
    run_script("sqlalchemy_alembic.py", format!("127.0.0.1:{}", pg.port)).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    run_script("sqlalchemy_alembic.py", node.pg_addr.to_string()).await;
    node.stop().await;
}

/// asyncpg (untyped prepared statements, binary) and psycopg 3 (server-side binding, text and
/// binary cursors): the script passes against PostgreSQL 15 first, so its expectations are
/// PostgreSQL's, then against a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_and_psycopg3_round_trip_typed_values() {
    let pg = Postgres::start();
    run_script("typed_drivers.py", format!("127.0.0.1:{}", pg.port)).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    run_script("typed_drivers.py", node.pg_addr.to_string()).await;
    node.stop().await;
}

/// Where Debian's libpostgresql-jdbc-java puts pgjdbc (the test command installs it).
pub(crate) const PGJDBC_JAR: &str = "/usr/share/java/postgresql.jar";

/// pgjdbc: prepared statements executed more than five times (server-side, binary results) and
/// with binary transfer from the start; the program passes against PostgreSQL 15 first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_round_trips_typed_values() {
    assert!(
        std::path::Path::new(PGJDBC_JAR).exists(),
        "{PGJDBC_JAR} not found: run scripts/test.sh, which installs libpostgresql-jdbc-java"
    );
    let java = || {
        let mut cmd = Command::new("java");
        cmd.args(["-cp", PGJDBC_JAR])
            .arg(clients_dir().join("TypedJdbc.java"));
        cmd
    };
    let pg = Postgres::start();
    run_client("TypedJdbc.java", java(), format!("127.0.0.1:{}", pg.port)).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    run_client("TypedJdbc.java", java(), node.pg_addr.to_string()).await;
    node.stop().await;
}

/// node-postgres (parameterized and named prepared queries, transactions, errors) and knex
/// migrations (`latest`, `rollback`, `up`) with a query-builder workload; the program passes
/// against PostgreSQL 15 first. The test command installs the packages from
/// `tests/clients/package-lock.json` and names them in `SQLKEEPER_TEST_NODE_MODULES`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_and_knex_migrations() {
    let modules = std::env::var_os("SQLKEEPER_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-node/node_modules")
        });
    assert!(
        modules.join("knex").exists(),
        "{} has no knex: run scripts/test.sh, which installs the Node clients",
        modules.display()
    );
    let node_js = || {
        let mut cmd = Command::new("node");
        cmd.arg(clients_dir().join("node_clients.js"))
            .env("NODE_PATH", &modules);
        cmd
    };
    let pg = Postgres::start();
    run_client(
        "node_clients.js",
        node_js(),
        format!("127.0.0.1:{}", pg.port),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    run_client("node_clients.js", node_js(), node.pg_addr.to_string()).await;
    node.stop().await;
}

/// pgbench as it ships, run unmodified against the leader of a 3-node cluster, as issue 12
/// asks: `pgbench -i -s 10` (drop, create tables with `fillfactor`; client-side generation: one
/// transaction that truncates the tables and copies 1,000,000 rows in with `COPY ... FROM STDIN
/// WITH (freeze on)`, far larger than one log entry; `VACUUM ANALYZE`; primary keys by `ALTER
/// TABLE`), then `pgbench -T 20 -c 8` in each protocol mode (`-M simple`, `extended`,
/// `prepared`). No transaction fails; after each run the balances agree (accounts, tellers and branches changed by the run's history), on every node;
/// state hashes are equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_initializes_at_scale_10_and_runs_in_every_protocol_mode() {
    let cluster = TestCluster::start(3, |_| Vec::new()).await;
    let leader = cluster.leader().await;
    let addr = cluster.node(leader).pg_addr;
    let pgbench = |args: &[&str]| {
        let mut cmd = Command::new(pgbench_path());
        cmd.args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .args(["-U", "postgres"])
            .args(args)
            .arg("postgres");
        cmd
    };
    let init = output_of("pgbench -i", pgbench(&["-i", "-s", "10"])).await;
    assert!(init.contains("done in"), "{init}");
    let client = crate::support::connect(addr).await;
    let sums = |client: tokio_postgres::Client| async move {
        let mut sums = Vec::new();
        for (column, table) in [
            ("abalance", "pgbench_accounts"),
            ("tbalance", "pgbench_tellers"),
            ("bbalance", "pgbench_branches"),
            ("delta", "pgbench_history"),
        ] {
            // `sum` of an integer column is a bigint, as in PostgreSQL; NULL for no rows.
            let row = client
                .query_one(&format!("SELECT sum({column}) FROM {table}"), &[])
                .await
                .unwrap();
            sums.push(row.get::<_, Option<i64>>(0).unwrap_or(0));
        }
        (client, sums)
    };
    let (mut client, before) = sums(client).await;
    assert_eq!(before, vec![0, 0, 0, 0]);
    let accounts: i64 = client
        .query_one("SELECT count(*) FROM pgbench_accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(accounts, 1_000_000);
    let mut balance = 0;
    for mode in ["simple", "extended", "prepared"] {
        let text = output_of(
            &format!("pgbench -M {mode}"),
            // A failure is reported with its SQLSTATE and message.
            pgbench(&[
                "-T",
                "20",
                "-c",
                "8",
                "-M",
                mode,
                "--failures-detailed",
                "--verbose-errors",
            ]),
        )
        .await;
        let count = |label: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(label))
                .and_then(|n| n.split([' ', '/']).next()?.trim().parse().ok())
                .unwrap_or(0)
        };
        let processed = count("number of transactions actually processed: ");
        assert!(processed > 0, "{text}");
        // No transaction fails, as in PostgreSQL: two blocks that update the same account row
        // at once wait for each other at the read of its balance (docs/transactions.md, Row
        // locks) instead of failing with 40001.
        assert_eq!(
            count("number of failed transactions: "),
            0,
            "a transaction failed:\n{text}"
        );
        assert!(!text.contains("ERROR:"), "{text}");
        // pgbench empties the history before each run: the run's deltas are all there.
        let (c, after) = sums(client).await;
        client = c;
        balance += after[3];
        assert_eq!(after[..3], [balance; 3], "after -M {mode}: {after:?}");
    }
    cluster.assert_state_hashes_equal().await;
    for id in cluster.live_ids() {
        let (_, on_node) = sums(cluster.client(id).await).await;
        assert_eq!(on_node[..3], [balance; 3], "node {id}: {on_node:?}");
    }
}

/// pgbench from the PATH, else from Debian's PostgreSQL server package (the test command
/// installs it).
fn pgbench_path() -> PathBuf {
    let on_path = Command::new("pgbench").arg("--version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return PathBuf::from("pgbench");
    }
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pgbench"))
        .filter(|p| p.exists())
        .max()
        .expect("pgbench not found: run scripts/test.sh, which installs PostgreSQL")
}
