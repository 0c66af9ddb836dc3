//! Deterministic replacements for SQLite's non-deterministic functions on the apply
//! connection. Every source of time or randomness reads the command's [`Stamp`], fixed by the
//! leader when it proposed the command, so every replica computes the same rows, at any time,
//! after any restart. The rules are listed in `docs/determinism.md`.
//!
//! - `CURRENT_TIMESTAMP`, `CURRENT_DATE`, `CURRENT_TIME` (also inside `DEFAULT`s and
//!   triggers): SQLite compiles these keywords to calls of functions with the same names,
//!   which are overridden here.
//! - `date`, `time`, `datetime`, `julianday`, `unixepoch`, `strftime`, `timediff`: an argument
//!   `'now'` is replaced by the stamp's time, then SQLite's own implementation runs on a
//!   private in-memory connection (without overrides), so formatting and modifiers are
//!   exactly SQLite's.
//! - `random()`, `randomblob(n)`, `gen_random_uuid()`: a PRNG seeded by the stamp's seed.
//! - `now()`, `transaction_timestamp()`, `statement_timestamp()`, `clock_timestamp()`: the
//!   stamp's time as Postgres `timestamptz` text.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

use crate::command::Stamp;

/// SQLite date and time functions whose `'now'` argument reads the clock.
const CLOCK_FUNCTIONS: &[&str] = &[
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "timediff",
];

/// The values of the command being applied, shared with the registered functions.
#[derive(Default)]
pub(crate) struct StampCell {
    /// Microseconds since the Unix epoch.
    unix_micros: AtomicI64,
    /// PRNG state (splitmix64), reset from the stamp's seed for every command.
    prng: AtomicU64,
}

impl StampCell {
    /// Makes `stamp` the source of time and randomness until the next call.
    pub(crate) fn set(&self, stamp: &Stamp) {
        self.unix_micros.store(stamp.unix_micros, Ordering::SeqCst);
        self.prng.store(stamp.seed, Ordering::SeqCst);
    }

    /// The PRNG position, to give back randomness drawn by a read inside a transaction.
    pub(crate) fn save(&self) -> u64 {
        self.prng.load(Ordering::SeqCst)
    }

    /// Returns the PRNG to a position from [`StampCell::save`].
    pub(crate) fn restore(&self, saved: u64) {
        self.prng.store(saved, Ordering::SeqCst);
    }

    fn next_u64(&self) -> u64 {
        // splitmix64: tiny, fast and good enough for ids and sampling; not cryptographic.
        let mut z = self
            .prng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The stamp's time, Unix microseconds.
    pub(crate) fn micros(&self) -> i64 {
        self.unix_micros.load(Ordering::SeqCst)
    }
}

/// Formats Unix microseconds as SQLite's `YYYY-MM-DD HH:MM:SS.SSS` (UTC).
pub(crate) fn sqlite_datetime(micros: i64) -> String {
    let (date, secs_of_day, frac_micros) = civil(micros);
    format!(
        "{date} {:02}:{:02}:{:02}.{:03}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        frac_micros / 1000
    )
}

/// Formats Unix microseconds as Postgres `timestamptz` text in UTC: `2026-11-21 05:10:39.123456+00`.
pub(crate) fn postgres_timestamptz(micros: i64) -> String {
    let (date, secs_of_day, frac_micros) = civil(micros);
    let mut s = format!(
        "{date} {:02}:{:02}:{:02}",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    );
    if frac_micros != 0 {
        let f = format!(".{frac_micros:06}");
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str("+00");
    s
}

/// (YYYY-MM-DD, seconds of the day, microseconds within the second), UTC, proleptic
/// Gregorian (Howard Hinnant's `civil_from_days`).
fn civil(micros: i64) -> (String, i64, i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (format!("{y:04}-{m:02}-{d:02}"), sod, frac)
}

fn uuid_v4(cell: &StampCell) -> String {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&cell.next_u64().to_le_bytes());
    b[8..].copy_from_slice(&cell.next_u64().to_le_bytes());
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    sqlkeeper_sql::uuid::text(&b)
}

/// Registers the deterministic functions on `conn`; they read `cell`.
pub(crate) fn install(conn: &Connection, cell: Arc<StampCell>) -> rusqlite::Result<()> {
    let det = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let nondet = FunctionFlags::SQLITE_UTF8;

    // CURRENT_TIMESTAMP / CURRENT_DATE / CURRENT_TIME keep SQLite's formats.
    for (name, len) in [
        ("current_timestamp", 19usize),
        ("current_date", 10),
        ("current_time", 19),
    ] {
        let c = cell.clone();
        conn.create_scalar_function(name, 0, det, move |_ctx: &Context<'_>| {
            let full = sqlite_datetime(c.micros());
            Ok(match name {
                "current_time" => full[11..19].to_string(),
                _ => full[..len].to_string(),
            })
        })?;
    }

    // Date functions: replace 'now' with the stamp's time and run SQLite's implementation
    // on a private connection that has no overrides.
    let helper = Arc::new(Mutex::new(Connection::open_in_memory()?));
    for name in CLOCK_FUNCTIONS {
        let c = cell.clone();
        let h = helper.clone();
        conn.create_scalar_function(*name, -1, det, move |ctx: &Context<'_>| {
            let now = sqlite_datetime(c.micros());
            let mut args: Vec<SqlValue> = Vec::with_capacity(ctx.len());
            for i in 0..ctx.len() {
                let v = ctx.get_raw(i);
                let is_now = matches!(v, ValueRef::Text(t) if t.eq_ignore_ascii_case(b"now"));
                args.push(if is_now {
                    SqlValue::Text(now.clone())
                } else {
                    crate::functions::owned(v)
                });
            }
            // date() with no argument means date('now').
            if args.is_empty() && *name != "strftime" {
                args.push(SqlValue::Text(now));
            } else if args.len() == 1 && *name == "strftime" {
                // strftime(format) alone means 'now'.
                args.push(SqlValue::Text(now));
            }
            let marks: Vec<String> = (1..=args.len()).map(|i| format!("?{i}")).collect();
            let sql = format!("SELECT {name}({})", marks.join(", "));
            let helper = h.lock().unwrap_or_else(|p| p.into_inner());
            helper.query_row(&sql, rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, SqlValue>(0)
            })
        })?;
    }

    let c = cell.clone();
    conn.create_scalar_function("random", 0, nondet, move |_ctx: &Context<'_>| {
        Ok(c.next_u64() as i64)
    })?;
    let c = cell.clone();
    conn.create_scalar_function("randomblob", 1, nondet, move |ctx: &Context<'_>| {
        let n = ctx.get::<i64>(0).unwrap_or(1).clamp(1, 1 << 20) as usize;
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&c.next_u64().to_le_bytes());
        }
        out.truncate(n);
        Ok(out)
    })?;
    let c = cell.clone();
    conn.create_scalar_function("gen_random_uuid", 0, nondet, move |_ctx: &Context<'_>| {
        Ok(uuid_v4(&c))
    })?;
    let c = cell.clone();
    register_postgres_clock(conn, det, move || c.micros())?;
    Ok(())
}

/// The Postgres time functions (`now()` and its siblings) as `timestamptz` text from `clock`
/// (Unix microseconds).
fn register_postgres_clock(
    conn: &Connection,
    flags: FunctionFlags,
    clock: impl Fn() -> i64 + Send + Clone + 'static,
) -> rusqlite::Result<()> {
    for name in [
        "now",
        "transaction_timestamp",
        "statement_timestamp",
        "clock_timestamp",
    ] {
        let clock = clock.clone();
        conn.create_scalar_function(name, 0, flags, move |_ctx: &Context<'_>| {
            Ok(postgres_timestamptz(clock()))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        // 2026-11-21T05:10:39.123456Z
        let t = 1_795_237_839_123_456;
        assert_eq!(sqlite_datetime(t), "2026-11-21 05:10:39.123");
        assert_eq!(postgres_timestamptz(t), "2026-11-21 05:10:39.123456+00");
        assert_eq!(postgres_timestamptz(0), "1970-01-01 00:00:00+00");
    }

    #[test]
    fn functions_read_the_stamp() {
        let conn = Connection::open_in_memory().unwrap();
        let cell = Arc::new(StampCell::default());
        install(&conn, cell.clone()).unwrap();
        cell.set(&Stamp {
            unix_micros: 1_795_237_839_123_456,
            seed: 7,
        });
        let q = |sql: &str| -> String {
            conn.query_row(sql, [], |r| r.get::<_, SqlValue>(0))
                .map(|v| format!("{v:?}"))
                .unwrap()
        };
        assert_eq!(
            q("SELECT CURRENT_TIMESTAMP"),
            "Text(\"2026-11-21 05:10:39\")"
        );
        assert_eq!(q("SELECT CURRENT_DATE"), "Text(\"2026-11-21\")");
        assert_eq!(
            q("SELECT datetime('now', '+1 day')"),
            "Text(\"2026-11-22 05:10:39\")"
        );
        assert_eq!(q("SELECT date('2020-01-01')"), "Text(\"2020-01-01\")");
        assert_eq!(q("SELECT now()"), "Text(\"2026-11-21 05:10:39.123456+00\")");
        let a = q("SELECT random()");
        cell.set(&Stamp {
            unix_micros: 0,
            seed: 7,
        });
        assert_eq!(q("SELECT random()"), a, "same seed, same sequence");
        let u = q("SELECT gen_random_uuid()");
        assert_eq!(u.len(), "Text(\"\")".len() + 36);
    }
}
