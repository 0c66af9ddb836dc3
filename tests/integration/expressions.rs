//! A second oracle for values (issue 11), independent of the hand-written corpus: random typed
//! expressions (in the spirit of SQLancer's expression generators) are evaluated with
//! `SELECT <expr>` on a real PostgreSQL and on sqlkeeper, or stored with an `INSERT` into a
//! column of a checked type and read back, and the answers compared: the text of the value (or
//! NULL), or the SQLSTATE of the error. Literals sit at the edges of their types
//! (the integer limits, zero, empty and numeric-looking text, invalid dates, uuids and JSON).
//!
//! The short run here is part of the test command (`EXPRESSIONS_COUNT`, default 400, seeded by
//! `EXPRESSIONS_SEED`). The long run is one command:
//! `EXPRESSIONS_COUNT=20000 cargo test --test integration expressions -- --nocapture`.
//! Every run writes its match rate and its mismatches, by class, to
//! `target/expressions-report.txt`; `docs/compat.md` keeps the figures of the last long run.
//!
//! What must hold: where PostgreSQL raises an error, sqlkeeper raises one too, never answering
//! with a value, unless the error may come from a subexpression PostgreSQL folds at planning
//! time but never evaluates ([`lazy`]). The other classes of mismatch are counted and
//! reported; those with a fractional literal ([`numeric`]: a `numeric` in PostgreSQL, a float
//! here) apart.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::support::{connect, seed, Postgres, Rng, TestNode};

/// The table whose typed columns generated values are stored in.
const TYPED_TABLE: &str =
    "CREATE TABLE typed_values (id int PRIMARY KEY, i2 smallint, i4 integer, \
     i8 bigint, v5 varchar(5), c3 char(3), d date, u uuid, j jsonb, f8 double precision, \
     r4 real, ts timestamp, tz timestamptz)";

/// Its columns, with the type of expression generated for them (`None`: a text literal).
const TYPED_COLUMNS: &[(&str, Option<Ty>)] = &[
    ("i2", Some(Ty::Int)),
    ("i4", Some(Ty::Int)),
    ("i8", Some(Ty::Int)),
    ("v5", Some(Ty::Text)),
    ("c3", Some(Ty::Text)),
    ("d", None),
    ("u", None),
    ("j", None),
    ("f8", Some(Ty::Float)),
    ("r4", Some(Ty::Float)),
    ("ts", Some(Ty::Time)),
    ("tz", Some(Ty::Time)),
];

/// Deepest nesting of a generated expression.
const DEPTH_MAX: u32 = 4;

#[derive(Clone, Copy)]
enum Ty {
    Int,
    Text,
    Bool,
    Float,
    /// Date and time text (`timestamp`, `timestamptz`, `date` values as text, so that
    /// comparisons and casts mix them as clients do).
    Time,
}

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

fn int_literal(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => pick(rng, &["0", "1", "-1", "2", "7", "10", "100"]).into(),
        1 => pick(rng, &["2147483647", "-2147483648", "32767", "-32768"]).into(),
        2 => pick(rng, &["9223372036854775807", "2147483648", "-2147483649"]).into(),
        3 => pick(rng, &["2.5", "-2.5", "3.7", "0.0", "1.5"]).into(),
        4 => format!(
            "'{}'::int",
            pick(rng, &["42", " 42 ", "-7", "abc", "", "12.5", "+3"])
        ),
        5 => pick(rng, &["NULL::int", "(NULL::int)"]).into(),
        _ => (rng.below(200) as i64 - 100).to_string(),
    }
}

fn float_literal(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => pick(
            rng,
            &[
                "0.1",
                "1.5",
                "-2.25",
                "1e-5",
                "1.5e300",
                "123456789012345678",
            ],
        )
        .into(),
        1 => format!(
            "'{}'::{}",
            pick(
                rng,
                &["1.5e3", " 0.1 ", "Infinity", "-inf", "abc", "", "1e400", "1e-400", "NaN"]
            ),
            pick(rng, &["float8", "real", "double precision"])
        ),
        2 => format!(
            "CAST({} AS {})",
            pick(rng, &["0.1", "3", "1e39", "-1e-50", "2147483647"]),
            pick(rng, &["float8", "real"])
        ),
        3 => pick(rng, &["NULL::float8", "0.0::float8"]).into(),
        _ => format!("{}::float8", rng.below(2000) as i64 - 1000),
    }
}

fn time_literal(rng: &mut Rng) -> String {
    let s = pick(
        rng,
        &[
            "2024-02-29",
            "2024-02-29 10:00",
            "2024-02-29T10:00:00.5Z",
            "2024-02-29 23:30:00-05:30",
            "2024-02-29 24:00",
            "2024-02-29 24:00:01",
            "2024-02-30 10:00",
            "1999-12-31 23:59:59.9999995+01",
            "0001-01-01 00:00:00",
            "9999-12-31 23:59:59.999999",
            "20240229",
            "epoch",
            "infinity",
            "-infinity",
            "abc",
            "",
            "2024-02-29 10:00+16:00",
        ],
    );
    format!("'{s}'")
}

fn text_literal(rng: &mut Rng) -> String {
    let s = pick(
        rng,
        &[
            "''",
            "'abc'",
            "'ABC'",
            "'42'",
            "' 7 '",
            "'héllo'",
            "'a%b_c'",
            "'2024-02-29'",
            "'2024-02-30'",
            "'2023-13-01'",
            "'{\"a\": 1}'",
            "'{\"a\":'",
            "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'",
            "'not-a-uuid'",
            "NULL::text",
        ],
    );
    s.into()
}

fn expr(rng: &mut Rng, ty: Ty, depth: u32) -> String {
    let leaf = depth >= DEPTH_MAX || rng.below(3) == 0;
    match ty {
        Ty::Int if leaf => int_literal(rng),
        Ty::Text if leaf => text_literal(rng),
        Ty::Bool if leaf => pick(rng, &["true", "false", "NULL::boolean"]).into(),
        Ty::Float if leaf => float_literal(rng),
        Ty::Time if leaf => format!(
            "CAST({} AS {})",
            time_literal(rng),
            pick(rng, &["timestamptz", "timestamp", "date"])
        ),
        Ty::Float => {
            let d = depth + 1;
            match rng.below(5) {
                0 | 1 => format!(
                    "({} {} {})",
                    expr(rng, Ty::Float, d),
                    pick(rng, &["+", "-", "*", "/"]),
                    expr(rng, Ty::Float, d)
                ),
                2 => format!("abs({})", expr(rng, Ty::Float, d)),
                3 => format!(
                    "CAST({} AS {})",
                    expr(rng, Ty::Int, d),
                    pick(rng, &["float8", "real"])
                ),
                _ => format!("(- {})", expr(rng, Ty::Float, d)),
            }
        }
        Ty::Time => {
            let d = depth + 1;
            match rng.below(3) {
                0 => format!(
                    "CAST({} AS {})",
                    expr(rng, Ty::Time, d),
                    pick(rng, &["timestamptz", "timestamp", "date"])
                ),
                1 => format!(
                    "greatest({}, {})",
                    expr(rng, Ty::Time, d),
                    expr(rng, Ty::Time, d)
                ),
                _ => format!(
                    "CAST({} AS {})",
                    time_literal(rng),
                    pick(rng, &["timestamptz", "timestamp"])
                ),
            }
        }
        Ty::Int => {
            let d = depth + 1;
            match rng.below(12) {
                0..=4 => format!(
                    "({} {} {})",
                    expr(rng, Ty::Int, d),
                    pick(rng, &["+", "-", "*", "/", "%"]),
                    expr(rng, Ty::Int, d)
                ),
                5 => format!("abs({})", expr(rng, Ty::Int, d)),
                6 => format!("length({})", expr(rng, Ty::Text, d)),
                7 => format!(
                    "{}({}, {})",
                    pick(rng, &["greatest", "least", "coalesce", "nullif", "mod"]),
                    expr(rng, Ty::Int, d),
                    expr(rng, Ty::Int, d)
                ),
                8 => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    expr(rng, Ty::Bool, d),
                    expr(rng, Ty::Int, d),
                    expr(rng, Ty::Int, d)
                ),
                9 => format!(
                    "CAST({} AS {})",
                    expr(rng, Ty::Text, d),
                    pick(rng, &["int", "integer", "smallint", "bigint"])
                ),
                10 => format!(
                    "CAST({} AS {})",
                    expr(rng, Ty::Int, d),
                    pick(rng, &["int", "smallint", "bigint"])
                ),
                _ => format!("(- {})", expr(rng, Ty::Int, d)),
            }
        }
        Ty::Text => {
            let d = depth + 1;
            match rng.below(9) {
                0 | 1 => format!("({} || {})", expr(rng, Ty::Text, d), expr(rng, Ty::Text, d)),
                2 => format!(
                    "{}({})",
                    pick(rng, &["upper", "lower", "btrim", "reverse"]),
                    expr(rng, Ty::Text, d)
                ),
                3 => format!("CAST({} AS text)", expr(rng, Ty::Int, d)),
                4 => format!(
                    "CAST({} AS varchar({}))",
                    expr(rng, Ty::Text, d),
                    1 + rng.below(6)
                ),
                5 => format!(
                    "{}({}, {})",
                    pick(rng, &["left", "right"]),
                    expr(rng, Ty::Text, d),
                    rng.below(7) as i64 - 3
                ),
                6 => format!(
                    "CAST(CAST({} AS {}) AS text)",
                    text_literal(rng),
                    pick(rng, &["date", "uuid", "json"])
                ),
                7 => format!(
                    "replace({}, {}, {})",
                    expr(rng, Ty::Text, d),
                    text_literal(rng),
                    text_literal(rng)
                ),
                _ => format!(
                    "coalesce({}, {})",
                    expr(rng, Ty::Text, d),
                    expr(rng, Ty::Text, d)
                ),
            }
        }
        Ty::Bool => {
            let d = depth + 1;
            match rng.below(9) {
                0 | 1 => format!(
                    "({} {} {})",
                    expr(rng, Ty::Int, d),
                    pick(rng, &["=", "<>", "<", "<=", ">", ">="]),
                    expr(rng, Ty::Int, d)
                ),
                2 => format!("({} = {})", expr(rng, Ty::Text, d), expr(rng, Ty::Text, d)),
                3 => format!(
                    "({} {} {})",
                    expr(rng, Ty::Bool, d),
                    pick(rng, &["AND", "OR"]),
                    expr(rng, Ty::Bool, d)
                ),
                4 => format!("(NOT {})", expr(rng, Ty::Bool, d)),
                5 => format!(
                    "({} IS {}NULL)",
                    expr(rng, Ty::Int, d),
                    pick(rng, &["", "NOT "])
                ),
                6 => format!(
                    "({} {} {})",
                    expr(rng, Ty::Float, d),
                    pick(rng, &["=", "<", ">="]),
                    expr(rng, Ty::Float, d)
                ),
                7 => format!(
                    "(CAST({} AS timestamptz) {} CAST({} AS timestamptz))",
                    time_literal(rng),
                    pick(rng, &["=", "<", ">="]),
                    time_literal(rng)
                ),
                _ => format!("({} LIKE 'a%')", expr(rng, Ty::Text, d)),
            }
        }
    }
}

/// The answer to `SELECT <expr>`: the value's text (None for NULL), or the error's SQLSTATE.
type Answer = Result<Option<String>, String>;

async fn answer(client: &tokio_postgres::Client, sql: &str) -> Answer {
    match client.simple_query(sql).await {
        Ok(messages) => Ok(messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
                _ => None,
            })
            .flatten()),
        Err(e) => Err(e
            .code()
            .map(|c| c.code().to_string())
            .unwrap_or_else(|| format!("no SQLSTATE: {e}"))),
    }
}

/// Where an error may come from a subexpression that need not be evaluated. PostgreSQL folds
/// constant subexpressions at planning time, also those of untaken `CASE` branches and of
/// `COALESCE` arguments after a non-NULL one ("Conditional Expressions" warns of this), and
/// SQL leaves the evaluation order of `AND` and `OR` operands open ("Expression Evaluation
/// Rules": a subexpression whose value cannot change the result may not be evaluated at all);
/// SQLite evaluates these only when reached.
fn lazy(sql: &str) -> bool {
    ["CASE WHEN", "coalesce(", " AND ", " OR "]
        .iter()
        .any(|w| sql.contains(w))
}

/// Whether the expression has a fractional literal: a `numeric` in PostgreSQL, a binary float
/// here (no `numeric` type yet), so its value, and whether the value fits where it goes (a
/// `varchar(5)`), can differ before any check runs.
fn numeric(sql: &str) -> bool {
    sql.as_bytes()
        .windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit())
}

fn class(sql: &str, pg: &Answer, sk: &Answer) -> Option<String> {
    match (pg, sk) {
        (a, b) if a == b => None,
        (Err(p), Ok(_)) if lazy(sql) => Some(format!(
            "PostgreSQL raises {p} (in an operand that need not be evaluated), sqlkeeper answers a value"
        )),
        (Err(p), Ok(_)) if numeric(sql) => Some(format!(
            "PostgreSQL raises {p} (with a numeric operand), sqlkeeper answers a value"
        )),
        (Err(p), Ok(_)) => Some(format!("PostgreSQL raises {p}, sqlkeeper answers a value")),
        (Ok(_), Err(s)) => Some(format!("PostgreSQL answers a value, sqlkeeper raises {s}")),
        (Err(p), Err(s)) => Some(format!("PostgreSQL raises {p}, sqlkeeper raises {s}")),
        (Ok(_), Ok(_)) => Some("different values".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_expressions_match_postgres() {
    let count: usize = std::env::var("EXPRESSIONS_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    let seed = seed("EXPRESSIONS_SEED");
    eprintln!(
        "expressions: seed {seed} (EXPRESSIONS_SEED={seed} replays this run), {count} expressions"
    );
    let postgres = Postgres::start();
    let pg = connect(format!("127.0.0.1:{}", postgres.port).parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let sk = node.client().await;

    for c in [&pg, &sk] {
        c.batch_execute(TYPED_TABLE).await.unwrap();
    }
    let mut rng = Rng(seed);
    let mut matched = 0usize;
    let mut classes: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
    for n in 0..count {
        let (sql, p, s) = if rng.below(4) == 0 {
            // A value stored in a typed column: the INSERT's outcome, then what reads back.
            let (column, ty) = TYPED_COLUMNS[rng.below(TYPED_COLUMNS.len() as u64) as usize];
            let value = match ty {
                Some(ty) => expr(&mut rng, ty, 1),
                None => text_literal(&mut rng),
            };
            let insert = format!("INSERT INTO typed_values (id, {column}) VALUES ({n}, {value})");
            let select = format!("SELECT {column} FROM typed_values WHERE id = {n}");
            let mut both = Vec::new();
            for c in [&pg, &sk] {
                let i = answer(c, &insert).await;
                let r = answer(c, &select).await;
                both.push(match (i, r) {
                    (Err(e), _) => Err(e),
                    (Ok(_), r) => r,
                });
            }
            let s = both.pop().unwrap();
            (insert, both.pop().unwrap(), s)
        } else {
            let ty = [Ty::Int, Ty::Text, Ty::Bool, Ty::Float, Ty::Time][rng.below(5) as usize];
            let sql = format!("SELECT {}", expr(&mut rng, ty, 0));
            let (p, s) = (answer(&pg, &sql).await, answer(&sk, &sql).await);
            (sql, p, s)
        };
        match class(&sql, &p, &s) {
            None => matched += 1,
            Some(c) => {
                let entry = classes.entry(c).or_default();
                entry.0 += 1;
                if entry.1.len() < 10 {
                    entry
                        .1
                        .push(format!("{sql}\n    postgres: {p:?}\n    sqlkeeper: {s:?}"));
                }
            }
        }
    }
    // The node must still serve after everything it was sent.
    assert_eq!(answer(&sk, "SELECT 1").await, Ok(Some("1".into())));

    let mut report = format!(
        "{matched} of {count} expressions match PostgreSQL ({:.1}%), seed {seed}\n",
        100.0 * matched as f64 / count as f64
    );
    for (c, (n, examples)) in &classes {
        report.push_str(&format!("\n## {c}: {n}\n"));
        for e in examples {
            report.push_str(&format!("  {e}\n"));
        }
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/expressions-report.txt");
    let _ = std::fs::write(&path, &report);
    eprintln!("{report}");
    // A value where PostgreSQL raises an error is a silent wrong answer, whatever the error;
    // only an error of an operand that need not be evaluated is left (PostgreSQL's planner
    // folds constants that execution would never reach).
    let silent: Vec<&String> = classes
        .keys()
        .filter(|c| c.ends_with("sqlkeeper answers a value") && !c.contains("need not be"))
        .collect();
    assert!(
        silent.is_empty(),
        "sqlkeeper answered with a value where PostgreSQL raises an error: {silent:?}\n{report}"
    );
    node.stop().await;
}
