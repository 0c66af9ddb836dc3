//! Privileges (issue 13): `GRANT`/`REVOKE` of table privileges and of `CREATE` on `public`,
//! the predefined roles `pg_read_all_data` and `pg_write_all_data`, table owners, and 42501 for
//! everything else, decided identically on every node: a read-only role reads, and every kind
//! of write it tries is refused on the leader and on a follower, in autocommit, in a
//! transaction block, and through a prepared statement, while the nodes go on serving.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{connect_user, eventually, TestCluster};

const PASSWORD: &str = "superuser pw";

/// A client of `addr` logged in as `user` with `password`.
async fn client_as(addr: SocketAddr, user: &str, password: &str) -> tokio_postgres::Client {
    connect_user(addr, user, Some(password)).await.unwrap()
}

/// The SQLSTATE `sql` fails with (`None`: it worked).
async fn sqlstate(c: &tokio_postgres::Client, sql: &str) -> Option<String> {
    c.batch_execute(sql)
        .await
        .err()
        .map(|e| e.code().map_or("none".into(), |s| s.code().to_string()))
}

async fn count(c: &tokio_postgres::Client, table: &str) -> Result<i64, String> {
    c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| e.code().map_or("none".into(), |s| s.code().to_string()))
}

/// Waits until `user` on node `id` sees `expected` for `SELECT count(*) FROM table`
/// (`Err(sqlstate)` for a refusal): privileges change through the log, and a follower applies
/// them a little later.
async fn until_count(
    cluster: &TestCluster,
    id: u64,
    user: &str,
    password: &str,
    table: &str,
    expected: Result<i64, &str>,
) {
    let addr = cluster.node(id).pg_addr;
    eventually(
        &format!("{user} on node {id} reads {table}: {expected:?}"),
        Duration::from_secs(20),
        || async {
            let c = client_as(addr, user, password).await;
            let got = count(&c, table).await;
            match (&got, &expected) {
                (Ok(a), Ok(b)) if a == b => Ok(()),
                (Err(a), Err(b)) if a == b => Ok(()),
                _ => Err(got),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_role_reads_and_every_write_is_refused_on_leader_and_follower() {
    let cluster = TestCluster::with_password(3, PASSWORD).await;
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let admin = cluster.client(leader).await;
    admin
        .batch_execute(
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL); \
             INSERT INTO items (name) VALUES ('a'), ('b'), ('c'); \
             CREATE TABLE secrets (k text PRIMARY KEY); \
             INSERT INTO secrets VALUES ('s'); \
             CREATE VIEW item_names AS SELECT name FROM items; \
             CREATE ROLE reader LOGIN PASSWORD 'reader pw'; \
             GRANT SELECT ON items, item_names TO reader",
        )
        .await
        .unwrap();
    for id in [leader, follower] {
        until_count(&cluster, id, "reader", "reader pw", "items", Ok(3)).await;
        let reader = client_as(cluster.node(id).pg_addr, "reader", "reader pw").await;
        assert_eq!(count(&reader, "item_names").await, Ok(3), "node {id}");
        assert_eq!(
            count(&reader, "secrets").await,
            Err("42501".into()),
            "node {id}"
        );
        // The catalog is readable, as in PostgreSQL.
        let tables: i64 = reader
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(tables, 2);
        for sql in [
            "INSERT INTO items (name) VALUES ('x')",
            "UPDATE items SET name = 'x'",
            "UPDATE items SET name = 'x' WHERE id = 1",
            "DELETE FROM items",
            "DELETE FROM items WHERE id = 1",
            "TRUNCATE items",
            "INSERT INTO items (name) VALUES ('x') ON CONFLICT DO NOTHING",
            "INSERT INTO secrets SELECT name FROM items",
            "SELECT * FROM items, secrets",
            "CREATE TABLE mine (x int)",
            "CREATE VIEW mine AS SELECT 1",
            "CREATE INDEX items_name ON items (name)",
            "DROP TABLE items",
            "DROP VIEW item_names",
            "ALTER TABLE items ADD COLUMN extra text",
            "ALTER TABLE items RENAME TO stolen",
            "ALTER TABLE items ADD CONSTRAINT positive CHECK (id > 0)",
            "COMMENT ON TABLE items IS 'x'",
            "BEGIN; INSERT INTO items (name) VALUES ('x'); COMMIT",
            "GRANT INSERT ON items TO reader",
            "GRANT pg_write_all_data TO reader",
            "GRANT CREATE ON SCHEMA public TO reader",
            "ALTER TABLE items OWNER TO reader",
            "CREATE ROLE other",
            "ALTER ROLE postgres PASSWORD 'mine now'",
            "ALTER ROLE reader SUPERUSER",
            "DROP ROLE reader",
            "SELECT sqlkeeper.state_hash()",
            // A WITH query named as a view the role may read is no way around the table.
            "WITH item_names AS (SELECT k AS name FROM secrets) SELECT * FROM item_names",
            "WITH item_names AS (SELECT k FROM secrets) INSERT INTO items (name) SELECT * FROM item_names",
        ] {
            assert_eq!(
                sqlstate(&reader, sql).await.as_deref(),
                Some("42501"),
                "{sql} on node {id}"
            );
            let _ = reader.batch_execute("ROLLBACK").await;
        }
        // The roles that come with the system, and PUBLIC, cannot be dropped (nor their
        // grants with them).
        for (sql, sqlstate_expected) in [
            ("DROP ROLE IF EXISTS public", "42939"),
            ("DROP ROLE IF EXISTS pg_read_all_data", "2BP01"),
        ] {
            assert_eq!(
                sqlstate(&reader, sql).await.as_deref(),
                Some(sqlstate_expected),
                "{sql}"
            );
        }
        // Through a prepared statement (the extended protocol), in a block.
        let insert = reader
            .prepare("INSERT INTO items (name) VALUES ($1)")
            .await
            .unwrap();
        let e = reader.execute(&insert, &[&"p"]).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e:?}");
        reader.batch_execute("BEGIN").await.unwrap();
        assert_eq!(count(&reader, "items").await, Ok(3));
        let e = reader.execute(&insert, &[&"p"]).await.unwrap_err();
        assert_eq!(e.code().map(|c| c.code()), Some("42501"), "{e:?}");
        reader.batch_execute("ROLLBACK").await.unwrap();
        // The role changes its own password.
        reader
            .batch_execute("ALTER ROLE reader PASSWORD 'reader pw'")
            .await
            .unwrap();
        assert_eq!(count(&reader, "items").await, Ok(3), "node {id}");
    }
    // Nothing the reader tried changed anything.
    assert_eq!(count(&admin, "items").await, Ok(3));
    assert_eq!(count(&admin, "secrets").await, Ok(1));

    // REVOKE takes effect on every node; pg_read_all_data reads every table.
    admin
        .batch_execute("REVOKE SELECT ON items FROM reader")
        .await
        .unwrap();
    until_count(
        &cluster,
        follower,
        "reader",
        "reader pw",
        "items",
        Err("42501"),
    )
    .await;
    admin
        .batch_execute("GRANT pg_read_all_data TO reader")
        .await
        .unwrap();
    until_count(&cluster, follower, "reader", "reader pw", "secrets", Ok(1)).await;
    admin
        .batch_execute("REVOKE pg_read_all_data FROM reader")
        .await
        .unwrap();
    until_count(
        &cluster,
        follower,
        "reader",
        "reader pw",
        "secrets",
        Err("42501"),
    )
    .await;
    cluster.assert_state_hashes_equal().await;
}

/// A role with `CREATE` on `public` owns what it creates: it may alter, drop and grant it, and
/// others may not; `pg_write_all_data` writes without reading (an `UPDATE ... WHERE` reads,
/// as in PostgreSQL); `ALTER TABLE ... OWNER TO` hands a table over; a role that owns tables
/// cannot be dropped; grants on `ALL TABLES IN SCHEMA public` and to `PUBLIC`; owners show in
/// the catalog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_grants_and_predefined_roles_hold_on_every_node() {
    let cluster = TestCluster::with_password(3, PASSWORD).await;
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let admin = cluster.client(follower).await;
    admin
        .batch_execute(
            "CREATE ROLE app LOGIN PASSWORD 'app pw'; \
             CREATE ROLE writer LOGIN PASSWORD 'writer pw'; \
             CREATE ROLE viewer LOGIN PASSWORD 'viewer pw'; \
             GRANT CREATE ON SCHEMA public TO app; \
             GRANT pg_write_all_data TO writer",
        )
        .await
        .unwrap();
    eventually(
        "app logs in on the follower",
        Duration::from_secs(20),
        || async {
            connect_user(cluster.node(follower).pg_addr, "app", Some("app pw"))
                .await
                .map(|_| ())
        },
    )
    .await;
    let app = client_as(cluster.node(follower).pg_addr, "app", "app pw").await;
    app.batch_execute(
        "CREATE TABLE jobs (id int PRIMARY KEY, state text); \
         INSERT INTO jobs VALUES (1, 'new'), (2, 'new'); \
         CREATE INDEX jobs_state ON jobs (state); \
         ALTER TABLE jobs ADD COLUMN note text",
    )
    .await
    .unwrap();
    assert_eq!(count(&app, "jobs").await, Ok(2));
    let owner: String = app
        .query_one(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'jobs'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "app");
    // The writer writes but does not read: a WHERE clause reads.
    let writer = client_as(cluster.node(leader).pg_addr, "writer", "writer pw").await;
    eventually("the writer inserts", Duration::from_secs(20), || async {
        sqlstate(&writer, "INSERT INTO jobs (id, state) VALUES (3, 'new')")
            .await
            .map_or(Ok(()), Err)
    })
    .await;
    assert_eq!(
        sqlstate(&writer, "UPDATE jobs SET state = 'done' WHERE id = 3")
            .await
            .as_deref(),
        Some("42501")
    );
    assert_eq!(
        sqlstate(&writer, "UPDATE jobs SET state = 'done'").await,
        None
    );
    assert_eq!(count(&writer, "jobs").await, Err("42501".into()));
    // Others may not change the app's table; the app grants reading it.
    for sql in [
        "DROP TABLE jobs",
        "ALTER TABLE jobs ADD COLUMN x int",
        "GRANT SELECT ON jobs TO writer",
    ] {
        assert_eq!(
            sqlstate(&writer, sql).await.as_deref(),
            Some("42501"),
            "{sql}"
        );
    }
    app.batch_execute("GRANT SELECT ON jobs TO viewer")
        .await
        .unwrap();
    until_count(&cluster, leader, "viewer", "viewer pw", "jobs", Ok(3)).await;
    // A rename keeps the grants; a table dropped and made again starts with none.
    app.batch_execute("ALTER TABLE jobs RENAME TO tasks")
        .await
        .unwrap();
    until_count(&cluster, leader, "viewer", "viewer pw", "tasks", Ok(3)).await;
    app.batch_execute("DROP TABLE tasks; CREATE TABLE tasks (id int)")
        .await
        .unwrap();
    until_count(
        &cluster,
        leader,
        "viewer",
        "viewer pw",
        "tasks",
        Err("42501"),
    )
    .await;
    // A role that owns a table cannot be dropped until the table is handed over.
    assert_eq!(
        sqlstate(&admin, "DROP ROLE app").await.as_deref(),
        Some("2BP01")
    );
    admin
        .batch_execute("ALTER TABLE tasks OWNER TO viewer")
        .await
        .unwrap();
    admin.batch_execute("DROP ROLE app").await.unwrap();
    let viewer = client_as(cluster.node(follower).pg_addr, "viewer", "viewer pw").await;
    eventually("the viewer owns tasks", Duration::from_secs(20), || async {
        count(&viewer, "tasks").await
    })
    .await;
    // Grants on every table of the schema, to PUBLIC.
    admin
        .batch_execute(
            "CREATE TABLE notes (n text); INSERT INTO notes VALUES ('hi'); \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO PUBLIC",
        )
        .await
        .unwrap();
    until_count(&cluster, leader, "writer", "writer pw", "notes", Ok(1)).await;
    admin
        .batch_execute("REVOKE SELECT ON notes FROM PUBLIC")
        .await
        .unwrap();
    until_count(
        &cluster,
        leader,
        "writer",
        "writer pw",
        "notes",
        Err("42501"),
    )
    .await;
    let members: Vec<String> = admin
        .query(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
             JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = 'writer'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(members, vec!["pg_write_all_data".to_string()]);
    // A view reads with the privileges on what it reads: creating one over a table is no way
    // to read it.
    admin
        .batch_execute("GRANT CREATE ON SCHEMA public TO viewer")
        .await
        .unwrap();
    eventually(
        "the viewer makes a view",
        Duration::from_secs(20),
        || async {
            sqlstate(&viewer, "CREATE VIEW peek AS SELECT n FROM notes")
                .await
                .map_or(Ok(()), Err)
        },
    )
    .await;
    assert_eq!(count(&viewer, "peek").await, Err("42501".into()));
    // A renamed role keeps its grants and tables; role names fold to lower case as in
    // PostgreSQL.
    admin
        .batch_execute("ALTER ROLE viewer RENAME TO Watcher; GRANT SELECT ON notes TO WATCHER")
        .await
        .unwrap();
    until_count(&cluster, leader, "watcher", "viewer pw", "notes", Ok(1)).await;
    // The grants as psql's `\dp` shows them (`pg_class.relacl`), PUBLIC's (from ALL TABLES
    // IN SCHEMA public) as `=r`.
    let acl: Vec<(String, Option<String>)> = admin
        .query(
            "SELECT relname::text, array_to_string(relacl, ',') FROM pg_class \
             WHERE relname IN ('notes', 'tasks', 'peek') ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        acl,
        vec![
            (
                "notes".to_string(),
                Some("postgres=arwdDxt/postgres,watcher=r/postgres".to_string())
            ),
            // Nothing granted on it: NULL, PostgreSQL's "the owner's".
            ("peek".to_string(), None),
            (
                "tasks".to_string(),
                Some("watcher=arwdDxt/watcher,=r/watcher".to_string())
            ),
        ]
    );
    until_count(&cluster, leader, "watcher", "viewer pw", "tasks", Ok(0)).await;
    assert_eq!(
        sqlstate(&admin, "DROP ROLE watcher").await.as_deref(),
        Some("2BP01")
    );
    cluster.assert_state_hashes_equal().await;
}
