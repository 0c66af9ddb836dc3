//! PostgreSQL's `date`, `timestamp` and `timestamptz` values as text and as their binary wire
//! forms. Input: the forms drivers and people send (ISO 8601 with a space or `T`, fractions of a
//! second, `Z` and numeric offsets, `YYYYMMDD`, and PostgreSQL's special words); output: as
//! PostgreSQL prints them with `DateStyle = ISO` and `TimeZone = UTC` (`2024-02-29 10:00:00+00`).
//! The engine stores every value of these types in this output form, so values compare and
//! sort as text in time order (`-infinity` before any date, `infinity` after), and the wire
//! layer converts them to binary without guessing. Compare `src/backend/utils/adt/datetime.c`
//! (`ParseDateTime`, `DecodeDateTime`) and `timestamp.c` in PostgreSQL.
//!
//! Input forms outside these (`Feb 29 2024`, `02/29/2024`, time zone names, `BC` years) are
//! refused with 0A000 rather than guessed at; see `docs/compat.md`.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeDelta, Timelike};

/// One of the date and time types this module reads and prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateTimeType {
    /// `date`
    Date,
    /// `timestamp without time zone`
    Timestamp,
    /// `timestamp with time zone`, kept in UTC
    Timestamptz,
}

impl DateTimeType {
    /// The type for the engine's short name (`date`, `timestamp`, `timestamptz`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "date" => Self::Date,
            "timestamp" => Self::Timestamp,
            "timestamptz" => Self::Timestamptz,
            _ => return None,
        })
    }

    /// The name PostgreSQL uses in messages.
    pub fn pg_name(self) -> &'static str {
        match self {
            Self::Date => "date",
            Self::Timestamp => "timestamp without time zone",
            Self::Timestamptz => "timestamp with time zone",
        }
    }
}

/// A value of one of the types: a point in time (UTC for `timestamptz`; midnight for a
/// `date`), or one of the infinities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Moment {
    /// `-infinity`
    NegInfinity,
    /// A finite value.
    At(NaiveDateTime),
    /// `infinity`
    Infinity,
}

/// Why a text is not a value of the type, with PostgreSQL's SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateTimeError {
    /// 22007 (syntax), 22008 (field out of range), 22009 (offset out of range), 0A000 (a form
    /// PostgreSQL accepts and this node does not read).
    pub sqlstate: &'static str,
    /// PostgreSQL's message.
    pub message: String,
}

/// The largest year accepted. PostgreSQL's timestamps reach 294276 AD; the calendar library
/// stops at 262142, and no metadata needs either.
const YEAR_MAX: i32 = 262_142;

/// The largest offset from UTC PostgreSQL accepts (`+15:59:59`), in seconds.
const OFFSET_SECONDS_MAX: i64 = 16 * 3600 - 1;

/// 2000-01-01 00:00:00, PostgreSQL's epoch for the binary forms.
fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// A clock reading (Unix microseconds) as a point in time.
pub fn from_unix_micros(micros: i64) -> NaiveDateTime {
    DateTime::from_timestamp_micros(micros)
        .map(|d| d.naive_utc())
        .unwrap_or_default()
}

fn syntax(ty: DateTimeType, s: &str) -> DateTimeError {
    DateTimeError {
        sqlstate: "22007",
        message: format!("invalid input syntax for type {}: \"{s}\"", ty.pg_name()),
    }
}

fn range(s: &str) -> DateTimeError {
    DateTimeError {
        sqlstate: "22008",
        message: format!("date/time field value out of range: \"{s}\""),
    }
}

fn unsupported(ty: DateTimeType, s: &str) -> DateTimeError {
    DateTimeError {
        sqlstate: "0A000",
        message: format!(
            "{} input \"{s}\" is not supported: write it as ISO 8601 \
             (YYYY-MM-DD HH:MM:SS+HH:MM)",
            ty.pg_name()
        ),
    }
}

fn digits(x: &str) -> bool {
    !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit())
}

/// Reads `s` as a value of `ty`. `now` is the clock for `now`, `today`, `tomorrow` and
/// `yesterday` (Unix microseconds): the command's stamp where values are stored, so every
/// replica reads the same time. Without one, those words give `Ok(None)`.
pub fn parse(s: &str, ty: DateTimeType, now: Option<i64>) -> Result<Option<Moment>, DateTimeError> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let midnight = |d: NaiveDateTime| d.date().and_hms_opt(0, 0, 0).unwrap_or(d);
    let special = match lower.as_str() {
        "infinity" | "+infinity" => Some(Moment::Infinity),
        "-infinity" => Some(Moment::NegInfinity),
        "epoch" => Some(Moment::At(from_unix_micros(0))),
        "now" | "today" | "tomorrow" | "yesterday" => {
            let Some(now) = now else { return Ok(None) };
            let now = from_unix_micros(now);
            let day = TimeDelta::days(1);
            let at = match lower.as_str() {
                "now" => Some(now),
                "today" => Some(midnight(now)),
                "tomorrow" => midnight(now).checked_add_signed(day),
                _ => midnight(now).checked_sub_signed(day),
            };
            Some(Moment::At(at.ok_or_else(|| range(s))?))
        }
        _ => None,
    };
    if let Some(m) = special {
        return Ok(Some(truncate(m, ty)));
    }
    if !t.bytes().any(|b| b.is_ascii_digit()) {
        return Err(syntax(ty, s));
    }
    // The date: YYYY-MM-DD (4 to 6 digits of year), or YYYYMMDD / YYMMDD alone.
    let end = t
        .char_indices()
        .find(|&(i, c)| c == ' ' || (c == 'T' || c == 't') && i > 0)
        .map_or(t.len(), |(i, _)| i);
    let (date, rest) = (&t[..end], t[end..].trim_start_matches([' ', 'T', 't']));
    let (y, m, d) = if digits(date) {
        match date.len() {
            8 => (&date[..4], &date[4..6], &date[6..]),
            // YYMMDD: years 70-99 are 19xx, 00-69 20xx, as PostgreSQL reads two-digit years.
            6 => {
                let yy: i32 = date[..2].parse().unwrap_or(0);
                let y = if yy >= 70 { 1900 + yy } else { 2000 + yy };
                return finish(s, ty, y, &date[2..4], &date[4..], rest);
            }
            // What PostgreSQL makes of other lone numbers: two digits or seven and more are a
            // field out of range, one or three to five no date at all.
            2 | 7.. => return Err(range(s)),
            _ => return Err(syntax(ty, s)),
        }
    } else {
        let parts: Vec<&str> = date.split('-').collect();
        match parts[..] {
            [y, m, d] if digits(y) && (4..=6).contains(&y.len()) => (y, m, d),
            _ if other_form(date) => return Err(unsupported(ty, s)),
            _ => return Err(syntax(ty, s)),
        }
    };
    let year: i32 = y.parse().map_err(|_| range(s))?;
    finish(s, ty, year, m, d, rest)
}

/// Whether a date that is not ISO 8601 looks like one of PostgreSQL's other spellings, which
/// it reads and this node refuses (0A000), rather than text that is no date at all (22007):
/// `02/29/2024`, `2024.060`, `Feb 29 2024`, `29-Feb-2024`.
fn other_form(date: &str) -> bool {
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = date.to_ascii_lowercase();
    date.contains(['/', '.'])
        || lower
            .split(|c: char| !c.is_ascii_alphabetic())
            .any(|word| word.len() >= 3 && MONTHS.iter().any(|m| word.starts_with(m)))
}

/// The rest of [`parse`] once the year is known: month, day, time of day and offset.
fn finish(
    s: &str,
    ty: DateTimeType,
    year: i32,
    m: &str,
    d: &str,
    rest: &str,
) -> Result<Option<Moment>, DateTimeError> {
    if !(digits(m) && m.len() <= 2 && digits(d) && d.len() <= 2) {
        return Err(syntax(ty, s));
    }
    if !(1..=YEAR_MAX).contains(&year) {
        return Err(range(s));
    }
    let date = NaiveDate::from_ymd_opt(year, m.parse().unwrap_or(0), d.parse().unwrap_or(0))
        .ok_or_else(|| range(s))?;
    let (clock, zone) = split_zone(rest);
    let mut at = date.and_hms_opt(0, 0, 0).ok_or_else(|| range(s))?;
    if !clock.is_empty() {
        // A `date` checks the time of day and keeps its day: `2024-02-29 24:00` is 2024-02-29.
        let t = time_of_day(s, ty, clock)?;
        if ty != DateTimeType::Date {
            at = at.checked_add_signed(t).ok_or_else(|| range(s))?;
        }
    }
    let offset = match zone {
        "" => 0,
        z => offset_seconds(s, ty, z)?,
    };
    if ty == DateTimeType::Timestamptz {
        at = at
            .checked_sub_signed(TimeDelta::seconds(offset))
            .ok_or_else(|| range(s))?;
    }
    if at.year() > YEAR_MAX || at.year() < 1 {
        return Err(range(s));
    }
    Ok(Some(truncate(Moment::At(at), ty)))
}

/// Splits `10:00:00.5+05:30` into the clock and the zone (`+05:30`, `Z`, `UTC`), if any.
fn split_zone(rest: &str) -> (&str, &str) {
    let rest = rest.trim();
    let at = rest
        .char_indices()
        .find(|&(i, c)| matches!(c, '+' | '-') || (i > 0 && c.is_ascii_alphabetic()))
        .map(|(i, _)| i);
    match at {
        Some(i) => (rest[..i].trim(), rest[i..].trim()),
        None if rest.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => ("", rest),
        None => (rest, ""),
    }
}

/// `HH:MM[:SS[.ffffff]]` as the time since midnight: hours to 24 (only `24:00:00`), minutes
/// to 59, seconds to 60 (a leap second, counted into the next minute as PostgreSQL does).
fn time_of_day(s: &str, ty: DateTimeType, clock: &str) -> Result<TimeDelta, DateTimeError> {
    let fields: Vec<&str> = clock.split(':').collect();
    let (h, mi, sec) = match fields[..] {
        [h, mi] => (h, mi, "0"),
        [h, mi, sec] => (h, mi, sec),
        _ => return Err(syntax(ty, s)),
    };
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
    if !(digits(h) && h.len() <= 2 && digits(mi) && mi.len() == 2 && digits(whole))
        || whole.len() > 2
        || !(frac.is_empty() || digits(frac))
    {
        return Err(syntax(ty, s));
    }
    let (h, mi, whole): (i64, i64, i64) = (
        h.parse().unwrap_or(0),
        mi.parse().unwrap_or(0),
        whole.parse().unwrap_or(0),
    );
    // Microseconds as PostgreSQL computes them: the fraction read as a double, times a
    // million, rounded half to even (`rint`), so `.1234565` is `.123456`.
    let micros = match frac.is_empty() {
        true => 0,
        false => (format!("0.{frac}").parse::<f64>().unwrap_or(0.0) * 1e6).round_ties_even() as i64,
    };
    let over_midnight = h == 24 && (mi, whole, micros) != (0, 0, 0);
    if h > 24 || mi > 59 || whole > 60 || over_midnight {
        return Err(range(s));
    }
    Ok(TimeDelta::seconds(h * 3600 + mi * 60 + whole) + TimeDelta::microseconds(micros))
}

/// A zone written as `Z`, `UTC`, `GMT` or an offset (`+05`, `+0530`, `+05:30`, `-08:00:00`),
/// in seconds east of UTC.
fn offset_seconds(s: &str, ty: DateTimeType, zone: &str) -> Result<i64, DateTimeError> {
    let lower = zone.to_ascii_lowercase();
    if matches!(lower.as_str(), "z" | "utc" | "gmt" | "zulu") {
        return Ok(0);
    }
    let (sign, body) = match zone.as_bytes().first() {
        Some(b'+') => (1, &zone[1..]),
        Some(b'-') => (-1, &zone[1..]),
        _ => return Err(unsupported(ty, s)),
    };
    let fields: Vec<&str> = body.split(':').collect();
    let (h, m, sec) = match fields[..] {
        [hm] if digits(hm) && hm.len() <= 2 => (hm, "0", "0"),
        [hm] if digits(hm) && hm.len() == 4 => (&hm[..2], &hm[2..], "0"),
        [h, m] if digits(h) && h.len() <= 2 && digits(m) && m.len() == 2 => (h, m, "0"),
        [h, m, sec] if [h, m, sec].iter().all(|f| digits(f) && f.len() <= 2) => (h, m, sec),
        _ => return Err(syntax(ty, s)),
    };
    let (h, m, sec): (i64, i64, i64) = (
        h.parse().unwrap_or(0),
        m.parse().unwrap_or(0),
        sec.parse().unwrap_or(0),
    );
    if m > 59 || sec > 59 {
        return Err(range(s));
    }
    let total = h * 3600 + m * 60 + sec;
    if total > OFFSET_SECONDS_MAX {
        return Err(DateTimeError {
            sqlstate: "22009",
            message: format!("time zone displacement out of range: \"{s}\""),
        });
    }
    Ok(sign * total)
}

/// A `date` keeps only its day.
fn truncate(m: Moment, ty: DateTimeType) -> Moment {
    match (m, ty) {
        (Moment::At(at), DateTimeType::Date) => {
            Moment::At(at.date().and_hms_opt(0, 0, 0).unwrap_or(at))
        }
        _ => m,
    }
}

/// The text PostgreSQL prints for `m` as a value of `ty` (`DateStyle = ISO`, `TimeZone = UTC`).
pub fn format(m: Moment, ty: DateTimeType) -> String {
    let at = match m {
        Moment::Infinity => return "infinity".into(),
        Moment::NegInfinity => return "-infinity".into(),
        Moment::At(at) => at,
    };
    let mut out = format!("{:04}-{:02}-{:02}", at.year(), at.month(), at.day());
    if ty == DateTimeType::Date {
        return out;
    }
    out.push_str(&format!(
        " {:02}:{:02}:{:02}",
        at.hour(),
        at.minute(),
        at.second()
    ));
    let micros = at.nanosecond() / 1_000;
    if micros != 0 {
        let f = format!(".{micros:06}");
        out.push_str(f.trim_end_matches('0'));
    }
    if ty == DateTimeType::Timestamptz {
        out.push_str("+00");
    }
    out
}

/// `s` in the form PostgreSQL prints (see [`parse`] for `now`; `Ok(None)` when a clock word
/// has no clock).
pub fn canonical(
    s: &str,
    ty: DateTimeType,
    now: Option<i64>,
) -> Result<Option<String>, DateTimeError> {
    Ok(parse(s, ty, now)?.map(|m| format(m, ty)))
}

/// The binary wire form: a `date` is the 4-byte count of days since 2000-01-01, a timestamp
/// the 8-byte count of microseconds since 2000-01-01 00:00:00, big-endian; the infinities are
/// the extreme integers.
pub fn to_binary(m: Moment, ty: DateTimeType) -> Vec<u8> {
    let since = |at: NaiveDateTime| at.signed_duration_since(pg_epoch());
    match ty {
        DateTimeType::Date => match m {
            Moment::Infinity => i32::MAX,
            Moment::NegInfinity => i32::MIN,
            Moment::At(at) => since(at).num_days() as i32,
        }
        .to_be_bytes()
        .to_vec(),
        _ => match m {
            Moment::Infinity => i64::MAX,
            Moment::NegInfinity => i64::MIN,
            Moment::At(at) => since(at).num_microseconds().unwrap_or(i64::MAX),
        }
        .to_be_bytes()
        .to_vec(),
    }
}

/// Reads the binary wire form (see [`to_binary`]); `None` for the wrong length or a value out
/// of range.
pub fn from_binary(raw: &[u8], ty: DateTimeType) -> Option<Moment> {
    let at = match ty {
        DateTimeType::Date => {
            let days = i32::from_be_bytes(raw.try_into().ok()?);
            match days {
                i32::MAX => return Some(Moment::Infinity),
                i32::MIN => return Some(Moment::NegInfinity),
                _ => pg_epoch().checked_add_signed(TimeDelta::try_days(i64::from(days))?)?,
            }
        }
        _ => {
            let micros = i64::from_be_bytes(raw.try_into().ok()?);
            match micros {
                i64::MAX => return Some(Moment::Infinity),
                i64::MIN => return Some(Moment::NegInfinity),
                _ => pg_epoch().checked_add_signed(TimeDelta::microseconds(micros))?,
            }
        }
    };
    (1..=YEAR_MAX)
        .contains(&at.year())
        .then_some(Moment::At(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str, ty: DateTimeType) -> Result<String, &'static str> {
        canonical(s, ty, Some(1_709_200_800_123_456))
            .map(|o| o.unwrap())
            .map_err(|e| e.sqlstate)
    }

    #[test]
    fn reads_what_drivers_send_and_prints_as_postgres() {
        use DateTimeType::*;
        let cases: &[(&str, DateTimeType, Result<&str, &str>)] = &[
            ("2024-02-29", Date, Ok("2024-02-29")),
            ("2024-2-9", Date, Ok("2024-02-09")),
            ("20240229", Date, Ok("2024-02-29")),
            ("240229", Date, Ok("2024-02-29")),
            ("2024-02-29 10:00", Date, Ok("2024-02-29")),
            ("2024-02-29 24:00", Date, Ok("2024-02-29")),
            ("2024-02-29 23:00-05", Date, Ok("2024-02-29")),
            ("2024-02-29 10:00", Timestamp, Ok("2024-02-29 10:00:00")),
            (
                "2024-02-29T10:00:00.5",
                Timestamp,
                Ok("2024-02-29 10:00:00.5"),
            ),
            (
                " 2024-02-29 10:00:00.123456789 ",
                Timestamp,
                Ok("2024-02-29 10:00:00.123457"),
            ),
            (
                "2024-02-29 10:00:00+05:30",
                Timestamp,
                Ok("2024-02-29 10:00:00"),
            ),
            (
                "2024-02-29 10:00:00+05:30",
                Timestamptz,
                Ok("2024-02-29 04:30:00+00"),
            ),
            (
                "2024-02-29T10:00:00Z",
                Timestamptz,
                Ok("2024-02-29 10:00:00+00"),
            ),
            (
                "2024-02-29 10:00:00 UTC",
                Timestamptz,
                Ok("2024-02-29 10:00:00+00"),
            ),
            (
                "2024-02-29 23:00-0200",
                Timestamptz,
                Ok("2024-03-01 01:00:00+00"),
            ),
            (
                "2024-02-29 10:00",
                Timestamptz,
                Ok("2024-02-29 10:00:00+00"),
            ),
            ("2024-02-29 24:00", Timestamp, Ok("2024-03-01 00:00:00")),
            ("2024-12-31 23:59:60", Timestamp, Ok("2025-01-01 00:00:00")),
            ("0001-01-01", Date, Ok("0001-01-01")),
            ("infinity", Timestamptz, Ok("infinity")),
            ("-Infinity", Date, Ok("-infinity")),
            ("epoch", Timestamptz, Ok("1970-01-01 00:00:00+00")),
            ("now", Timestamptz, Ok("2024-02-29 10:00:00.123456+00")),
            ("today", Timestamp, Ok("2024-02-29 00:00:00")),
            ("tomorrow", Date, Ok("2024-03-01")),
            ("yesterday", Date, Ok("2024-02-28")),
            ("2023-02-29", Date, Err("22008")),
            ("2024-13-01", Date, Err("22008")),
            ("2024-02-29 24:00:01", Timestamp, Err("22008")),
            ("2024-02-29 10:61", Timestamptz, Err("22008")),
            ("2024-02-29 10:00+16:00", Timestamptz, Err("22009")),
            ("abc", Timestamptz, Err("22007")),
            ("42", Date, Err("22008")),
            ("7", Date, Err("22007")),
            ("12345", Date, Err("22007")),
            ("1234567", Date, Err("22008")),
            ("2024-02-29 10", Timestamp, Err("22007")),
            ("2024-0x-01", Date, Err("22007")),
            ("Feb 29 2024", Date, Err("0A000")),
            ("02/29/2024", Date, Err("0A000")),
            ("2024-02-29 10:00 Europe/Berlin", Timestamptz, Err("0A000")),
            ("262142-12-31 24:00", Timestamp, Err("22008")),
            ("262143-01-01", Date, Err("22008")),
            ("0001-01-01 00:00+01", Timestamptz, Err("22008")),
            ("29-Feb-2024", Date, Err("0A000")),
            ("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", Date, Err("22007")),
            ("{\"a\": 1}", Date, Err("22007")),
        ];
        for (input, ty, want) in cases {
            assert_eq!(
                text(input, *ty).as_deref(),
                want.as_deref(),
                "{input} as {ty:?}"
            );
        }
        assert_eq!(canonical("now", DateTimeType::Date, None), Ok(None));
    }

    #[test]
    fn printed_values_sort_in_time_order_and_are_read_back_unchanged() {
        use DateTimeType::*;
        let printed: Vec<String> = [
            "-infinity",
            "0999-12-31 23:59:59",
            "1970-01-01",
            "2024-02-29 10:00:00.5",
            "2024-02-29 10:00:01",
            "9999-12-31 23:59:59.999999",
            "infinity",
        ]
        .iter()
        .map(|s| text(s, Timestamptz).unwrap())
        .collect();
        let mut sorted = printed.clone();
        sorted.sort();
        assert_eq!(printed, sorted);
        for p in &printed {
            assert_eq!(&text(p, Timestamptz).unwrap(), p);
        }
    }

    #[test]
    fn binary_forms_are_postgres_epoch_counts() {
        use DateTimeType::*;
        let m = |s: &str, ty| parse(s, ty, None).unwrap().unwrap();
        assert_eq!(to_binary(m("2000-01-01", Date), Date), 0i32.to_be_bytes());
        assert_eq!(
            to_binary(m("1999-12-31", Date), Date),
            (-1i32).to_be_bytes()
        );
        assert_eq!(
            to_binary(m("2000-01-02 00:00:00.000001+00", Timestamptz), Timestamptz),
            86_400_000_001i64.to_be_bytes()
        );
        assert_eq!(
            to_binary(Moment::Infinity, Timestamp),
            i64::MAX.to_be_bytes()
        );
        for (s, ty) in [
            ("2024-02-29 10:00:00.123456", Timestamp),
            ("1900-03-01 00:00:00+00", Timestamptz),
            ("2024-02-29", Date),
            ("-infinity", Date),
        ] {
            let v = m(s, ty);
            assert_eq!(from_binary(&to_binary(v, ty), ty), Some(v));
        }
        assert_eq!(from_binary(&[0, 0, 1], Date), None);
        assert_eq!(from_binary(&(i64::MAX - 1).to_be_bytes(), Timestamp), None);
    }
}
