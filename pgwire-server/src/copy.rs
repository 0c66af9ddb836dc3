//! COPY data on the wire: reading the rows a client sends after `COPY ... FROM STDIN` (text,
//! CSV and binary formats, as PostgreSQL's `copyfromparse.c` reads them) and writing the rows of
//! `COPY ... TO STDOUT` (as `copyto.c` writes them). Every field is read as its column's type
//! with the same code that reads bound parameters (`encode::decode_param`), and written with the
//! same code that writes result rows (`encode::encode_row`), so COPY and the query protocol
//! agree on every value. All bytes come from the client: nothing here indexes or slices at an
//! offset that was not checked.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::api::Type;
use sqlkeeper_session::{Column, Value};
use sqlkeeper_sql::{ColumnHint, CopyFormat, CopySpec, ForceQuote};

use crate::encode::{declared_type, decode_param, encode_row, fields_for_rows};
use crate::errors::ClientError;

/// The binary format's signature, then its flags word and header-extension length (both 0).
const BINARY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// The 54000 error for COPY data over [`sqlkeeper_session::COPY_IN_BYTES_MAX`].
fn too_large() -> ClientError {
    ClientError::new(
        "54000",
        format!(
            "COPY data is longer than {} bytes, the most one COPY may carry; split the load into several COPY statements",
            sqlkeeper_session::COPY_IN_BYTES_MAX
        ),
    )
}

fn bad_copy_format(message: impl Into<String>) -> ClientError {
    ClientError::new("22P04", message)
}

/// Reads the rows of one `COPY ... FROM STDIN` as its CopyData messages arrive.
pub(crate) struct CopyReader {
    spec: CopySpec,
    /// The table, for error contexts.
    table: String,
    names: Vec<String>,
    types: Vec<Type>,
    /// Bytes received and not yet read as whole rows.
    pending: Vec<u8>,
    /// Every byte received, for the size bound.
    received: usize,
    rows: Vec<Vec<Value>>,
    /// Lines (text, CSV) or tuples (binary) read so far, for error messages.
    line: u64,
    /// The header line (or the binary header) is still to be read.
    header_pending: bool,
    /// The end marker (`\.`, or the binary trailer) was read: later data is ignored.
    ended: bool,
}

impl CopyReader {
    /// A reader for `spec`'s format, into `columns` (in the order the data gives them).
    pub(crate) fn new(spec: CopySpec, columns: &[Column]) -> CopyReader {
        CopyReader {
            table: spec.table.clone().unwrap_or_default(),
            header_pending: spec.header || spec.format == CopyFormat::Binary,
            spec,
            names: columns.iter().map(|c| c.name.clone()).collect(),
            types: columns
                .iter()
                .map(|c| c.decl_type.as_deref().map_or(Type::TEXT, declared_type))
                .collect(),
            pending: Vec::new(),
            received: 0,
            rows: Vec::new(),
            line: 0,
            ended: false,
        }
    }

    /// Reads one CopyData message's bytes: every row they complete.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<(), ClientError> {
        self.received = self.received.saturating_add(data.len());
        if self.received > sqlkeeper_session::COPY_IN_BYTES_MAX {
            return Err(too_large());
        }
        if self.ended {
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        self.read_rows(false)
    }

    /// After CopyDone: the last row (a line without its newline is a row, as in PostgreSQL),
    /// then every row read.
    pub(crate) fn finish(mut self) -> Result<Vec<Vec<Value>>, ClientError> {
        if !self.ended {
            self.read_rows(true)?;
            if self.spec.format == CopyFormat::Binary && !self.ended {
                return Err(bad_copy_format(
                    "unexpected EOF in COPY data: the binary trailer is missing",
                ));
            }
        }
        Ok(self.rows)
    }

    fn read_rows(&mut self, at_end: bool) -> Result<(), ClientError> {
        let mut at = 0;
        let r = loop {
            if self.ended {
                break Ok(());
            }
            let step = match self.spec.format {
                CopyFormat::Binary => self.binary_tuple(at),
                CopyFormat::Text => self.text_line(at, at_end),
                CopyFormat::Csv => self.csv_record(at, at_end),
            };
            match step {
                Ok(Some(next)) => at = next,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.pending.drain(..at.min(self.pending.len()));
        r
    }

    /// Converts one row's raw fields (NULL as `None`) to values of the columns' types.
    /// `text`: the line as received, for error contexts (none for binary data).
    fn row(
        &mut self,
        fields: Vec<Option<Vec<u8>>>,
        text: Option<&[u8]>,
    ) -> Result<(), ClientError> {
        let binary = text.is_none();
        let line_context = || match text {
            Some(t) => format!(
                "COPY {}, line {}: \"{}\"",
                self.table,
                self.line,
                String::from_utf8_lossy(t)
            ),
            None => format!("COPY {}, line {}", self.table, self.line),
        };
        if fields.len() > self.types.len() {
            let mut e = bad_copy_format("extra data after last expected column");
            e.context = Some(line_context());
            return Err(e);
        }
        if fields.len() < self.types.len() {
            let missing = self.names.get(fields.len()).cloned().unwrap_or_default();
            let mut e = bad_copy_format(format!("missing data for column \"{missing}\""));
            e.context = Some(line_context());
            return Err(e);
        }
        let mut row = Vec::with_capacity(fields.len());
        for (i, (raw, ty)) in fields.iter().zip(&self.types).enumerate() {
            let v = decode_param(i, raw.as_deref(), ty, binary).map_err(|e| {
                let shown = raw
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let column = self.names.get(i).map(String::as_str).unwrap_or("?");
                // A value the decoder refused in general terms is named as PostgreSQL's input
                // function names it; one it explained (a malformed array) keeps its words.
                let message = match e.sqlstate.as_str() {
                    "22P02" if !binary && e.detail.is_none() => {
                        format!(
                            "invalid input syntax for type {}: \"{shown}\"",
                            sql_name(ty)
                        )
                    }
                    _ => e.message,
                };
                let detail = e.detail;
                let mut e = ClientError::new(e.sqlstate, message);
                e.detail = detail;
                e.context = Some(match binary {
                    true => format!("COPY {}, line {}, column {column}", self.table, self.line),
                    false => format!(
                        "COPY {}, line {}, column {column}: \"{shown}\"",
                        self.table, self.line
                    ),
                });
                e
            })?;
            row.push(v);
        }
        self.rows.push(row);
        Ok(())
    }

    /// One line of the text format from `at`: `Some(next)` after it, `None` if it is not
    /// complete yet.
    fn text_line(&mut self, at: usize, at_end: bool) -> Result<Option<usize>, ClientError> {
        let rest = &self.pending[at..];
        let (line, next) = match rest.iter().position(|b| *b == b'\n') {
            Some(n) => (&rest[..n], at + n + 1),
            None if at_end && !rest.is_empty() => (rest, at + rest.len()),
            None => return Ok(None),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line).to_vec();
        self.line += 1;
        if line == b"\\." {
            self.ended = true;
            return Ok(Some(next));
        }
        if std::mem::take(&mut self.header_pending) {
            return Ok(Some(next));
        }
        let delimiter = self.spec.delimiter as u8;
        let null = self.spec.null.as_bytes();
        let mut fields = Vec::new();
        for raw in line.split(|b| *b == delimiter) {
            fields.push(match raw == null {
                true => None,
                false => Some(unescape_text(raw)),
            });
        }
        // An empty line is a row of one empty field, as in PostgreSQL.
        self.row(fields, Some(&line))?;
        Ok(Some(next))
    }

    /// One CSV record from `at` (it may span lines inside quotes).
    fn csv_record(&mut self, at: usize, at_end: bool) -> Result<Option<usize>, ClientError> {
        let (delimiter, quote, escape) = (
            self.spec.delimiter as u8,
            self.spec.quote as u8,
            self.spec.escape as u8,
        );
        let rest = &self.pending[at..];
        if rest.is_empty() {
            return Ok(None);
        }
        // `\.` alone on a line ends the data.
        let first_line_end = rest.iter().position(|b| *b == b'\n');
        let first_line = &rest[..first_line_end.unwrap_or(rest.len())];
        if first_line.strip_suffix(b"\r").unwrap_or(first_line) == b"\\." {
            if first_line_end.is_some() || at_end {
                self.ended = true;
                return Ok(Some(at + first_line_end.map_or(rest.len(), |n| n + 1)));
            }
            return Ok(None);
        }
        let mut fields: Vec<(Vec<u8>, bool)> = Vec::new();
        let mut field = Vec::new();
        let mut quoted = false;
        let mut in_quotes = false;
        let mut i = 0;
        let end = loop {
            let Some(&b) = rest.get(i) else {
                if in_quotes {
                    if at_end {
                        let mut e = bad_copy_format("unterminated CSV quoted field");
                        e.context = Some(format!(
                            "COPY {}, line {}: \"{}\"",
                            self.table,
                            self.line + 1,
                            String::from_utf8_lossy(rest)
                        ));
                        return Err(e);
                    }
                    return Ok(None);
                }
                if !at_end {
                    return Ok(None);
                }
                break i;
            };
            if in_quotes {
                if b == escape
                    && rest.get(i + 1).is_some_and(|n| *n == quote || *n == escape)
                    && (escape != quote || rest.get(i + 1) == Some(&quote))
                {
                    field.push(rest[i + 1]);
                    i += 2;
                    continue;
                }
                if b == quote {
                    in_quotes = false;
                } else {
                    field.push(b);
                }
                i += 1;
                continue;
            }
            match b {
                b'\n' => break i + 1,
                b'\r' if rest.get(i + 1) == Some(&b'\n') => break i + 2,
                _ if b == delimiter => {
                    fields.push((std::mem::take(&mut field), quoted));
                    quoted = false;
                }
                _ if b == quote => {
                    in_quotes = true;
                    quoted = true;
                }
                _ => field.push(b),
            }
            i += 1;
        };
        fields.push((field, quoted));
        self.line += 1;
        if std::mem::take(&mut self.header_pending) {
            return Ok(Some(at + end));
        }
        let null = self.spec.null.as_bytes();
        let values = fields
            .into_iter()
            .enumerate()
            .map(|(i, (raw, quoted))| {
                let name = self.names.get(i);
                let not_null = name.is_some_and(|n| self.spec.force_not_null.contains(n));
                let force_null = name.is_some_and(|n| self.spec.force_null.contains(n));
                let is_null = raw == null && ((!quoted && !not_null) || (quoted && force_null));
                (!is_null).then_some(raw)
            })
            .collect();
        let text = self.pending[at..at + end].to_vec();
        let text = text.strip_suffix(b"\n").unwrap_or(&text);
        self.row(values, Some(text.strip_suffix(b"\r").unwrap_or(text)))?;
        Ok(Some(at + end))
    }

    /// The binary header, or one tuple, from `at`.
    fn binary_tuple(&mut self, at: usize) -> Result<Option<usize>, ClientError> {
        let rest = &self.pending[at..];
        if self.header_pending {
            if rest.len() < BINARY_SIGNATURE.len() + 8 {
                return Ok(None);
            }
            if &rest[..BINARY_SIGNATURE.len()] != BINARY_SIGNATURE {
                return Err(bad_copy_format("COPY file signature not recognized"));
            }
            let ext = be_u32(&rest[15..19]) as usize;
            let Some(total) = (BINARY_SIGNATURE.len() + 8).checked_add(ext) else {
                return Err(bad_copy_format("invalid COPY file header (wrong length)"));
            };
            if rest.len() < total {
                return Ok(None);
            }
            self.header_pending = false;
            return Ok(Some(at + total));
        }
        if rest.len() < 2 {
            return Ok(None);
        }
        let count = i16::from_be_bytes([rest[0], rest[1]]);
        if count == -1 {
            self.ended = true;
            return Ok(Some(at + 2));
        }
        let mut i = 2;
        let mut fields = Vec::new();
        for _ in 0..count.max(0) {
            let Some(len) = rest.get(i..i + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
            i += 4;
            if len < 0 {
                fields.push(None);
                continue;
            }
            let Some(bytes) = rest.get(i..i + len as usize) else {
                return Ok(None);
            };
            fields.push(Some(bytes.to_vec()));
            i += len as usize;
        }
        if count < 0 {
            return Err(bad_copy_format(format!(
                "invalid field count {count} in COPY binary data"
            )));
        }
        self.line += 1;
        self.row(fields, None)?;
        Ok(Some(at + i))
    }
}

/// A type's name as PostgreSQL's messages spell it (`format_type`).
fn sql_name(ty: &Type) -> &str {
    match *ty {
        Type::INT2 => "smallint",
        Type::INT4 => "integer",
        Type::INT8 => "bigint",
        Type::FLOAT4 => "real",
        Type::FLOAT8 => "double precision",
        Type::BOOL => "boolean",
        Type::TIMESTAMPTZ => "timestamp with time zone",
        Type::TIMESTAMP => "timestamp without time zone",
        _ => ty.name(),
    }
}

fn be_u32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[..4]);
    u32::from_be_bytes(w)
}

/// A text-format field with its backslash escapes resolved, as `CopyReadAttributesText`.
fn unescape_text(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' || i >= raw.len() {
            out.push(b);
            continue;
        }
        let c = raw[i];
        i += 1;
        match c {
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut v = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| (*d as char).to_digit(16)) {
                        Some(d) => {
                            v = v * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(v as u8);
            }
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            other => out.push(other),
        }
    }
    out
}

/// The messages of one `COPY ... TO STDOUT`: the format, the column count, and each CopyData
/// message's bytes (a header, then one per row, then the binary trailer).
pub(crate) struct CopyOut {
    /// 0 text (text and CSV), 1 binary.
    pub(crate) format: i8,
    /// Columns per row.
    pub(crate) columns: usize,
    /// CopyData payloads in order.
    pub(crate) messages: Vec<Bytes>,
    /// Rows, for the `COPY n` tag.
    pub(crate) rows: usize,
}

/// Writes `rows` as `spec` asks, each value as the query protocol would send it.
pub(crate) fn copy_out(
    spec: &CopySpec,
    columns: &[Column],
    hints: &[ColumnHint],
    rows: &[Vec<Value>],
) -> Result<CopyOut, ClientError> {
    let binary = spec.format == CopyFormat::Binary;
    let format = if binary {
        FieldFormat::Binary
    } else {
        FieldFormat::Text
    };
    let schema = Arc::new(fields_for_rows(columns, hints, rows, |_| format));
    let mut messages = Vec::with_capacity(rows.len() + 2);
    let names: Vec<&str> = schema.iter().map(FieldInfo::name).collect();
    // The binary header goes out with the first row (or the trailer), as PostgreSQL sends it:
    // clients read it from the front of the first message.
    let mut binary_header = BytesMut::new();
    if binary {
        binary_header.put_slice(BINARY_SIGNATURE);
        binary_header.put_i32(0);
        binary_header.put_i32(0);
    } else if spec.header {
        let fields: Vec<Option<&[u8]>> = names.iter().map(|n| Some(n.as_bytes())).collect();
        messages.push(text_line(spec, &names, &fields, true));
    }
    let mut enc = DataRowEncoder::new(schema.clone());
    for row in rows {
        let encoded = encode_row(&mut enc, row, &schema, hints)?;
        if binary {
            let mut tuple = std::mem::take(&mut binary_header);
            tuple.reserve(2 + encoded.data.len());
            tuple.put_i16(encoded.field_count);
            tuple.put_slice(&encoded.data);
            messages.push(tuple.freeze());
            continue;
        }
        let fields = split_fields(&encoded.data);
        messages.push(text_line(spec, &names, &fields, false));
    }
    if binary {
        binary_header.put_i16(-1);
        messages.push(binary_header.freeze());
    }
    Ok(CopyOut {
        format: i8::from(binary),
        columns: schema.len(),
        messages,
        rows: rows.len(),
    })
}

/// The fields of an encoded data row: a length word each (-1: NULL), then the bytes.
fn split_fields(data: &[u8]) -> Vec<Option<&[u8]>> {
    let mut fields = Vec::new();
    let mut i = 0;
    while let Some(len) = data.get(i..i + 4) {
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        i += 4;
        if len < 0 {
            fields.push(None);
            continue;
        }
        let end = i + len as usize;
        fields.push(data.get(i..end));
        i = end;
    }
    fields
}

/// One line of text or CSV output, ending in a newline.
fn text_line(spec: &CopySpec, names: &[&str], fields: &[Option<&[u8]>], header: bool) -> Bytes {
    let mut line = Vec::new();
    let delimiter = spec.delimiter as u8;
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(delimiter);
        }
        let Some(value) = field else {
            line.extend_from_slice(spec.null.as_bytes());
            continue;
        };
        match spec.format {
            CopyFormat::Csv => {
                let forced = !header
                    && match &spec.force_quote {
                        ForceQuote::None => false,
                        ForceQuote::All => true,
                        ForceQuote::Columns(cols) => {
                            names.get(i).is_some_and(|n| cols.iter().any(|c| c == n))
                        }
                    };
                csv_field(spec, value, forced, fields.len() == 1, &mut line);
            }
            _ => text_field(delimiter, value, &mut line),
        }
    }
    line.push(b'\n');
    Bytes::from(line)
}

/// A text-format field with PostgreSQL's escapes (`CopyAttributeOutText`).
fn text_field(delimiter: u8, value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' if delimiter == b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            11 => out.extend_from_slice(b"\\v"),
            _ if b == delimiter => {
                out.push(b'\\');
                out.push(b);
            }
            _ => out.push(b),
        }
    }
}

/// A CSV field, quoted when it must be (`CopyAttributeOutCSV`): it holds the delimiter, the
/// quote, the escape or a line break, it equals the null string (so it reads back as a
/// value), it is `\.` alone on a line, or quoting is forced.
fn csv_field(spec: &CopySpec, value: &[u8], forced: bool, single: bool, out: &mut Vec<u8>) {
    let (delimiter, quote, escape) = (spec.delimiter as u8, spec.quote as u8, spec.escape as u8);
    let needs = forced
        || value == spec.null.as_bytes()
        || (single && value == b"\\.")
        || value
            .iter()
            .any(|b| *b == delimiter || *b == quote || *b == escape || *b == b'\n' || *b == b'\r');
    if !needs {
        out.extend_from_slice(value);
        return;
    }
    out.push(quote);
    for &b in value {
        if b == quote || b == escape {
            out.push(escape);
        }
        out.push(b);
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sql: &str) -> CopySpec {
        match sqlkeeper_sql::translate(sql).unwrap().pop().unwrap().kind {
            sqlkeeper_sql::StatementKind::Copy(s) => s,
            other => panic!("{other:?}"),
        }
    }

    fn columns() -> Vec<Column> {
        [("id", "integer"), ("name", "text"), ("ok", "boolean")]
            .iter()
            .map(|(n, t)| Column {
                name: n.to_string(),
                decl_type: Some(t.to_string()),
            })
            .collect()
    }

    fn read(sql: &str, chunks: &[&[u8]]) -> Result<Vec<Vec<Value>>, ClientError> {
        let mut r = CopyReader::new(spec(sql), &columns());
        for c in chunks {
            r.feed(c)?;
        }
        r.finish()
    }

    #[test]
    fn text_rows_split_anywhere_read_with_escapes_and_nulls() {
        let data = b"1\ta\\tb\\\\c\\n\tt\n2\t\\N\tf\n3\t\\101\\x42\ton\n\\.\nignored";
        for cut in 0..data.len() {
            let rows = read("COPY t FROM STDIN", &[&data[..cut], &data[cut..]]).unwrap();
            assert_eq!(
                rows,
                vec![
                    vec![
                        Value::Integer(1),
                        Value::Text("a\tb\\c\n".into()),
                        Value::Integer(1)
                    ],
                    vec![Value::Integer(2), Value::Null, Value::Integer(0)],
                    vec![
                        Value::Integer(3),
                        Value::Text("AB".into()),
                        Value::Integer(1)
                    ],
                ],
                "cut at {cut}"
            );
        }
        // The last line may end without a newline.
        let rows = read("COPY t FROM STDIN", &[b"7\tx\tf"]).unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn csv_quotes_span_lines_and_tell_empty_from_null() {
        let data = b"id,name,ok\n1,\"a,\"\"b\"\"\nc\",true\n2,,false\n3,\"\",t\n";
        let rows = read("COPY t FROM STDIN (FORMAT csv, HEADER)", &[data]).unwrap();
        assert_eq!(rows[0][1], Value::Text("a,\"b\"\nc".into()));
        assert_eq!(rows[1][1], Value::Null);
        assert_eq!(rows[2][1], Value::Text(String::new()));
        let e = read("COPY t FROM STDIN (FORMAT csv)", &[b"1,\"open"]).unwrap_err();
        assert!(
            e.message.starts_with("unterminated CSV quoted field"),
            "{}",
            e.message
        );
        assert_eq!(e.sqlstate.as_str(), "22P04");
    }

    #[test]
    fn wrong_field_counts_and_values_get_postgres_sqlstates() {
        let extra = read("COPY t FROM STDIN", &[b"1\ta\tt\tx\n"]).unwrap_err();
        assert_eq!(extra.sqlstate.as_str(), "22P04");
        let missing = read("COPY t FROM STDIN", &[b"1\ta\n"]).unwrap_err();
        assert_eq!(missing.sqlstate.as_str(), "22P04");
        assert_eq!(missing.message, "missing data for column \"ok\"");
        assert_eq!(missing.context.as_deref(), Some("COPY t, line 1: \"1\ta\""));
        let bad = read("COPY t FROM STDIN", &[b"x\ta\tt\n"]).unwrap_err();
        assert_eq!(bad.sqlstate.as_str(), "22P02");
        assert_eq!(bad.message, "invalid input syntax for type integer: \"x\"");
        assert_eq!(
            bad.context.as_deref(),
            Some("COPY t, line 1, column id: \"x\"")
        );
    }

    #[test]
    fn binary_round_trips_through_copy_out() {
        let spec_out = spec("COPY t TO STDOUT (FORMAT binary)");
        let rows = vec![
            vec![
                Value::Integer(5),
                Value::Text("é".into()),
                Value::Integer(1),
            ],
            vec![Value::Integer(-1), Value::Null, Value::Integer(0)],
        ];
        let out = copy_out(&spec_out, &columns(), &[], &rows).unwrap();
        assert_eq!((out.format, out.rows, out.messages.len()), (1, 2, 3));
        assert!(out.messages[0].starts_with(BINARY_SIGNATURE));
        assert_eq!(out.messages[2].as_ref(), &[0xff, 0xff]);
        let all: Vec<u8> = out.messages.concat();
        for cut in [0, 5, 19, 20, all.len() - 1] {
            let back = read(
                "COPY t FROM STDIN (FORMAT binary)",
                &[&all[..cut], &all[cut..]],
            )
            .unwrap();
            assert_eq!(back, rows, "cut at {cut}");
        }
        let truncated = read(
            "COPY t FROM STDIN (FORMAT binary)",
            &[&all[..all.len() - 2]],
        );
        assert!(truncated.is_err());
    }

    #[test]
    fn text_and_csv_output_escape_as_postgres() {
        let rows = vec![vec![
            Value::Integer(1),
            Value::Text("a\tb\\c,\"d\"\n".into()),
            Value::Null,
        ]];
        let text = copy_out(&spec("COPY t TO STDOUT"), &columns(), &[], &rows).unwrap();
        assert_eq!(
            text.messages.concat(),
            b"1\ta\\tb\\\\c,\"d\"\\n\t\\N\n".to_vec()
        );
        let csv = copy_out(
            &spec("COPY t TO STDOUT (FORMAT csv, HEADER)"),
            &columns(),
            &[],
            &rows,
        )
        .unwrap();
        assert_eq!(
            csv.messages.concat(),
            b"id,name,ok\n1,\"a\tb\\c,\"\"d\"\"\n\",\n".to_vec()
        );
        assert_eq!(csv.rows, 1);
        let empty = vec![vec![
            Value::Integer(1),
            Value::Text(String::new()),
            Value::Null,
        ]];
        let csv = copy_out(
            &spec("COPY t TO STDOUT (FORMAT csv)"),
            &columns(),
            &[],
            &empty,
        )
        .unwrap();
        assert_eq!(csv.messages.concat(), b"1,\"\",\n".to_vec());
    }
}
