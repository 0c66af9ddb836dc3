//! Postgres types for result columns and parameters, and converting SQLite values to and from
//! their text and binary wire forms.

use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use sqlkeeper_session::{Column, Value};
use sqlkeeper_sql::datetime::{self, DateTimeType};
use sqlkeeper_sql::{ColumnHint, PgType};

use crate::errors::ClientError;

/// The Postgres type a result column is described with. Declared column types map to their
/// Postgres type; types this node cannot yet encode in binary (numeric, time, interval, ...)
/// and untyped expressions are described as `text`, so every described column can be sent in
/// the format the client asks for. `count(...)` is `bigint`, as in Postgres.
pub(crate) fn column_type(col: &Column) -> Type {
    match &col.decl_type {
        Some(decl) => declared_type(decl),
        None if col.name.to_ascii_lowercase().starts_with("count(") => Type::INT8,
        None => Type::TEXT,
    }
}

/// The Postgres type of a declared column type (`integer`, `varchar(8)`, `timestamptz`).
pub(crate) fn declared_type(decl: &str) -> Type {
    match sqlkeeper_sql::pg_type_of_name(decl) {
        Some(t) => wire_type(t),
        // Object identifiers, as casts of parameters name them (`$1::oid[]` in asyncpg's type
        // introspection): read as integers.
        None => match decl.trim().to_ascii_lowercase().as_str() {
            "oid" => Type::OID,
            "oid[]" => Type::OID_ARRAY,
            _ => Type::TEXT,
        },
    }
}

/// The date and time type of a wire type, if it is one.
fn date_time_type(ty: &Type) -> Option<DateTimeType> {
    Some(match *ty {
        Type::DATE => DateTimeType::Date,
        Type::TIMESTAMP => DateTimeType::Timestamp,
        Type::TIMESTAMPTZ => DateTimeType::Timestamptz,
        _ => return None,
    })
}

/// The column name a Postgres client expects: `count(*)` is called `count`, a bare expression
/// `?column?`.
pub(crate) fn column_name(col: &Column) -> String {
    if col.decl_type.is_some() {
        return col.name.clone();
    }
    let n = col.name.trim();
    if let Some((f, _)) = n.split_once('(') {
        if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return f.to_ascii_lowercase();
        }
    }
    let plain = n.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !n.starts_with(|c: char| c.is_ascii_digit());
    if plain && !n.is_empty() {
        n.to_string()
    } else {
        "?column?".to_string()
    }
}

/// Row description: Postgres names and types from the translator's hints where it has them
/// (expressions), else what SQLite reports (table columns and their declared types).
pub(crate) fn fields(
    columns: &[Column],
    hints: &[ColumnHint],
    format: impl Fn(usize) -> FieldFormat,
) -> Vec<FieldInfo> {
    let hints = if hints.len() == columns.len() {
        hints
    } else {
        &[]
    };
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let hint = hints.get(i);
            let name = hint
                .and_then(|h| h.name.clone())
                .unwrap_or_else(|| column_name(c));
            let (ty, typmod) = match (&c.decl_type, hint.and_then(|h| h.pg_type)) {
                (None, Some(t)) => (wire_type(t), -1),
                (Some(decl), _) => (column_type(c), sqlkeeper_sql::pg_typmod_of_name(decl)),
                (None, None) => (column_type(c), -1),
            };
            FieldInfo::new(name, None, None, ty, format(i)).with_type_modifier(typmod)
        })
        .collect()
}

/// Row description of a result whose rows are sent with it (the simple query protocol): as
/// [`fields`], but an expression column that neither SQLite nor the translator can type
/// (`sum(qty)`, `max(id)`, `avg(x)`, `qty * 2`) is typed by its values, which are all there:
/// `bigint` when every value is an integer, `double precision` when they are numbers and one
/// is not an integer, else `text` as before. (Postgres would say `bigint` for `sum(integer)`,
/// `numeric` for `avg`: a client now gets a number, not a string.) The extended protocol
/// describes a statement before it runs, so there a column keeps its described type.
pub(crate) fn fields_for_rows(
    columns: &[Column],
    hints: &[ColumnHint],
    rows: &[Vec<Value>],
    format: impl Fn(usize) -> FieldFormat,
) -> Vec<FieldInfo> {
    let mut out = fields(columns, hints, &format);
    let hinted =
        |i: usize| hints.len() == columns.len() && hints.get(i).and_then(|h| h.pg_type).is_some();
    for (i, (c, f)) in columns.iter().zip(out.iter_mut()).enumerate() {
        if c.decl_type.is_some() || hinted(i) || *f.datatype() != Type::TEXT {
            continue;
        }
        let (mut ints, mut reals) = (0usize, 0usize);
        for row in rows {
            match row.get(i) {
                Some(Value::Integer(_)) => ints += 1,
                Some(Value::Real(_)) => reals += 1,
                Some(Value::Null) | None => {}
                Some(_) => {
                    (ints, reals) = (0, 0);
                    break;
                }
            }
        }
        let ty = match (ints, reals) {
            (0, 0) => continue,
            (_, 0) => Type::INT8,
            _ => Type::FLOAT8,
        };
        *f = FieldInfo::new(f.name().to_string(), None, None, ty, format(i));
    }
    out
}

/// The wire type of a Postgres type.
fn wire_type(t: PgType) -> Type {
    match t {
        PgType::Bool => Type::BOOL,
        PgType::Int2 => Type::INT2,
        PgType::Int4 => Type::INT4,
        PgType::Int8 => Type::INT8,
        PgType::Float4 => Type::FLOAT4,
        PgType::Float8 => Type::FLOAT8,
        PgType::Varchar => Type::VARCHAR,
        PgType::Bpchar => Type::BPCHAR,
        PgType::Bytea => Type::BYTEA,
        PgType::Date => Type::DATE,
        PgType::Timestamp => Type::TIMESTAMP,
        PgType::Timestamptz => Type::TIMESTAMPTZ,
        PgType::Uuid => Type::UUID,
        PgType::Json => Type::JSON,
        PgType::Jsonb => Type::JSONB,
        PgType::Numeric => Type::NUMERIC,
        PgType::Text => Type::TEXT,
        // Arrays: every one of them is a built-in type of PostgreSQL's.
        array => Type::from_oid(array.oid()).unwrap_or(Type::TEXT),
    }
}

/// A float as PostgreSQL prints it for a column of type `ty`: `float4` and `float8` as
/// `float4out`/`float8out` do ([`sqlkeeper_sql::numeric::float_text`]); values of other columns
/// keep plain fixed notation: a `numeric` column holds floats here, and `numeric` never prints
/// an exponent.
fn float_text(f: f64, ty: &Type) -> String {
    match *ty {
        Type::FLOAT4 => sqlkeeper_sql::numeric::float_text(f, true),
        Type::FLOAT8 => sqlkeeper_sql::numeric::float_text(f, false),
        _ if f.is_finite() => format!("{f}"),
        _ => sqlkeeper_sql::numeric::float_text(f, false),
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("\\x");
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

/// Text form of a value for a column of type `ty`.
pub(crate) fn value_text(v: &Value, ty: &Type) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Integer(i) if *ty == Type::BOOL => if *i != 0 { "t" } else { "f" }.to_string(),
        Value::Integer(i) => i.to_string(),
        // A float in an integer column: a value RETURNING shows before the column's trigger
        // rounded it (`compat.md`, Values): what is stored, rounded half away from zero.
        Value::Real(f) if is_integer_type(ty) && f.abs() < 9.2e18 => (f.round() as i64).to_string(),
        Value::Real(f) => float_text(*f, ty),
        Value::Text(s) => s.clone(),
        Value::Blob(b) if *ty == Type::BYTEA => hex(b),
        Value::Blob(b) => String::from_utf8_lossy(b).into_owned(),
    })
}

/// The text of a stored value as PostgreSQL prints a `numeric` with this type modifier: the
/// value's decimal digits (a float's shortest round-trip digits) in the column's scale
/// (`numeric(10,2)`: `12.50`). Text that is not a decimal number is sent as it is.
fn numeric_text(v: &Value, typmod: i32) -> Option<String> {
    let digits = match v {
        Value::Null => return None,
        Value::Integer(i) => i.to_string(),
        Value::Real(f) if !f.is_finite() => return Some(float_text(*f, &Type::NUMERIC)),
        // Rust prints a float's shortest round-trip digits, in fixed notation.
        Value::Real(f) => format!("{f}"),
        Value::Text(s) => s.trim().to_string(),
        Value::Blob(b) => return Some(String::from_utf8_lossy(b).into_owned()),
    };
    Some(match sqlkeeper_sql::numeric::Decimal::parse(&digits) {
        Some(d) => d.rounded_to(i64::from(typmod)).to_string(),
        None => digits,
    })
}

fn out_of_range(ty: &Type) -> ClientError {
    ClientError::new(
        "22003",
        format!("value out of range for type {}", ty.name()),
    )
}

fn not_a(ty: &Type, v: &Value) -> ClientError {
    ClientError::new(
        "22P02",
        format!("invalid input syntax for type {}: {:?}", ty.name(), v),
    )
}

fn is_integer_type(ty: &Type) -> bool {
    matches!(*ty, Type::INT2 | Type::INT4 | Type::INT8)
}

fn as_i64(v: &Value, ty: &Type) -> Result<i64, ClientError> {
    match v {
        Value::Integer(i) => Ok(*i),
        Value::Real(f) if f.abs() < 9.2e18 && (f.fract() == 0.0 || is_integer_type(ty)) => {
            Ok(f.round() as i64)
        }
        Value::Text(s) => s.trim().parse().map_err(|_| not_a(ty, v)),
        _ => Err(not_a(ty, v)),
    }
}

fn as_f64(v: &Value, ty: &Type) -> Result<f64, ClientError> {
    match v {
        Value::Integer(i) => Ok(*i as f64),
        Value::Real(f) => Ok(*f),
        Value::Text(s) => s.trim().parse().map_err(|_| not_a(ty, v)),
        _ => Err(not_a(ty, v)),
    }
}

/// Encodes one row in its fields' formats. A `numeric` column whose hint names the modifier
/// its values print in ([`ColumnHint::numeric_typmod`]) is printed in that scale.
pub(crate) fn encode_row(
    enc: &mut DataRowEncoder,
    row: &[Value],
    schema: &[FieldInfo],
    hints: &[ColumnHint],
) -> Result<DataRow, ClientError> {
    let hints = if hints.len() == schema.len() {
        hints
    } else {
        &[]
    };
    for (i, (v, f)) in row.iter().zip(schema).enumerate() {
        let typmod = hints.get(i).and_then(|h| h.numeric_typmod);
        if let Err(e) = encode_value(enc, v, f, typmod.unwrap_or(f.type_modifier()))? {
            return Err(ClientError::new("XX000", format!("encode value: {e}")));
        }
    }
    Ok(enc.take_row())
}

/// Appends one value to a data row in the field's format; a `numeric` is printed in the
/// scale of `numeric_typmod`. Binary values are converted to the described type's exact
/// width, because the client decodes them by the described type.
fn encode_value(
    enc: &mut DataRowEncoder,
    v: &Value,
    field: &FieldInfo,
    numeric_typmod: i32,
) -> Result<PgWireResult<()>, ClientError> {
    let ty = field.datatype();
    if matches!(v, Value::Null) {
        return Ok(enc.encode_field(&None::<i64>));
    }
    if *ty == Type::BPCHAR && field.type_modifier() > 4 {
        // `char(n)` prints blank-padded to n characters (stored without the padding, so that
        // `length`, `||` and comparisons see what PostgreSQL's do); its binary form is the text.
        let n = (field.type_modifier() - 4) as usize;
        let mut text = value_text(v, ty).unwrap_or_default();
        let len = text.chars().count();
        text.extend(std::iter::repeat_n(' ', n.saturating_sub(len)));
        return Ok(enc.encode_field(&text));
    }
    if *ty == Type::NUMERIC {
        let text = numeric_text(v, numeric_typmod);
        if field.format() == FieldFormat::Text {
            return Ok(enc.encode_field(&text));
        }
        let text = text.unwrap_or_default();
        let b = sqlkeeper_sql::numeric::to_binary(&text).ok_or_else(|| not_a(ty, v))?;
        return Ok(enc.encode_field(&b.as_slice()));
    }
    // An array's text is its text form: written as text, not quoted as an element (which
    // pgwire does to a string of an array type).
    if let Some(element) = array_element(ty) {
        let text = value_text(v, ty).unwrap_or_default();
        // In its printed form even where it was not stored yet (a `RETURNING` sees a value
        // before its column's triggers normalized it: `{ 01 , yes }`).
        let text = match array_from_text(0, &text, &element) {
            Ok(Value::Text(printed)) => printed,
            _ => text,
        };
        if field.format() == FieldFormat::Text {
            let text = array_text(&text, &element).ok_or_else(|| not_a(ty, v))?;
            return Ok(enc.encode_field_with_type_and_format(
                &text,
                &Type::TEXT,
                FieldFormat::Text,
                &Default::default(),
            ));
        }
        let b = array_binary(&text, &element).ok_or_else(|| not_a(ty, v))?;
        return Ok(enc.encode_field(&b.as_slice()));
    }
    if field.format() == FieldFormat::Text {
        return Ok(enc.encode_field(&value_text(v, ty)));
    }
    Ok(match *ty {
        Type::INT8 => enc.encode_field(&as_i64(v, ty)?),
        Type::INT4 => {
            enc.encode_field(&i32::try_from(as_i64(v, ty)?).map_err(|_| out_of_range(ty))?)
        }
        Type::INT2 => {
            enc.encode_field(&i16::try_from(as_i64(v, ty)?).map_err(|_| out_of_range(ty))?)
        }
        Type::FLOAT8 => enc.encode_field(&as_f64(v, ty)?),
        Type::FLOAT4 => enc.encode_field(&(as_f64(v, ty)? as f32)),
        Type::BOOL => enc.encode_field(&(as_i64(v, ty)? != 0)),
        Type::BYTEA => match v {
            Value::Blob(b) => enc.encode_field(&b.as_slice()),
            other => enc.encode_field(
                &value_text(other, &Type::TEXT)
                    .unwrap_or_default()
                    .into_bytes(),
            ),
        },
        Type::DATE | Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            enc.encode_field(&date_time_binary(v, ty)?.as_slice())
        }
        Type::UUID => {
            let text = value_text(v, ty).unwrap_or_default();
            let b = sqlkeeper_sql::uuid::parse(text.trim()).ok_or_else(|| not_a(ty, v))?;
            enc.encode_field(&b.as_slice())
        }
        // jsonb's binary form is a version byte (1) and the text.
        Type::JSONB => {
            let mut b = vec![1u8];
            b.extend_from_slice(value_text(v, ty).unwrap_or_default().as_bytes());
            enc.encode_field(&b.as_slice())
        }
        _ => enc.encode_field(&value_text(v, ty)),
    })
}

/// A stored date or time value in its binary form. Values are stored as PostgreSQL prints
/// them; one that is not (written by a build before they were checked) is an error for its
/// row, not a wrong value.
/// The element type of an array type a value can have here ([`PgType::element`]).
fn array_element(ty: &Type) -> Option<Type> {
    // Asked for every value sent and every parameter read: other types leave at once (the
    // built-in array types' names are their element's with `_`).
    if !ty.name().starts_with('_') {
        return None;
    }
    if *ty == Type::OID_ARRAY {
        return Some(Type::OID);
    }
    PgType::array_of_oid(ty.oid())?.element().map(wire_type)
}

/// An array's text form as PostgreSQL prints it, from the stored text form: booleans, stored
/// as SQLite's 1 and 0 by `array_agg`, print as `t` and `f`; other elements as they are.
/// `None` for text that is not an array.
fn array_text(text: &str, element: &Type) -> Option<String> {
    if *element != Type::BOOL {
        sqlkeeper_sql::array::elements(text)?;
        return Some(text.to_string());
    }
    let items = sqlkeeper_sql::array::elements(text)?;
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(match item.as_deref().map(bool_element) {
            None => "NULL",
            Some(Some(true)) => "t",
            Some(Some(false)) => "f",
            Some(None) => return None,
        });
    }
    out.push('}');
    Some(out)
}

fn bool_element(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

/// The binary form of an array given in its text form (`{a,NULL}`): dimensions, a NULL flag,
/// the element type, each dimension's length and lower bound, then each element's length
/// (-1: NULL) and bytes in the element type's binary form. `None` for text that is not an
/// array of that type, or too large a one.
fn array_binary(text: &str, element: &Type) -> Option<Vec<u8>> {
    let items = sqlkeeper_sql::array::elements(text)?;
    let mut b = Vec::new();
    b.extend(i32::from(!items.is_empty()).to_be_bytes());
    b.extend(i32::from(items.iter().any(Option::is_none)).to_be_bytes());
    b.extend(element.oid().to_be_bytes());
    if !items.is_empty() {
        b.extend(i32::try_from(items.len()).ok()?.to_be_bytes());
        b.extend(1i32.to_be_bytes());
    }
    for item in &items {
        let Some(s) = item else {
            b.extend((-1i32).to_be_bytes());
            continue;
        };
        let bytes = element_binary(s, element)?;
        b.extend(i32::try_from(bytes.len()).ok()?.to_be_bytes());
        b.extend(bytes);
    }
    Some(b)
}

/// One array element, in its type's text form, in that type's binary form.
fn element_binary(s: &str, element: &Type) -> Option<Vec<u8>> {
    Some(match *element {
        Type::BOOL => vec![u8::from(bool_element(s)?)],
        Type::INT2 => s.parse::<i16>().ok()?.to_be_bytes().to_vec(),
        Type::INT4 => s.parse::<i32>().ok()?.to_be_bytes().to_vec(),
        Type::INT8 => s.parse::<i64>().ok()?.to_be_bytes().to_vec(),
        Type::OID => s.parse::<u32>().ok()?.to_be_bytes().to_vec(),
        Type::FLOAT4 => s.parse::<f32>().ok()?.to_be_bytes().to_vec(),
        Type::FLOAT8 => s.parse::<f64>().ok()?.to_be_bytes().to_vec(),
        Type::NUMERIC => sqlkeeper_sql::numeric::to_binary(s)?,
        Type::UUID => sqlkeeper_sql::uuid::parse(s)?.to_vec(),
        Type::DATE | Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let dt = date_time_type(element)?;
            datetime::to_binary(datetime::parse(s, dt, None).ok()??, dt)
        }
        Type::JSONB => std::iter::once(1u8).chain(s.bytes()).collect(),
        _ => s.as_bytes().to_vec(),
    })
}

/// An array parameter in binary form (`array_recv`) as its text form, each element decoded as
/// a parameter of the element type is and printed as that type prints. One dimension from 1
/// (or none: the empty array), elements of the described element type; anything else is
/// refused, never stored as something else.
fn array_from_binary(
    i: usize,
    raw: &[u8],
    ty: &Type,
    element: &Type,
) -> Result<Value, ClientError> {
    let bad = || bad_param(i, ty);
    let mut rest = raw;
    let word = |rest: &mut &[u8]| -> Result<i32, ClientError> {
        let (head, tail) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        *rest = tail;
        Ok(i32::from_be_bytes(*head))
    };
    let (dims, _has_nulls, element_oid) = (word(&mut rest)?, word(&mut rest)?, word(&mut rest)?);
    if element_oid as u32 != element.oid() {
        return Err(ClientError::new(
            "42804",
            format!(
                "binary data has array element type {} instead of expected {}",
                element_oid as u32,
                element.oid()
            ),
        ));
    }
    let len = match dims {
        0 => 0,
        1 => {
            let (len, lower) = (word(&mut rest)?, word(&mut rest)?);
            if lower != 1 {
                return Err(ClientError::new(
                    "0A000",
                    format!(
                        "parameter ${}: arrays with explicit bounds are not supported",
                        i + 1
                    ),
                ));
            }
            usize::try_from(len).map_err(|_| bad())?
        }
        d if d > 1 => {
            return Err(ClientError::new(
                "0A000",
                format!(
                    "parameter ${}: multidimensional arrays are not supported",
                    i + 1
                ),
            ))
        }
        _ => return Err(bad()),
    };
    let mut items: Vec<Option<String>> = Vec::new();
    for _ in 0..len {
        let n = word(&mut rest)?;
        if n < 0 {
            items.push(None);
            continue;
        }
        let n = usize::try_from(n).map_err(|_| bad())?;
        if rest.len() < n {
            return Err(bad());
        }
        let (bytes, tail) = rest.split_at(n);
        rest = tail;
        let v = decode_binary(i, bytes, element)?;
        items.push(value_text(&v, element));
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(Value::Text(sqlkeeper_sql::array::text(
        items.iter().map(Option::as_deref),
    )))
}

/// An array parameter in text form, read as `array_in` reads it and printed with each element
/// in its type's printed form (`{ 01, t }` of `int4[]` is `{1,t}`... of `bool[]` `{t,t}`), so
/// that it compares equal to stored arrays.
fn array_from_text(i: usize, text: &str, element: &Type) -> Result<Value, ClientError> {
    let items = sqlkeeper_sql::array::parse(text).map_err(|e| {
        let mut err = ClientError::new(e.sqlstate, e.message);
        err.detail = e.detail;
        err
    })?;
    let mut out: Vec<Option<String>> = Vec::with_capacity(items.len());
    for item in items {
        out.push(match item {
            None => None,
            Some(s) => value_text(&decode_text(i, s.as_bytes(), element)?, element),
        });
    }
    Ok(Value::Text(sqlkeeper_sql::array::text(
        out.iter().map(Option::as_deref),
    )))
}

fn date_time_binary(v: &Value, ty: &Type) -> Result<Vec<u8>, ClientError> {
    let dt = date_time_type(ty).ok_or_else(|| not_a(ty, v))?;
    let text = value_text(v, ty).unwrap_or_default();
    match datetime::parse(&text, dt, None) {
        Ok(Some(m)) => Ok(datetime::to_binary(m, dt)),
        Ok(None) => Err(not_a(ty, v)),
        Err(e) => Err(ClientError::new(e.sqlstate, e.message)),
    }
}

fn bad_param(i: usize, ty: &Type) -> ClientError {
    ClientError::new(
        "22P02",
        format!(
            "invalid input for parameter ${} of type {}",
            i + 1,
            ty.name()
        ),
    )
}

/// Decodes a bound parameter into an SQLite value. Every byte comes from the client: nothing
/// here may index or slice it at an offset that was not checked.
pub(crate) fn decode_param(
    i: usize,
    raw: Option<&[u8]>,
    ty: &Type,
    binary: bool,
) -> Result<Value, ClientError> {
    match raw {
        None => Ok(Value::Null),
        Some(raw) if binary => decode_binary(i, raw, ty),
        Some(raw) => decode_text(i, raw, ty),
    }
}

fn decode_binary(i: usize, raw: &[u8], ty: &Type) -> Result<Value, ClientError> {
    let int = |n: usize| -> Result<i64, ClientError> {
        if raw.len() != n {
            return Err(bad_param(i, ty));
        }
        let mut buf = [0u8; 8];
        buf[8 - n..].copy_from_slice(raw);
        // sign-extend
        let v = i64::from_be_bytes(buf);
        let shift = 64 - 8 * n as u32;
        Ok((v << shift) >> shift)
    };
    let text = |bytes: &[u8]| -> Result<Value, ClientError> {
        Ok(Value::Text(
            std::str::from_utf8(bytes)
                .map_err(|_| bad_param(i, ty))?
                .to_string(),
        ))
    };
    Ok(match *ty {
        Type::INT2 => Value::Integer(int(2)?),
        Type::INT4 => Value::Integer(int(4)?),
        Type::INT8 => Value::Integer(int(8)?),
        Type::OID => Value::Integer(int(4)? & 0xffff_ffff),
        Type::FLOAT4 => {
            let b: [u8; 4] = raw.try_into().map_err(|_| bad_param(i, ty))?;
            Value::Real(f32::from_be_bytes(b) as f64)
        }
        Type::FLOAT8 => {
            let b: [u8; 8] = raw.try_into().map_err(|_| bad_param(i, ty))?;
            Value::Real(f64::from_be_bytes(b))
        }
        // One byte, as postgres' boolrecv reads it.
        Type::BOOL => match raw {
            [b] => Value::Integer(i64::from(*b != 0)),
            _ => return Err(bad_param(i, ty)),
        },
        Type::BYTEA => Value::Blob(raw.to_vec()),
        // Types whose binary form is their text.
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::JSON => {
            text(raw)?
        }
        // jsonb's binary form is a version byte (1) and the text.
        Type::JSONB => match raw.split_first() {
            Some((1, json)) => text(json)?,
            _ => return Err(bad_param(i, ty)),
        },
        Type::UUID => {
            let b: [u8; 16] = raw.try_into().map_err(|_| bad_param(i, ty))?;
            Value::Text(sqlkeeper_sql::uuid::text(&b))
        }
        Type::DATE | Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let dt = date_time_type(ty).ok_or_else(|| bad_param(i, ty))?;
            let m = datetime::from_binary(raw, dt).ok_or_else(|| bad_param(i, ty))?;
            Value::Text(datetime::format(m, dt))
        }
        // Read as its decimal text, as a parameter in text form is.
        Type::NUMERIC => {
            let text = sqlkeeper_sql::numeric::from_binary(raw).ok_or_else(|| bad_param(i, ty))?;
            return decode_text(i, text.as_bytes(), ty);
        }
        _ if let Some(element) = array_element(ty) => array_from_binary(i, raw, ty, &element)?,
        // time, intervals, other arrays...: their binary forms are not text, and storing
        // their bytes as if they were would silently change the client's value.
        _ => {
            return Err(ClientError::new(
                "0A000",
                format!(
                    "binary format for parameter ${} of type {} is not supported; send it as text",
                    i + 1,
                    ty.name()
                ),
            ))
        }
    })
}

fn decode_text(i: usize, raw: &[u8], ty: &Type) -> Result<Value, ClientError> {
    let text = std::str::from_utf8(raw).map_err(|_| bad_param(i, ty))?;
    let int = |min: i64, max: i64, pg_name: &str| -> Result<i64, ClientError> {
        let v: i64 = text.trim().parse().map_err(|_| bad_param(i, ty))?;
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(ClientError::new(
                "22003",
                format!("value \"{text}\" is out of range for type {pg_name}"),
            ))
        }
    };
    Ok(match *ty {
        Type::INT2 => Value::Integer(int(i16::MIN.into(), i16::MAX.into(), "smallint")?),
        Type::INT4 => Value::Integer(int(i32::MIN.into(), i32::MAX.into(), "integer")?),
        Type::INT8 => Value::Integer(int(i64::MIN, i64::MAX, "bigint")?),
        // As postgres' oidin: a negative value is read as its unsigned 32-bit twin.
        Type::OID => Value::Integer(int(i32::MIN.into(), u32::MAX.into(), "oid")? & 0xffff_ffff),
        // As float8in reads it: `Infinity`, `-inf`, `NaN` included (a NaN is bound as the
        // text SQLite keeps it as, `compat.md`).
        Type::FLOAT4 | Type::FLOAT8 => {
            match sqlkeeper_sql::numeric::parse_float(text, *ty == Type::FLOAT4) {
                Ok(f) => Value::Real(f),
                Err(sqlkeeper_sql::numeric::FloatInputError::OutOfRange) => {
                    return Err(ClientError::new(
                        "22003",
                        format!("\"{}\" is out of range for type {}", text.trim(), ty.name()),
                    ))
                }
                Err(_) => return Err(bad_param(i, ty)),
            }
        }
        Type::BOOL => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "on" | "1" | "y" => Value::Integer(1),
            "f" | "false" | "no" | "off" | "0" | "n" => Value::Integer(0),
            _ => return Err(bad_param(i, ty)),
        },
        Type::BYTEA => Value::Blob(bytea_from_text(raw).ok_or_else(|| bad_param(i, ty))?),
        // A uuid parameter in text: checked and written as Postgres prints it, so it compares
        // equal to the stored (lower-case) form.
        Type::UUID => Value::Text(sqlkeeper_sql::uuid::text(
            &sqlkeeper_sql::uuid::parse(text.trim()).ok_or_else(|| {
                ClientError::new(
                    "22P02",
                    format!("invalid input syntax for type uuid: \"{text}\""),
                )
            })?,
        )),
        // Stored and compared in the form PostgreSQL prints; the clock words (`now`) are left
        // for the engine, which reads them from the command's stamp.
        Type::DATE | Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let dt = date_time_type(ty).ok_or_else(|| bad_param(i, ty))?;
            match datetime::canonical(text, dt, None) {
                Ok(Some(c)) => Value::Text(c),
                Ok(None) => Value::Text(text.to_string()),
                Err(e) => return Err(ClientError::new(e.sqlstate, e.message)),
            }
        }
        _ => match array_element(ty) {
            Some(element) => array_from_text(i, text, &element)?,
            None => Value::Text(text.to_string()),
        },
    })
}

/// The bytes of a bytea in text form, as postgres' byteain reads it: `\x` and hex digit
/// pairs (whitespace allowed between pairs), or the escape form, where `\\` is a backslash,
/// `\ooo` an octal byte and every other byte itself. `None` for anything else. Works on bytes,
/// never on string offsets, so a multi-byte character is just an invalid digit.
fn bytea_from_text(text: &[u8]) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix(b"\\x") {
        let mut out = Vec::with_capacity(hex.len() / 2);
        let mut digits = hex.iter().copied();
        while let Some(hi) = digits.next() {
            if hi.is_ascii_whitespace() {
                continue;
            }
            let lo = digits.next()?;
            out.push((hex_digit(hi)? << 4) | hex_digit(lo)?);
        }
        return Some(out);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&b, tail)) = rest.split_first() {
        if b != b'\\' {
            out.push(b);
            rest = tail;
            continue;
        }
        match tail {
            [b'\\', after @ ..] => {
                out.push(b'\\');
                rest = after;
            }
            [x @ b'0'..=b'3', y @ b'0'..=b'7', z @ b'0'..=b'7', after @ ..] => {
                out.push(((x - b'0') << 6) | ((y - b'0') << 3) | (z - b'0'));
                rest = after;
            }
            _ => return None,
        }
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_arrays_have_postgres_binary_form() {
        let words = |v: &[i32]| v.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        let mut want = words(&[1, 1, 25, 3, 1, 1]);
        want.extend(b"a");
        want.extend(words(&[-1, 3]));
        want.extend(b"b c");
        let text = |s| array_binary(s, &Type::TEXT);
        assert_eq!(text("{a,NULL,\"b c\"}"), Some(want));
        assert_eq!(text("{}"), Some(words(&[0, 0, 25])));
        assert_eq!(text("a,b"), None);
    }

    #[test]
    fn boolean_and_integer_arrays_print_and_encode_as_postgres() {
        assert_eq!(
            array_text("{1,0,NULL}", &Type::BOOL).as_deref(),
            Some("{t,f,NULL}")
        );
        assert_eq!(array_text("{2}", &Type::BOOL), None);
        assert_eq!(array_text("{1,2}", &Type::INT8).as_deref(), Some("{1,2}"));
        let words = |v: &[i32]| v.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        let mut want = words(&[1, 0, 16, 2, 1, 1]);
        want.push(1);
        want.extend(words(&[1]));
        want.push(0);
        assert_eq!(array_binary("{t,0}", &Type::BOOL), Some(want));
        let mut want = words(&[1, 0, 20, 1, 1, 8]);
        want.extend((-5i64).to_be_bytes());
        assert_eq!(array_binary("{-5}", &Type::INT8), Some(want));
        assert_eq!(array_binary("{x}", &Type::INT4), None);
    }

    #[test]
    fn array_parameters_read_in_binary_and_text_print_as_postgres() {
        for (ty, text) in [
            (Type::INT4_ARRAY, "{1,NULL,-2147483648}"),
            (Type::TEXT_ARRAY, r#"{a,"b c","",NULL,"NULL"}"#),
            (Type::BOOL_ARRAY, "{t,f}"),
            (Type::NUMERIC_ARRAY, "{1.50,-9999.99}"),
            (Type::FLOAT8_ARRAY, "{1.5,1e+300}"),
            (Type::UUID_ARRAY, "{00000000-0000-0000-0000-000000000007}"),
            (
                Type::TIMESTAMPTZ_ARRAY,
                "{\"2024-02-29 10:00:00.123456+00\"}",
            ),
            (Type::DATE_ARRAY, "{}"),
        ] {
            let element = array_element(&ty).unwrap();
            let b = array_binary(text, &element).unwrap();
            let back = decode_param(0, Some(&b), &ty, true).unwrap();
            assert_eq!(back, Value::Text(text.into()), "{ty}");
        }
        // Text is read as `array_in` reads it and printed with each element in its form.
        assert_eq!(
            decode_param(0, Some(b"{ 01 , +2 }"), &Type::INT4_ARRAY, false).unwrap(),
            Value::Text("{1,2}".into())
        );
        assert_eq!(
            decode_param(0, Some(b"{yes,off}"), &Type::BOOL_ARRAY, false).unwrap(),
            Value::Text("{t,f}".into())
        );
        let err = |raw: &[u8], ty: &Type, binary| {
            decode_param(0, Some(raw), ty, binary).unwrap_err().sqlstate
        };
        assert_eq!(err(b"{1,x}", &Type::INT4_ARRAY, false), "22P02");
        assert_eq!(err(b"{1", &Type::INT4_ARRAY, false), "22P02");
        assert_eq!(err(b"{{1}}", &Type::INT4_ARRAY, false), "0A000");
        // Binary: another element type, two dimensions, a length past the end, trailing bytes.
        let words = |v: &[i32]| v.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        assert_eq!(
            err(&words(&[1, 0, 20, 1, 1, 4, 7]), &Type::INT4_ARRAY, true),
            "42804"
        );
        assert_eq!(
            err(&words(&[2, 0, 23, 1, 1, 1, 1]), &Type::INT4_ARRAY, true),
            "0A000"
        );
        assert_eq!(
            err(&words(&[1, 0, 23, 1, 1, 400]), &Type::INT4_ARRAY, true),
            "22P02"
        );
        assert_eq!(
            err(&words(&[1, 0, 23, 1, 1, 4, 7, 0]), &Type::INT4_ARRAY, true),
            "22P02"
        );
        assert_eq!(
            err(&words(&[1, 0, 23, 9999999, 1]), &Type::INT4_ARRAY, true),
            "22P02"
        );
        // oid[] (asyncpg's type introspection binds one), as its cast names it.
        assert_eq!(declared_type("OID[]"), Type::OID_ARRAY);
        assert_eq!(
            decode_param(
                0,
                Some(&words(&[1, 0, 26, 2, 1, 4, 1007, 4, 23])),
                &Type::OID_ARRAY,
                true
            )
            .unwrap(),
            Value::Text("{1007,23}".into())
        );
    }

    /// Regression: a text-format bytea parameter was decoded by slicing the hex digits at
    /// byte offsets two apart, which panicked inside a multi-byte UTF-8 character
    /// (`\xaé0`: the slice `[2..4]` ends in the middle of `é`).
    #[test]
    fn bytea_text_with_a_multibyte_character_is_an_error_not_a_panic() {
        let e = decode_param(0, Some("\\xaé0".as_bytes()), &Type::BYTEA, false).unwrap_err();
        assert_eq!(e.sqlstate, "22P02");
    }

    fn text(ty: &Type, raw: &str) -> Result<Value, ClientError> {
        decode_param(0, Some(raw.as_bytes()), ty, false)
    }

    #[test]
    fn uuid_and_date_parameters_in_text_take_the_printed_form() {
        assert_eq!(
            text(&Type::UUID, "{A0EEBC99-9C0B4EF8-BB6D6BB9-BD380A11}").unwrap(),
            Value::Text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into())
        );
        assert_eq!(
            text(&Type::UUID, "not-a-uuid").unwrap_err().sqlstate,
            "22P02"
        );
        assert_eq!(
            text(&Type::TIMESTAMPTZ, "2024-02-29T10:00:00+01:00").unwrap(),
            Value::Text("2024-02-29 09:00:00+00".into())
        );
        assert_eq!(
            text(&Type::DATE, "2023-02-29").unwrap_err().sqlstate,
            "22008"
        );
    }

    #[test]
    fn floats_print_as_postgres_prints_them() {
        let f8 = |f: f64| float_text(f, &Type::FLOAT8);
        let f4 = |f: f64| float_text(f, &Type::FLOAT4);
        let cases = [
            (f8(0.1 + 0.2), "0.30000000000000004"),
            (f8(1.5e300), "1.5e+300"),
            (f8(1e15), "1e+15"),
            (f8(123456789012345.0), "123456789012345"),
            (f8(0.0001), "0.0001"),
            (f8(0.00001), "1e-05"),
            (f8(-2.5e-100), "-2.5e-100"),
            (f8(0.0), "0"),
            (f8(-0.0), "-0"),
            (f8(f64::MAX), "1.7976931348623157e+308"),
            (f8(f64::NAN), "NaN"),
            (f8(f64::NEG_INFINITY), "-Infinity"),
            (f4(0.1), "0.1"),
            (f4(1234567.0), "1.234567e+06"),
            (f4(123456.0), "123456"),
            (float_text(0.00001, &Type::TEXT), "0.00001"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn bytea_text_forms_as_postgres_reads_them() {
        assert_eq!(
            text(&Type::BYTEA, "\\x0aFf").unwrap(),
            Value::Blob(vec![10, 255])
        );
        assert_eq!(
            text(&Type::BYTEA, "\\x 0a\n ff ").unwrap(),
            Value::Blob(vec![10, 255])
        );
        assert_eq!(
            text(&Type::BYTEA, "a\\\\b\\001").unwrap(),
            Value::Blob(b"a\\b\x01".to_vec())
        );
        assert_eq!(
            text(&Type::BYTEA, "plain").unwrap(),
            Value::Blob(b"plain".to_vec())
        );
        for bad in ["\\x0", "\\x0g", "\\x0 a", "a\\", "\\9", "\\400"] {
            assert_eq!(
                text(&Type::BYTEA, bad).unwrap_err().sqlstate,
                "22P02",
                "{bad}"
            );
        }
    }

    #[test]
    fn integer_text_out_of_its_range_is_22003() {
        assert_eq!(text(&Type::INT2, "32767").unwrap(), Value::Integer(32767));
        assert_eq!(text(&Type::INT2, "32768").unwrap_err().sqlstate, "22003");
        assert_eq!(
            text(&Type::INT4, "-2147483649").unwrap_err().sqlstate,
            "22003"
        );
        assert_eq!(
            text(&Type::OID, "-1").unwrap(),
            Value::Integer(4_294_967_295)
        );
        assert_eq!(
            text(&Type::OID, "4294967296").unwrap_err().sqlstate,
            "22003"
        );
    }

    #[test]
    fn a_float_in_an_integer_column_is_sent_rounded() {
        assert_eq!(value_text(&Value::Real(3.4), &Type::INT4).unwrap(), "3");
        assert_eq!(value_text(&Value::Real(-2.5), &Type::INT2).unwrap(), "-3");
        assert_eq!(value_text(&Value::Real(-0.4), &Type::INT8).unwrap(), "0");
        assert_eq!(as_i64(&Value::Real(2.5), &Type::INT4).unwrap(), 3);
        assert!(as_i64(&Value::Real(2.5), &Type::BOOL).is_err());
        assert_eq!(value_text(&Value::Real(2.5), &Type::FLOAT8).unwrap(), "2.5");
    }

    #[test]
    fn numeric_results_have_their_columns_scale() {
        let n10_2 = ((10 << 16) | 2) + 4;
        let t = |v: Value, typmod: i32| numeric_text(&v, typmod).unwrap();
        assert_eq!(t(Value::Real(12.5), n10_2), "12.50");
        assert_eq!(t(Value::Integer(7), n10_2), "7.00");
        assert_eq!(t(Value::Real(0.1 + 0.2), n10_2), "0.30");
        assert_eq!(t(Value::Real(2.675), n10_2), "2.68");
        assert_eq!(t(Value::Real(12.5), -1), "12.5");
        assert_eq!(t(Value::Real(1e20), -1), "100000000000000000000");
        assert_eq!(t(Value::Text("abc".into()), n10_2), "abc");
        assert_eq!(numeric_text(&Value::Null, n10_2), None);
    }

    #[test]
    fn binary_forms_that_are_not_text_are_refused() {
        let interval = [0u8; 16];
        let e = decode_param(0, Some(&interval), &Type::INTERVAL, true).unwrap_err();
        assert_eq!(e.sqlstate, "0A000");
        // numeric is read from its binary form (one base-10,000 digit, 42), or refused.
        let numeric = [0u8, 1, 0, 0, 0, 0, 0, 0, 0, 42];
        assert_eq!(
            decode_param(0, Some(&numeric), &Type::NUMERIC, true).unwrap(),
            Value::Text("42".into())
        );
        let e = decode_param(0, Some(&numeric[..9]), &Type::NUMERIC, true).unwrap_err();
        assert_eq!(e.sqlstate, "22P02");
        assert_eq!(
            decode_param(0, Some(&[1]), &Type::BOOL, true).unwrap(),
            Value::Integer(1)
        );
        assert_eq!(
            decode_param(0, Some(&[]), &Type::BOOL, true)
                .unwrap_err()
                .sqlstate,
            "22P02"
        );
        let uuid: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            decode_param(0, Some(&uuid), &Type::UUID, true).unwrap(),
            Value::Text("00010203-0405-0607-0809-0a0b0c0d0e0f".into())
        );
    }
}
