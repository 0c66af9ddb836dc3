//! Round trips of typed values (issue 11, acceptance 3) with tokio-postgres, which sends
//! parameters and reads results in binary and checks every column's type before it decodes
//! it: values at the edges of their types are written with typed binary parameters, read back
//! as Rust values (so each column must be described with PostgreSQL's type), and read as text
//! with the simple protocol. The same script runs against a real PostgreSQL 15, which decides
//! what is right: the column types, the text of every value, the values read back, and the
//! parameter types it infers for statements prepared without them.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::support::{Postgres, TestNode};

const TABLE: &str = "CREATE TABLE round_trip (id int PRIMARY KEY, d date, ts timestamp, \
                     tz timestamptz, u uuid, j jsonb, js json, b bytea, t text, v varchar(12), \
                     i2 smallint, i4 integer, i8 bigint, f8 double precision, ok boolean)";

const PARAM_TYPES: &[Type] = &[
    Type::INT4,
    Type::DATE,
    Type::TIMESTAMP,
    Type::TIMESTAMPTZ,
    Type::UUID,
    Type::JSONB,
    Type::JSON,
    Type::BYTEA,
    Type::TEXT,
    Type::VARCHAR,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::FLOAT8,
    Type::BOOL,
];

/// One row of `round_trip`, as Rust values.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: i32,
    d: Option<NaiveDate>,
    ts: Option<NaiveDateTime>,
    tz: Option<DateTime<Utc>>,
    u: Option<uuid::Uuid>,
    j: Option<serde_json::Value>,
    js: Option<serde_json::Value>,
    b: Option<Vec<u8>>,
    t: Option<String>,
    v: Option<String>,
    i2: Option<i16>,
    i4: Option<i32>,
    i8: Option<i64>,
    f8: Option<f64>,
    ok: Option<bool>,
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn at(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32, micros: u32) -> NaiveDateTime {
    date(y, m, d).and_hms_micro_opt(h, mi, s, micros).unwrap()
}

/// Values at the edges of their types, and a row of NULLs.
fn rows() -> Vec<Row> {
    vec![
        Row {
            id: 1,
            d: Some(date(1, 1, 1)),
            ts: Some(at(2024, 2, 29, 10, 0, 0, 123_456)),
            tz: Some(at(1999, 12, 31, 23, 59, 59, 999_999).and_utc()),
            u: Some(uuid::Uuid::nil()),
            j: Some(serde_json::json!({"b": [1, 2.5, null], "a": {"é": "☃"}})),
            js: Some(serde_json::json!([1, "two", {"three": 3}])),
            b: Some(vec![0, 1, 127, 128, 255]),
            t: Some("héllo ☃ \u{1F600}".into()),
            v: Some("twelve chars".into()),
            i2: Some(i16::MIN),
            i4: Some(i32::MAX),
            i8: Some(i64::MIN),
            f8: Some(-2.25),
            ok: Some(true),
        },
        Row {
            id: 2,
            d: Some(date(9999, 12, 31)),
            ts: Some(at(1970, 1, 1, 0, 0, 0, 0)),
            tz: Some(at(2024, 2, 29, 23, 59, 59, 1).and_utc()),
            u: Some(uuid::Uuid::max()),
            j: Some(serde_json::json!([])),
            js: Some(serde_json::json!({})),
            b: Some(vec![]),
            t: Some(String::new()),
            v: Some(String::new()),
            i2: Some(i16::MAX),
            i4: Some(i32::MIN),
            i8: Some(i64::MAX),
            f8: Some(0.5),
            ok: Some(false),
        },
        Row {
            id: 3,
            d: None,
            ts: None,
            tz: None,
            u: None,
            j: None,
            js: None,
            b: None,
            t: None,
            v: None,
            i2: None,
            i4: None,
            i8: None,
            f8: None,
            ok: None,
        },
    ]
}

/// `run` against PostgreSQL 15, which decides what is right, then against a fresh node: both
/// answers, PostgreSQL's first.
async fn on_postgres_then_node<T, F, Fut>(run: F) -> (T, T)
where
    F: Fn(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let pg = Postgres::start();
    let expected = run(pg.client().await).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let got = run(node.client().await).await;
    node.stop().await;
    (expected, got)
}

/// The rows of a simple query's answer, each value as the text the server sent.
fn text_rows(messages: Vec<SimpleQueryMessage>) -> Vec<Vec<Option<String>>> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Statements prepared without parameter types: the server says what each parameter is, from
/// the column it is compared with or assigned to, a cast, or `LIMIT`.
const UNTYPED: &[&str] = &[
    "SELECT id FROM round_trip WHERE i4 = $1 AND t = $2",
    "SELECT id FROM round_trip WHERE tz > $1 ORDER BY id LIMIT $2 OFFSET $3",
    "SELECT id FROM round_trip r WHERE r.b = $1 OR $2 = r.u OR r.v = $3",
    "SELECT id FROM round_trip WHERE id IN ($1, $2) AND d BETWEEN $3 AND $4",
    "SELECT count(*) FROM round_trip WHERE v LIKE $1",
    "SELECT $1::int8 + 1",
    "INSERT INTO round_trip (id, d, u, j, v) VALUES ($1, $2, $3, $4, $5)",
    "INSERT INTO round_trip VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    "INSERT INTO round_trip (id, i8) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET i2 = $3",
    "UPDATE round_trip SET ok = $1, i2 = $2, ts = $3 WHERE id = $4",
    "DELETE FROM round_trip WHERE ts BETWEEN $1 AND $2",
];

/// What one server answered: the described column types, the rows read back in binary, the
/// text of every value, typed expressions, and the parameter types of [`UNTYPED`].
#[derive(Debug, PartialEq)]
struct Answers {
    types: Vec<(String, Type)>,
    rows: Vec<Row>,
    text: Vec<Vec<Option<String>>>,
    expressions: Vec<(String, Type)>,
    params: Vec<Vec<Type>>,
}

async fn run(c: &Client) -> Answers {
    c.batch_execute(TABLE).await.unwrap();
    let marks: Vec<String> = (1..=PARAM_TYPES.len()).map(|i| format!("${i}")).collect();
    let insert = c
        .prepare_typed(
            &format!("INSERT INTO round_trip VALUES ({})", marks.join(", ")),
            PARAM_TYPES,
        )
        .await
        .unwrap();
    for r in rows() {
        c.execute(
            &insert,
            &[
                &r.id, &r.d, &r.ts, &r.tz, &r.u, &r.j, &r.js, &r.b, &r.t, &r.v, &r.i2, &r.i4,
                &r.i8, &r.f8, &r.ok,
            ],
        )
        .await
        .unwrap();
    }
    let select = c
        .prepare("SELECT * FROM round_trip ORDER BY id")
        .await
        .unwrap();
    let types = select
        .columns()
        .iter()
        .map(|col| (col.name().to_string(), col.type_().clone()))
        .collect();
    let read: Vec<Row> = c
        .query(&select, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| Row {
            id: r.get("id"),
            d: r.get("d"),
            ts: r.get("ts"),
            tz: r.get("tz"),
            u: r.get("u"),
            j: r.get("j"),
            js: r.get("js"),
            b: r.get("b"),
            t: r.get("t"),
            v: r.get("v"),
            i2: r.get("i2"),
            i4: r.get("i4"),
            i8: r.get("i8"),
            f8: r.get("f8"),
            ok: r.get("ok"),
        })
        .collect();
    let text = text_rows(
        c.simple_query("SELECT * FROM round_trip ORDER BY id")
            .await
            .unwrap(),
    );
    // A value found by a parameter of its type (binary), and typed expressions.
    let first = &rows()[0];
    let found: i64 = c
        .query_one(
            &c.prepare_typed(
                "SELECT count(*) FROM round_trip WHERE tz = $1 AND d = $2",
                &[Type::TIMESTAMPTZ, Type::DATE],
            )
            .await
            .unwrap(),
            &[&first.tz, &first.d],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        found, 1,
        "a stored timestamptz and date found by binary parameters"
    );
    let exprs = c
        .prepare(
            "SELECT now() AS now, '2024-02-29 10:00'::timestamp AS ts, \
             '2024-02-29'::date AS d, gen_random_uuid() AS u, '{\"a\": 1}'::jsonb AS j",
        )
        .await
        .unwrap();
    let row = c.query_one(&exprs, &[]).await.unwrap();
    let now: DateTime<Utc> = row.get("now");
    assert!(
        (Utc::now() - now).num_seconds().abs() < 60,
        "now() is {now}"
    );
    assert_eq!(
        row.get::<_, NaiveDateTime>("ts"),
        at(2024, 2, 29, 10, 0, 0, 0)
    );
    assert_eq!(row.get::<_, NaiveDate>("d"), date(2024, 2, 29));
    let _: uuid::Uuid = row.get("u");
    assert_eq!(
        row.get::<_, serde_json::Value>("j"),
        serde_json::json!({"a": 1})
    );
    let expressions = exprs
        .columns()
        .iter()
        .map(|col| (col.name().to_string(), col.type_().clone()))
        .collect();
    let mut params = Vec::new();
    for sql in UNTYPED {
        let st = c
            .prepare(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        params.push(st.params().to_vec());
    }
    // What an application does with them: Rust values bound by the described types.
    let since = at(2000, 1, 1, 0, 0, 0, 0).and_utc();
    let ids: Vec<i32> = c
        .query(UNTYPED[1], &[&since, &10i64, &0i64])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![2], "rows after 2000 by an untyped statement");
    c.execute(
        UNTYPED[9],
        &[&true, &7i16, &at(2001, 2, 3, 4, 5, 6, 7), &3i32],
    )
    .await
    .unwrap();
    let back: (bool, i16, NaiveDateTime) = c
        .query_one("SELECT ok, i2, ts FROM round_trip WHERE id = $1", &[&3i32])
        .await
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .unwrap();
    assert_eq!(back, (true, 7, at(2001, 2, 3, 4, 5, 6, 7)));
    Answers {
        types,
        rows: read,
        text,
        expressions,
        params,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_values_round_trip_as_in_postgres() {
    let (expected, got) = on_postgres_then_node(|c| async move { run(&c).await }).await;
    assert_eq!(
        expected.rows,
        rows(),
        "PostgreSQL reads back what was written"
    );
    assert_eq!(got.types, expected.types, "column types");
    assert_eq!(got.expressions, expected.expressions, "expression types");
    for ((sql, g), e) in UNTYPED.iter().zip(&got.params).zip(&expected.params) {
        assert_eq!(g, e, "parameter types of {sql}");
    }
    assert_eq!(got.rows, expected.rows, "values read back in binary");
    for (g, e) in got.text.iter().zip(&expected.text) {
        assert_eq!(g, e, "text of a row");
    }
    assert_eq!(got.text.len(), expected.text.len());
}

/// Doubles written as psycopg2 and most drivers write them, as the shortest decimal literal
/// that reads back as the same double (`0.20671915533942642`), come back with every bit, also
/// after they travelled through the log: run against PostgreSQL 15 first, then a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float8_literals_keep_every_bit() {
    async fn round_trip(c: &Client, values: &[f64]) {
        c.batch_execute("CREATE TABLE doubles (id int PRIMARY KEY, v double precision)")
            .await
            .unwrap();
        let rows: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("({i}, {v:?})"))
            .collect();
        c.batch_execute(&format!("INSERT INTO doubles VALUES {}", rows.join(", ")))
            .await
            .unwrap();
        let got: Vec<f64> = c
            .query("SELECT v FROM doubles ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got.len(), values.len());
        for (i, (g, w)) in got.iter().zip(values).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "row {i}: wrote {w:?}, read {g:?}");
        }
    }
    let seed = crate::support::seed("SQLKEEPER_FLOAT_SEED");
    eprintln!("SQLKEEPER_FLOAT_SEED={seed}");
    let mut rng = crate::support::Rng(seed);
    let mut values = vec![0.206_719_155_339_426_42, 5e-324, f64::MAX, -f64::MAX, 0.1];
    // Random bit patterns, the finite ones.
    while values.len() < 300 {
        let f = f64::from_bits(rng.next());
        if f.is_finite() {
            values.push(f);
        }
    }
    on_postgres_then_node(|c| {
        let values = values.clone();
        async move { round_trip(&c, &values).await }
    })
    .await;
}

/// The column of `generate_series` is described with PostgreSQL's type (`integer`, `bigint` when
/// an argument is one), under every way of naming it, so binary clients read numbers: run
/// against PostgreSQL 15 first, then a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_columns_have_postgres_types() {
    const QUERIES: &[&str] = &[
        "SELECT * FROM generate_series(2, 4)",
        "SELECT g FROM generate_series(1, 3) AS g",
        "SELECT g.g FROM generate_series(1, 3) AS g",
        "SELECT x FROM generate_series(5, 1, -2) AS s(x)",
        "SELECT s.x FROM generate_series(1, 3) AS s(x)",
        "SELECT g FROM generate_series(1, 3000000000, 1000000000) AS g",
        "SELECT g FROM generate_series(1::bigint, 3) AS g",
    ];
    async fn described(c: &Client) -> Vec<(Type, String)> {
        let mut out = Vec::new();
        for q in QUERIES {
            let st = c.prepare(q).await.unwrap();
            let ty = st.columns()[0].type_().clone();
            let rows = c.query(&st, &[]).await.unwrap();
            let first = match ty {
                Type::INT4 => rows[0].get::<_, i32>(0).to_string(),
                Type::INT8 => rows[0].get::<_, i64>(0).to_string(),
                _ => format!("{q}: not an integer column"),
            };
            out.push((ty, first));
        }
        out
    }
    let (expected, got) = on_postgres_then_node(|c| async move { described(&c).await }).await;
    assert_eq!(got, expected);
}

/// One row of `arr_rt`, as Rust values.
type ArrayRow = (
    i32,
    Option<Vec<Option<i32>>>,
    Option<Vec<i64>>,
    Option<Vec<Option<String>>>,
    Option<Vec<bool>>,
    Option<Vec<f64>>,
    Option<Vec<NaiveDate>>,
    Option<Vec<uuid::Uuid>>,
);

/// What one run of [`arrays_round_trip_in_binary_as_in_postgres`] saw.
#[derive(Debug, PartialEq)]
struct ArrayAnswers {
    params: Vec<Type>,
    rows: Vec<ArrayRow>,
    any: Vec<i32>,
    found: Vec<i32>,
    text: Vec<Option<String>>,
    columns: Vec<Type>,
}

/// Arrays (issue 11, acceptance 3) written with typed binary parameters by tokio-postgres and
/// read back in binary as Rust vectors: edges, NULL elements, empty and NULL arrays. The
/// statement is prepared without types, so each parameter takes its column's array type;
/// `id = ANY ($1)` takes an array of the column's type and `$1 = ANY (t)` its element type.
/// Run against PostgreSQL 15 first, which decides what is right, then a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrays_round_trip_in_binary_as_in_postgres() {
    fn rows() -> Vec<ArrayRow> {
        let words = ["a", "b c", "", "NULL", "\"\\", "h\u{e9}llo \u{2603}"];
        let mut t: Vec<Option<String>> = words.iter().map(|w| Some(w.to_string())).collect();
        t.push(None);
        vec![
            (
                1,
                Some(vec![Some(1), None, Some(i32::MIN), Some(i32::MAX)]),
                Some(vec![i64::MIN, i64::MAX]),
                Some(t),
                Some(vec![true, false]),
                Some(vec![1.5, -0.25, 1e300, 0.1]),
                Some(vec![date(1, 1, 1), date(9999, 12, 31)]),
                Some(vec![uuid::Uuid::from_u128(7), uuid::Uuid::max()]),
            ),
            (
                2,
                Some(vec![]),
                Some(vec![]),
                Some(vec![]),
                Some(vec![]),
                Some(vec![]),
                Some(vec![]),
                Some(vec![]),
            ),
            (3, None, None, None, None, None, None, None),
        ]
    }
    async fn run(c: &Client) -> ArrayAnswers {
        c.batch_execute(
            "CREATE TABLE arr_rt (id int PRIMARY KEY, i int[], b bigint[], t text[], \
             ok boolean[], f float8[], d date[], u uuid[])",
        )
        .await
        .unwrap();
        let insert = c
            .prepare("INSERT INTO arr_rt VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .await
            .unwrap();
        for r in rows() {
            c.execute(&insert, &[&r.0, &r.1, &r.2, &r.3, &r.4, &r.5, &r.6, &r.7])
                .await
                .unwrap();
        }
        let select = c.prepare("SELECT * FROM arr_rt ORDER BY id").await.unwrap();
        let columns = select.columns().iter().map(|c| c.type_().clone()).collect();
        let rows = c
            .query(&select, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    r.get(7),
                )
            })
            .collect();
        let ids = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get(0)).collect();
        let any = ids(c
            .query(
                "SELECT id FROM arr_rt WHERE id = ANY ($1) ORDER BY id",
                &[&vec![1i32, 3]],
            )
            .await
            .unwrap());
        let found = ids(c
            .query(
                "SELECT id FROM arr_rt WHERE $1 = ANY (t) OR i @> ARRAY[$2::int] ORDER BY id",
                &[&"b c", &7i32],
            )
            .await
            .unwrap());
        let text = text_rows(
            c.simple_query("SELECT i, b, t, ok, f, d, u FROM arr_rt WHERE id = 1")
                .await
                .unwrap(),
        )
        .into_iter()
        .flatten()
        .collect();
        ArrayAnswers {
            params: insert.params().to_vec(),
            rows,
            any,
            found,
            text,
            columns,
        }
    }
    let (expected, got) = on_postgres_then_node(|c| async move { run(&c).await }).await;
    assert_eq!(
        expected.rows,
        rows(),
        "PostgreSQL reads back what was written"
    );
    assert_eq!(got, expected);
}

/// The special values of `double precision` and `real` (issue 11, acceptance 3): ±Infinity
/// and NaN, and the largest and smallest finite values, written with binary parameters of a
/// statement prepared without types, read back in binary and as text, found by binary
/// parameters (NaN equals NaN and sorts after every other value in PostgreSQL), and summed.
/// Run against PostgreSQL 15 first, which decides what is right, then a node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float_specials_round_trip_in_binary_as_in_postgres() {
    /// A float as its `Debug` form, so NaN compares equal to NaN and -0 differs from 0.
    fn show(f: Option<f64>) -> Option<String> {
        f.map(|f| format!("{f:?}"))
    }
    let rows: Vec<(i32, Option<f64>, Option<f32>)> = vec![
        (1, Some(f64::INFINITY), Some(f32::NEG_INFINITY)),
        (2, Some(f64::NEG_INFINITY), Some(f32::NAN)),
        (3, Some(f64::NAN), Some(f32::MAX)),
        (4, Some(5e-324), Some(1e-45)),
        (5, Some(f64::MAX), Some(0.1)),
        (6, Some(-0.5), None),
    ];
    let want: Vec<Vec<Option<String>>> = rows
        .iter()
        .map(|(id, f, r)| vec![Some(id.to_string()), show(*f), show(r.map(f64::from))])
        .collect();
    async fn run(
        c: &Client,
        rows: &[(i32, Option<f64>, Option<f32>)],
    ) -> (
        Vec<Type>,
        Vec<Vec<Option<String>>>,
        Vec<Vec<i32>>,
        Vec<Vec<Option<String>>>,
    ) {
        c.batch_execute("CREATE TABLE float_rt (id int PRIMARY KEY, f float8, r real)")
            .await
            .unwrap();
        let insert = c
            .prepare("INSERT INTO float_rt VALUES ($1, $2, $3)")
            .await
            .unwrap();
        for (id, f, r) in rows {
            c.execute(&insert, &[id, f, r]).await.unwrap();
        }
        let read = c
            .query("SELECT id, f, r FROM float_rt ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| {
                let r: Option<f32> = row.get(2);
                vec![
                    Some(row.get::<_, i32>(0).to_string()),
                    show(row.get(1)),
                    show(r.map(f64::from)),
                ]
            })
            .collect();
        let ids = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get(0)).collect();
        let mut found = Vec::new();
        for f in [f64::NAN, f64::NEG_INFINITY, 5e-324] {
            found.push(ids(c
                .query("SELECT id FROM float_rt WHERE f = $1", &[&f])
                .await
                .unwrap()));
        }
        found.push(ids(c
            .query(
                "SELECT id FROM float_rt WHERE r < $1 ORDER BY r, id",
                &[&f32::INFINITY],
            )
            .await
            .unwrap()));
        found.push(ids(c
            .query("SELECT id FROM float_rt ORDER BY f DESC, id", &[])
            .await
            .unwrap()));
        let mut shown = text_rows(
            c.simple_query("SELECT * FROM float_rt ORDER BY id")
                .await
                .unwrap(),
        );
        let sums = c
            .query(
                "SELECT sum(f), avg(r), max(f) FROM float_rt WHERE id <> $1",
                &[&3i32],
            )
            .await
            .unwrap();
        let sum: Option<f64> = sums[0].get(0);
        let avg: Option<f64> = sums[0].get(1);
        let max: Option<f64> = sums[0].get(2);
        shown.push(vec![show(sum), show(avg), show(max)]);
        (insert.params().to_vec(), read, found, shown)
    }
    let (expected, got) = on_postgres_then_node(|c| {
        let rows = rows.clone();
        async move { run(&c, &rows).await }
    })
    .await;
    assert_eq!(expected.1, want, "PostgreSQL reads back what was written");
    assert_eq!(expected.0, [Type::INT4, Type::FLOAT8, Type::FLOAT4]);
    assert_eq!(got, expected);
}
