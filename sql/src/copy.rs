//! `COPY ... FROM STDIN` and `COPY ... TO STDOUT`: the statement's options, checked as
//! PostgreSQL 15 checks them (`ProcessCopyOptions`), and what runs. The data itself is the
//! protocol's business (`pgwire-server`'s copy module); this module only says what it looks
//! like and which table or query it belongs to.

use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, Statement,
};

use crate::error::{SqlError, SqlState};

/// The data format of a COPY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// PostgreSQL's text format: one line per row, fields separated by the delimiter,
    /// backslash escapes, `\N` for NULL.
    Text,
    /// Comma-separated values with quoting.
    Csv,
    /// PostgreSQL's binary COPY format (signature, header, tuples of length-prefixed fields).
    Binary,
}

/// Which columns CSV output quotes even when they need no quotes (`FORCE_QUOTE`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ForceQuote {
    /// Only fields that need quoting.
    #[default]
    None,
    /// Every non-NULL field (`FORCE_QUOTE *`).
    All,
    /// Every non-NULL field of these columns.
    Columns(Vec<String>),
}

/// A `COPY` statement: direction, the target table's name and columns, and the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    /// `FROM STDIN` (rows come from the client), else `TO STDOUT`.
    pub from_client: bool,
    /// `COPY table`: the table, as written (may be schema-qualified); `None` for a query.
    pub table: Option<String>,
    /// The column list as written, case-folded (empty: every column).
    pub columns: Vec<String>,
    /// The data format.
    pub format: CopyFormat,
    /// Field separator (text: tab, CSV: comma).
    pub delimiter: char,
    /// The string that stands for NULL (text: `\N`, CSV: empty, unquoted).
    pub null: String,
    /// A header line: written before the rows, skipped when reading.
    pub header: bool,
    /// CSV quote character.
    pub quote: char,
    /// CSV escape character (inside quotes; defaults to the quote).
    pub escape: char,
    /// CSV output: columns quoted whether they need it or not.
    pub force_quote: ForceQuote,
    /// CSV input: columns whose null string is read as an empty string.
    pub force_not_null: Vec<String>,
    /// CSV input: columns whose quoted null string is NULL too.
    pub force_null: Vec<String>,
}

fn fold(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

fn option_error(state: &str, message: impl Into<String>) -> SqlError {
    SqlError {
        sqlstate: SqlState::new(state),
        message: message.into(),
        position: None,
    }
}

/// The option settings as written, before the format's defaults fill the rest.
#[derive(Default)]
struct Written {
    format: Option<CopyFormat>,
    delimiter: Option<char>,
    null: Option<String>,
    header: Option<bool>,
    quote: Option<char>,
    escape: Option<char>,
    force_quote: ForceQuote,
    force_not_null: Vec<String>,
    force_null: Vec<String>,
}

impl Written {
    fn set<T>(slot: &mut Option<T>, value: T) -> Result<(), SqlError> {
        if slot.is_some() {
            return Err(option_error("42601", "conflicting or redundant options"));
        }
        *slot = Some(value);
        Ok(())
    }

    fn option(&mut self, o: &CopyOption) -> Result<(), SqlError> {
        match o {
            CopyOption::Format(name) => {
                let f = match name.value.to_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "binary" => CopyFormat::Binary,
                    other => {
                        return Err(option_error(
                            "22023",
                            format!("COPY format \"{other}\" not recognized"),
                        ))
                    }
                };
                Written::set(&mut self.format, f)
            }
            CopyOption::Freeze(_) => Ok(()),
            CopyOption::Delimiter(c) => Written::set(&mut self.delimiter, *c),
            CopyOption::Null(s) => Written::set(&mut self.null, s.clone()),
            CopyOption::Header(h) => Written::set(&mut self.header, *h),
            CopyOption::Quote(c) => Written::set(&mut self.quote, *c),
            CopyOption::Escape(c) => Written::set(&mut self.escape, *c),
            CopyOption::ForceQuote(cols) => {
                self.force_quote = ForceQuote::Columns(cols.iter().map(fold).collect());
                Ok(())
            }
            CopyOption::ForceNotNull(cols) => {
                self.force_not_null = cols.iter().map(fold).collect();
                Ok(())
            }
            CopyOption::ForceNull(cols) => {
                self.force_null = cols.iter().map(fold).collect();
                Ok(())
            }
            CopyOption::Encoding(e) => {
                let e = e.to_ascii_uppercase().replace(['-', '_'], "");
                if e == "UTF8" || e == "UNICODE" {
                    Ok(())
                } else {
                    Err(option_error(
                        "0A000",
                        format!("COPY ENCODING \"{e}\" is not supported: this server reads and writes UTF8"),
                    ))
                }
            }
        }
    }

    /// The pre-9.0 spellings: `BINARY`, `CSV HEADER`, `DELIMITER AS ','`, `NULL AS ''`.
    fn legacy(&mut self, o: &CopyLegacyOption) -> Result<(), SqlError> {
        match o {
            CopyLegacyOption::Binary => Written::set(&mut self.format, CopyFormat::Binary),
            CopyLegacyOption::Delimiter(c) => Written::set(&mut self.delimiter, *c),
            CopyLegacyOption::Null(s) => Written::set(&mut self.null, s.clone()),
            CopyLegacyOption::Header => Written::set(&mut self.header, true),
            CopyLegacyOption::Csv(options) => {
                Written::set(&mut self.format, CopyFormat::Csv)?;
                for o in options {
                    match o {
                        CopyLegacyCsvOption::Header => Written::set(&mut self.header, true)?,
                        CopyLegacyCsvOption::Quote(c) => Written::set(&mut self.quote, *c)?,
                        CopyLegacyCsvOption::Escape(c) => Written::set(&mut self.escape, *c)?,
                        CopyLegacyCsvOption::ForceQuote(cols) => {
                            self.force_quote = match cols.as_slice() {
                                [] => ForceQuote::All,
                                _ => ForceQuote::Columns(cols.iter().map(fold).collect()),
                            }
                        }
                        CopyLegacyCsvOption::ForceNotNull(cols) => {
                            self.force_not_null = cols.iter().map(fold).collect()
                        }
                    }
                }
                Ok(())
            }
            other => Err(SqlError::unsupported(format!("COPY option {other}"))),
        }
    }

    /// The spec, with PostgreSQL's defaults and its checks of combinations.
    fn finish(self, from_client: bool) -> Result<CopySpec, SqlError> {
        let format = self.format.unwrap_or(CopyFormat::Text);
        let csv = format == CopyFormat::Csv;
        if format == CopyFormat::Binary {
            for (given, what) in [
                (self.delimiter.is_some(), "DELIMITER"),
                (self.null.is_some(), "NULL"),
            ] {
                if given {
                    return Err(option_error(
                        "42601",
                        format!("cannot specify {what} in BINARY mode"),
                    ));
                }
            }
            if self.header == Some(true) {
                return Err(option_error(
                    "0A000",
                    "cannot specify HEADER in BINARY mode",
                ));
            }
        }
        if !csv {
            for (given, what) in [
                (self.quote.is_some(), "quote"),
                (self.escape.is_some(), "escape"),
                (self.force_quote != ForceQuote::None, "force quote"),
                (!self.force_not_null.is_empty(), "force not null"),
                (!self.force_null.is_empty(), "force null"),
            ] {
                if given {
                    return Err(option_error(
                        "0A000",
                        format!("COPY {what} available only in CSV mode"),
                    ));
                }
            }
        }
        if self.force_quote != ForceQuote::None && from_client {
            return Err(option_error(
                "0A000",
                "COPY force quote only available using COPY TO",
            ));
        }
        if (!self.force_not_null.is_empty() || !self.force_null.is_empty()) && !from_client {
            return Err(option_error(
                "0A000",
                "COPY force not null and force null only available using COPY FROM",
            ));
        }
        let delimiter = self.delimiter.unwrap_or(if csv { ',' } else { '\t' });
        let quote = self.quote.unwrap_or('"');
        let escape = self.escape.unwrap_or(quote);
        let null = self
            .null
            .unwrap_or_else(|| if csv { String::new() } else { "\\N".into() });
        if !delimiter.is_ascii() || !quote.is_ascii() || !escape.is_ascii() {
            return Err(option_error(
                "0A000",
                "COPY delimiter, quote and escape must be single one-byte characters",
            ));
        }
        if matches!(delimiter, '\r' | '\n') || null.contains(['\r', '\n']) {
            return Err(option_error(
                "22023",
                "COPY delimiter and null representation cannot contain newline or carriage return",
            ));
        }
        if !csv && (delimiter == '\\' || delimiter.is_ascii_alphanumeric() || delimiter == '.') {
            return Err(option_error(
                "22023",
                format!("COPY delimiter cannot be \"{delimiter}\""),
            ));
        }
        if csv && delimiter == quote {
            return Err(option_error(
                "22023",
                "COPY delimiter and quote must be different",
            ));
        }
        if null.contains(delimiter) {
            return Err(option_error(
                "22023",
                "COPY delimiter must not appear in the NULL specification",
            ));
        }
        Ok(CopySpec {
            from_client,
            table: None,
            columns: Vec::new(),
            format,
            delimiter,
            null,
            header: self.header.unwrap_or(false),
            quote,
            escape,
            force_quote: self.force_quote,
            force_not_null: self.force_not_null,
            force_null: self.force_null,
        })
    }
}

/// What a `COPY` statement runs: for `TO STDOUT`, the query whose rows are sent (SQL text for
/// the translator); for `FROM STDIN`, nothing until the rows arrive.
pub(crate) struct CopyPlan {
    pub(crate) spec: CopySpec,
    /// `TO STDOUT`: the query, as PostgreSQL SQL.
    pub(crate) query: Option<String>,
}

/// Reads a `COPY` statement. Files and programs are refused: a node's files are not the
/// client's, and each replica would read its own (psql's `\copy` sends a file's contents
/// through `FROM STDIN` instead).
pub(crate) fn plan(stmt: &Statement) -> Result<CopyPlan, SqlError> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        values,
    } = stmt
    else {
        return Err(SqlError::unsupported("this statement as COPY"));
    };
    match (to, target) {
        (false, CopyTarget::Stdin) | (true, CopyTarget::Stdout) => {}
        (_, CopyTarget::File { .. }) | (_, CopyTarget::Program { .. }) => {
            return Err(option_error(
                "0A000",
                "COPY to or from a file or program on the server is not supported: use COPY ... FROM STDIN or TO STDOUT (psql's \\copy)",
            ))
        }
        _ => return Err(option_error("42601", "COPY FROM STDOUT and COPY TO STDIN are not valid")),
    }
    if !values.is_empty() {
        return Err(SqlError::unsupported("COPY data inside the query string"));
    }
    let mut written = Written::default();
    for o in options {
        written.option(o)?;
    }
    for o in legacy_options {
        written.legacy(o)?;
    }
    let mut spec = written.finish(!to)?;
    let query = match source {
        CopySource::Table {
            table_name,
            columns,
        } => {
            spec.table = Some(table_name.to_string());
            spec.columns = columns.iter().map(fold).collect();
            match to {
                true => {
                    let list = match columns.as_slice() {
                        [] => "*".to_string(),
                        cols => cols
                            .iter()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    };
                    Some(format!("SELECT {list} FROM {table_name}"))
                }
                false => None,
            }
        }
        CopySource::Query(q) => {
            if !to {
                return Err(option_error(
                    "42601",
                    "COPY (query) FROM is not valid: a query can only be copied TO",
                ));
            }
            Some(q.to_string())
        }
    };
    Ok(CopyPlan { spec, query })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn spec(sql: &str) -> Result<CopySpec, SqlError> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .pop()
            .unwrap();
        plan(&stmt).map(|p| p.spec)
    }

    #[test]
    fn options_take_postgres_defaults_per_format() {
        let t = spec("COPY t FROM STDIN").unwrap();
        assert_eq!(
            (t.format, t.delimiter, t.null.as_str()),
            (CopyFormat::Text, '\t', "\\N")
        );
        let c = spec("COPY t (a, \"B\") FROM STDIN WITH (FORMAT csv, HEADER true)").unwrap();
        assert_eq!(
            (c.format, c.delimiter, c.null.as_str()),
            (CopyFormat::Csv, ',', "")
        );
        assert!(c.header);
        assert_eq!(c.columns, vec!["a".to_string(), "B".to_string()]);
        let b = spec("COPY \"public\".\"t\" (\"a\") FROM STDIN (FORMAT binary)").unwrap();
        assert_eq!(b.format, CopyFormat::Binary);
        let legacy = spec("COPY t TO STDOUT WITH CSV HEADER FORCE QUOTE a").unwrap();
        assert_eq!(legacy.force_quote, ForceQuote::Columns(vec!["a".into()]));
        assert!(legacy.header);
    }

    #[test]
    fn boolean_options_take_every_postgres_spelling() {
        let header = |sql: &str| match crate::translate(sql).unwrap().pop().unwrap().kind {
            crate::StatementKind::Copy(spec) => spec.header,
            other => panic!("{sql}: {other:?}"),
        };
        // pgbench -i's statement
        assert!(!header("copy pgbench_accounts from stdin with (freeze on)"));
        assert!(header(
            "COPY t FROM STDIN (FORMAT csv, HEADER on, FREEZE off)"
        ));
        assert!(header("COPY t FROM STDIN (FORMAT csv, HEADER 1)"));
        assert!(header("COPY t FROM STDIN (FORMAT csv, HEADER 'yes')"));
        assert!(!header("COPY t FROM STDIN (FORMAT csv, HEADER no)"));
        assert!(crate::translate("COPY t FROM STDIN (FORMAT csv, HEADER maybe)").is_err());
    }

    #[test]
    fn invalid_combinations_get_postgres_errors() {
        for (sql, state) in [
            ("COPY t FROM STDIN (FORMAT xml)", "22023"),
            ("COPY t FROM STDIN (FORMAT binary, DELIMITER ',')", "42601"),
            ("COPY t FROM STDIN (QUOTE '''')", "0A000"),
            ("COPY t FROM STDIN (FORMAT csv, FORCE_QUOTE (a))", "0A000"),
            ("COPY t FROM '/etc/passwd'", "0A000"),
            ("COPY t FROM STDIN (DELIMITER ',', DELIMITER ';')", "42601"),
            ("COPY t FROM STDIN (FORMAT csv, DELIMITER '\"')", "22023"),
        ] {
            let e = spec(sql).expect_err(sql);
            assert_eq!(e.sqlstate.as_str(), state, "{sql}: {}", e.message);
        }
    }
}
