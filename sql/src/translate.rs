//! Parse, classify and rewrite Postgres statements into SQLite statements.

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_expressions_mut, visit_relations, visit_relations_mut, BinaryOperator, CastKind,
    ColumnOption, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    ObjectName, ObjectNamePart, ObjectType, OrderBy, OrderByKind, OrderBySort, Query, Reset,
    SelectItem, Set, SetExpr, Statement, TransactionAccessMode, TransactionIsolationLevel,
    TransactionMode, Value, VisitMut, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

use crate::classify::{
    drop_tag, query_writes, AdminCall, CommandTag, Isolation, SessionOp, StatementKind, TxnOp,
    ADMIN_FUNCTIONS, INTROSPECTION_VIEWS,
};
use crate::columns::{projection_hints, ColumnHint};
use crate::error::SqlError;
use crate::literals::Literal;
use crate::params::ParamType;

/// Deepest expression nesting the parser accepts. Hostile input (thousands of nested
/// parentheses) must get an error, not overflow the stack of a server thread; 200 is far
/// beyond what ORMs and migrations generate.
pub const PARSER_RECURSION_LIMIT: usize = 200;

/// Largest query string accepted, in bytes. Postgres' own limit is 1 GiB; a metadata store
/// has no use for statements this large and they would be held in the Raft log.
pub const QUERY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// One Postgres statement, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// How the node runs it.
    pub kind: StatementKind,
    /// SQLite statements to run in order (usually one; `DROP TABLE a, b` gives two). Empty for
    /// session and transaction-control statements, which never reach SQLite.
    pub sqlite: Vec<String>,
    /// What applying them does besides running them; travels with each of them into the log.
    pub effect: Effect,
    /// The command tag to answer with.
    pub tag: CommandTag,
    /// Number of `$n` parameters (the highest `n` used).
    pub param_count: usize,
    /// The statement as the client wrote it, re-printed from the AST (for logs and errors).
    pub original: String,
    /// Postgres names and types of the result columns (empty: use what SQLite reports).
    pub columns: Vec<ColumnHint>,
    /// For a write whose reads are not bounded by the rows it names: a read (SQLite SQL, with
    /// the same parameters) that does the same reading, which the accepting node runs with the
    /// entry's step budget before proposing the write (`plan::probe`).
    pub probe: Option<String>,
    /// What decides each parameter's type where the client gives none (`$1` first).
    pub params: Vec<ParamType>,
    /// The type probe (SQLite SQL) that [`ParamType::Column`] refers to: its result columns'
    /// declared types are the parameters' types (`params.rs`).
    pub param_probe: Option<String>,
    /// The notice PostgreSQL sends when `IF [NOT] EXISTS` skips an object.
    pub existence_notice: Option<ExistenceNotice>,
    /// Values of literals that became parameters `?{param_count + 1}`, ... of the SQLite
    /// statement (`literals.rs`): bound after the client's parameters wherever it runs.
    pub literals: Vec<Literal>,
    /// String literals cast to a checked type (`'abc'::int`: the text, the engine's type name
    /// and typmod), in the order they appear. PostgreSQL converts them while it parses, so
    /// their errors come before anything runs, wherever they stand: the session checks them
    /// first (`sqlkeeper_engine::check_literal_cast`).
    pub literal_casts: Vec<(String, String, i64)>,
    /// The column probe (SQLite SQL) that [`ColumnHint::of_column`] refers to: the columns the
    /// result's aggregates take, whose declared types decide the aggregates' types.
    pub column_probe: Option<String>,
    /// Values of session functions (`current_user`, `current_setting('x')`, ...) that became
    /// parameters after the literals (`session_values.rs`): the session binds them.
    pub session_values: Vec<crate::SessionValue>,
}

/// What `CREATE ... IF NOT EXISTS` and `DROP ... IF EXISTS` tell the client when they skip an
/// object: PostgreSQL's NOTICE `relation "t" already exists, skipping` (42P07) or `table "t"
/// does not exist, skipping` (00000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistenceNotice {
    /// The relations (tables, views, indexes) the statement names.
    pub names: Vec<String>,
    /// Whether the notice is for a name that exists (`CREATE`), else for one that does not
    /// (`DROP`).
    pub when_exists: bool,
    /// The word for the object in the message: `relation`, `table`, `view`, `index`, `type`.
    pub kind: &'static str,
}

impl ExistenceNotice {
    /// The notice's SQLSTATE and message for `name`.
    pub fn message(&self, name: &str) -> (&'static str, String) {
        match self.when_exists {
            true => (
                "42P07",
                format!("relation \"{name}\" already exists, skipping"),
            ),
            false => (
                "00000",
                format!("{} \"{name}\" does not exist, skipping", self.kind),
            ),
        }
    }

    /// The notice of `stmt`, if it has an `IF [NOT] EXISTS` that can skip.
    fn of(stmt: &Statement) -> Option<ExistenceNotice> {
        let (names, when_exists, kind) = match stmt {
            Statement::CreateTable(ct) if ct.if_not_exists => {
                (vec![last_identifier(&ct.name)?], true, "relation")
            }
            Statement::CreateIndex(ci) if ci.if_not_exists => {
                (vec![last_identifier(ci.name.as_ref()?)?], true, "relation")
            }
            Statement::Drop {
                object_type,
                if_exists: true,
                names,
                ..
            } => {
                let kind = match object_type {
                    ObjectType::Table => "table",
                    ObjectType::View => "view",
                    ObjectType::Index => "index",
                    ObjectType::Type => "type",
                    _ => return None,
                };
                (
                    names.iter().map(last_identifier).collect::<Option<_>>()?,
                    false,
                    kind,
                )
            }
            _ => return None,
        };
        Some(ExistenceNotice {
            names,
            when_exists,
            kind,
        })
    }
}

/// What applying a translated statement does besides running its SQL. The engine acts on it
/// without looking into the SQL text.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Effect {
    /// Nothing more.
    #[default]
    Plain,
    /// Creates or drops sequences (rows of the sequences table): the engine reloads its copy
    /// of the sequences after it.
    Sequences,
    /// Asks for a table rebuild (an `ALTER TABLE` form SQLite lacks): the entry is applied
    /// with foreign-key enforcement off and a foreign-key check at its end.
    RebuildTable,
    /// Needs the columns of `table` as they are when it runs, which SQLite does not fill in
    /// itself: the engine writes the first `width` column names in place of the
    /// [`COLUMNS_MARKER`] list (`INSERT INTO t VALUES (...)` with fewer values than columns),
    /// and each column's default in place of [`DEFAULT_MARKER`]`('column')` or
    /// `DEFAULT_MARKER(position)` (`DEFAULT` in `VALUES` or `SET`); and checks that each
    /// typed value it assigns has a type its column takes (`assign.rs`).
    Defaults {
        /// The table written to, as named in the statement.
        table: String,
        /// The number of values of each row when the statement names no columns.
        width: Option<u32>,
        /// The typed values assigned to columns, to check against the columns' types.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        assigned: Vec<crate::Assigned>,
    },
}

/// The column list of an `INSERT` that names no columns, replaced by the engine with the
/// table's first columns ([`Effect::Defaults`]).
pub const COLUMNS_MARKER: &str = "_sqlkeeper_columns";

/// `DEFAULT` as a value, replaced by the engine with the column's default
/// ([`Effect::Defaults`]).
pub const DEFAULT_MARKER: &str = "_sqlkeeper_default";

impl Effect {
    /// Whether it is [`Effect::Plain`] (left out of the log's JSON).
    pub fn is_plain(&self) -> bool {
        *self == Effect::Plain
    }
}

/// Parses `query` (one or more statements separated by `;`) and translates every statement.
/// A syntax error anywhere fails the whole string, as in Postgres, which parses a simple
/// query string completely before running any of it.
pub fn translate(query: &str) -> Result<Vec<Translated>, SqlError> {
    if query.len() > QUERY_BYTES_MAX {
        return Err(SqlError {
            sqlstate: crate::SqlState::new("54000"),
            message: format!("query string is longer than {QUERY_BYTES_MAX} bytes"),
            position: None,
        });
    }
    // `CREATE USER` and `ALTER USER` are read as `CREATE ROLE` and `ALTER ROLE`.
    let (query, created_users) = match crate::roles::user_statements(query) {
        Some((q, users)) => (std::borrow::Cow::Owned(q), users),
        None => (std::borrow::Cow::Borrowed(query), Vec::new()),
    };
    // `GRANT role TO role` is read as `GRANT ROLE role TO role`.
    let query = match crate::privileges::role_grant_statements(query.as_ref()) {
        Some(q) => std::borrow::Cow::Owned(q),
        None => query,
    };
    let query = query.as_ref();
    let dialect = PostgreSqlDialect {};
    let statements = Parser::new(&dialect)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .try_with_sql(query)
        .and_then(|mut p| p.parse_statements());
    let statements = match statements {
        Ok(s) => s,
        Err(_) if is_postgres_vacuum(query) => return translate("VACUUM"),
        Err(e) => match copy_boolean_options(query) {
            Some(spelled) => return translate(&spelled),
            None => return Err(parse_error(query, e)),
        },
    };
    statements
        .into_iter()
        .enumerate()
        .map(|(i, stmt)| translate_statement(stmt, created_users.contains(&i)))
        .collect()
}

/// Whether `query` is one PostgreSQL `VACUUM` with options or tables (`VACUUM ANALYZE t`,
/// `VACUUM (VERBOSE, ANALYZE) a, b (x)`), which sqlparser reads only in another dialect's
/// form. `VACUUM` does nothing here (see its translation), so its options and tables only need
/// to be well formed words, as the client wrote them.
fn is_postgres_vacuum(query: &str) -> bool {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, query).tokenize() else {
        return false;
    };
    let mut words = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_)));
    if !matches!(words.next(), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case("vacuum")) {
        return false;
    }
    let rest: Vec<&Token> = words.collect();
    let body = match rest.split_last() {
        Some((Token::SemiColon, body)) => body,
        _ => &rest[..],
    };
    body.iter().all(|t| {
        matches!(
            t,
            Token::Word(_)
                | Token::Comma
                | Token::Period
                | Token::LParen
                | Token::RParen
                | Token::Number(..)
        )
    })
}

/// `query`, a `COPY` whose boolean options are spelled as PostgreSQL also takes them (`FREEZE
/// on`, `HEADER 1`, `HEADER 'yes'`, as `pgbench -i` sends `WITH (freeze on)`), with them spelled
/// `TRUE` or `FALSE`, the only forms sqlparser reads; `None` if there are none.
fn copy_boolean_options(query: &str) -> Option<String> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, query)
        .tokenize()
        .ok()?;
    let is_word =
        |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    if !tokens
        .iter()
        .find(|t| !matches!(t, Token::Whitespace(_)))
        .is_some_and(|t| is_word(t, "copy"))
    {
        return None;
    }
    let mut changed = false;
    let mut option = false;
    for t in tokens.iter_mut() {
        if matches!(t, Token::Whitespace(_)) {
            continue;
        }
        if option {
            let value = match &*t {
                Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_lowercase()),
                Token::Number(n, _) => Some(n.clone()),
                Token::SingleQuotedString(v) => Some(v.to_ascii_lowercase()),
                _ => None,
            };
            let spelled = match value.as_deref() {
                Some("on" | "yes" | "1" | "true") => Some("TRUE"),
                Some("off" | "no" | "0" | "false") => Some("FALSE"),
                _ => None,
            };
            if let Some(b) = spelled {
                *t = Token::make_keyword(b);
                changed = true;
            }
        }
        option = is_word(t, "freeze") || is_word(t, "header");
    }
    changed.then(|| tokens.iter().map(|t| t.to_string()).collect())
}

fn parse_error(query: &str, e: ParserError) -> SqlError {
    match e {
        ParserError::RecursionLimitExceeded => SqlError {
            sqlstate: crate::SqlState::new("54001"),
            message: "statement is too complex (nesting too deep)".into(),
            position: None,
        },
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => {
            let position = position_of(query, &m);
            let message = match m.split_once("found: ") {
                Some((_, rest)) => {
                    let token = rest.split(" at Line:").next().unwrap_or(rest).trim();
                    if token == "EOF" {
                        "syntax error at end of input".to_string()
                    } else {
                        format!("syntax error at or near \"{token}\"")
                    }
                }
                None => format!(
                    "syntax error: {}",
                    m.split(" at Line:").next().unwrap_or(&m)
                ),
            };
            SqlError::syntax(message, position)
        }
    }
}

/// Turns sqlparser's "at Line: L, Column: C" into a 1-based character offset.
fn position_of(query: &str, message: &str) -> Option<u32> {
    let tail = message.rsplit_once("Line: ")?.1;
    let (line, col) = tail.split_once(", Column: ")?;
    let line: usize = line.trim().parse().ok()?;
    let col: usize = col
        .trim()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    let mut offset = 0usize;
    for (i, l) in query.split('\n').enumerate() {
        if i + 1 == line {
            return u32::try_from(offset + col).ok();
        }
        offset += l.chars().count() + 1;
    }
    None
}

fn first_words(stmt: &Statement) -> String {
    let text = stmt.to_string();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `SELECT sqlkeeper.f(literal, ...)`: a call of a cluster administration function.
impl Translated {
    /// A statement that never reaches SQLite (it runs in the session or the node), or the
    /// base of one whose few fields are set apart.
    pub(crate) fn without_sql(
        kind: StatementKind,
        tag: CommandTag,
        original: String,
    ) -> Translated {
        Translated {
            kind,
            sqlite: Vec::new(),
            effect: Effect::Plain,
            tag,
            param_count: 0,
            original,
            columns: Vec::new(),
            probe: None,
            params: Vec::new(),
            param_probe: None,
            existence_notice: None,
            literals: Vec::new(),
            literal_casts: Vec::new(),
            column_probe: None,
            session_values: Vec::new(),
        }
    }
}

/// `SELECT set_config('name', 'value', is_local)` as the whole statement, with literal
/// arguments (as pg_dump, drivers and migration tools send it): a setting change the session
/// makes, answering the new value.
fn set_config_call(stmt: &Statement) -> Result<Option<SessionOp>, SqlError> {
    let Some((select, f)) = single_call(stmt) else {
        return Ok(None);
    };
    let named = match f.name.0.as_slice() {
        [n] => n.to_string().eq_ignore_ascii_case("set_config"),
        [s, n] => {
            s.to_string().eq_ignore_ascii_case("pg_catalog")
                && n.to_string().eq_ignore_ascii_case("set_config")
        }
        _ => false,
    };
    if !named || !select.from.is_empty() || select.selection.is_some() {
        return Ok(None);
    }
    let FunctionArguments::List(list) = &f.args else {
        return Ok(None);
    };
    let literal = |i: usize| match list.args.get(i) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => Some(&v.value),
        _ => None,
    };
    match (literal(0), literal(1), literal(2), list.args.len()) {
        (Some(Value::SingleQuotedString(name)), Some(value), Some(Value::Boolean(_)), 3) => {
            let value = match value {
                Value::SingleQuotedString(v) => Some(v.clone()),
                Value::Null => None,
                _ => {
                    return Err(SqlError::unsupported(
                        "set_config of a value that is not text",
                    ))
                }
            };
            Ok(Some(SessionOp::SetConfig {
                name: name.to_lowercase(),
                value,
            }))
        }
        _ => Err(SqlError::unsupported(
            "set_config with arguments that are not literals",
        )),
    }
}

/// The select and its one item, when a statement is `SELECT f(...)` (with or without an alias):
/// the form of the calls the session or the node runs instead of SQLite.
fn single_call(stmt: &Statement) -> Option<(&sqlparser::ast::Select, &sqlparser::ast::Function)> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    match select.projection.as_slice() {
        [SelectItem::UnnamedExpr(Expr::Function(f))
        | SelectItem::ExprWithAlias {
            expr: Expr::Function(f),
            ..
        }] => Some((select, f)),
        _ => None,
    }
}

fn admin_call(stmt: &Statement) -> Result<Option<AdminCall>, SqlError> {
    let Some((select, f)) = single_call(stmt) else {
        return Ok(None);
    };
    let parts: Vec<String> = f
        .name
        .0
        .iter()
        .map(|p| p.to_string().to_ascii_lowercase())
        .collect();
    let [schema, function] = parts.as_slice() else {
        return Ok(None);
    };
    if schema != "sqlkeeper" {
        return Ok(None);
    }
    let Some((_, arity)) = ADMIN_FUNCTIONS.iter().find(|(n, _)| n == function) else {
        return Err(SqlError {
            sqlstate: crate::SqlState::new("42883"),
            message: format!("function sqlkeeper.{function} does not exist"),
            position: None,
        });
    };
    if !select.from.is_empty() {
        return Err(SqlError::unsupported(format!(
            "sqlkeeper.{function} in a query with FROM"
        )));
    }
    let FunctionArguments::List(list) = &f.args else {
        return Err(SqlError::unsupported(format!(
            "sqlkeeper.{function} without an argument list"
        )));
    };
    let mut args = Vec::new();
    for a in &list.args {
        match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => {
                args.push(match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    Value::Number(n, _) => n.to_string(),
                    other => other.to_string(),
                })
            }
            other => {
                return Err(SqlError::unsupported(format!(
                    "argument {other} of sqlkeeper.{function}: arguments must be literals"
                )))
            }
        }
    }
    if args.len() != *arity {
        return Err(SqlError {
            sqlstate: crate::SqlState::new("42883"),
            message: format!(
                "function sqlkeeper.{function} takes {arity} arguments, not {}",
                args.len()
            ),
            position: None,
        });
    }
    Ok(Some(AdminCall {
        function: function.clone(),
        args,
    }))
}

/// Whether a read uses the `sqlkeeper.status` / `sqlkeeper.nodes` views.
fn reads_introspection(stmt: &Statement) -> bool {
    matches!(
        visit_relations(stmt, |name| {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| p.to_string().to_ascii_lowercase())
                .collect();
            match parts.as_slice() {
                [s, v] if s == "sqlkeeper" && INTROSPECTION_VIEWS.contains(&v.as_str()) => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            }
        }),
        ControlFlow::Break(())
    )
}

/// `COPY`: for `TO STDOUT`, the query translated as any query (it must only read), under
/// [`StatementKind::Copy`]; for `FROM STDIN`, only the spec (the session builds the insert once
/// it knows the table's columns).
fn translate_copy(stmt: &Statement, original: String) -> Result<Translated, SqlError> {
    let plan = crate::copy::plan(stmt)?;
    let mut t = match &plan.query {
        Some(q) => {
            let mut ts = translate(q)?;
            match (ts.pop(), ts.is_empty()) {
                (Some(t), true) if t.kind == StatementKind::Read => t,
                _ => {
                    return Err(SqlError::unsupported(
                        "COPY (query) TO with a query that is not one read",
                    ))
                }
            }
        }
        None => Translated::without_sql(StatementKind::Read, CommandTag::Copy, String::new()),
    };
    t.kind = StatementKind::Copy(plan.spec);
    t.tag = CommandTag::Copy;
    t.original = original;
    Ok(t)
}

/// `DELETE FROM t USING u WHERE ...` -> `DELETE FROM t WHERE rowid IN (SELECT t.rowid FROM t,
/// u WHERE ...)`: SQLite has no USING; every user table has a rowid. The new statement is
/// composed from the AST's parts and parsed again.
fn rewrite_delete_using(stmt: Statement) -> Result<Statement, SqlError> {
    let Statement::Delete(d) = &stmt else {
        return Ok(stmt);
    };
    let Some(using) = &d.using else {
        return Ok(stmt);
    };
    let (sqlparser::ast::FromTable::WithFromKeyword(from)
    | sqlparser::ast::FromTable::WithoutKeyword(from)) = &d.from;
    let [target] = from.as_slice() else {
        return Err(SqlError::unsupported(
            "DELETE ... USING with several target tables",
        ));
    };
    let sqlparser::ast::TableFactor::Table { name, alias, .. } = &target.relation else {
        return Err(SqlError::unsupported("DELETE ... USING on a non-table"));
    };
    let qualifier = alias
        .as_ref()
        .map(|a| a.name.to_string())
        .or_else(|| name.0.last().map(|p| p.to_string()))
        .unwrap_or_else(|| name.to_string());
    let using: Vec<String> = using.iter().map(|u| u.to_string()).collect();
    // The target keeps its alias, which RETURNING may name.
    let outer = match alias {
        Some(a) => format!("{name} AS {}", a.name),
        None => name.to_string(),
    };
    let mut sql = format!(
        "DELETE FROM {outer} WHERE rowid IN (SELECT {qualifier}.rowid FROM {target}, {}",
        using.join(", ")
    );
    if let Some(sel) = &d.selection {
        sql.push_str(&format!(" WHERE {sel}"));
    }
    sql.push(')');
    if let Some(ret) = &d.returning {
        let items: Vec<String> = ret.iter().map(|r| r.to_string()).collect();
        sql.push_str(&format!(" RETURNING {}", items.join(", ")));
    }
    let dialect = PostgreSqlDialect {};
    let mut parsed =
        Parser::parse_sql(&dialect, &sql).map_err(|e| SqlError::syntax(e.to_string(), None))?;
    parsed
        .pop()
        .ok_or_else(|| SqlError::unsupported("DELETE ... USING"))
}

/// PostgreSQL folds unquoted names to lower case: `CREATE TABLE Items (Id int)` makes a table
/// `items` with a column `id`, and that is how the catalog and result columns name them.
/// SQLite keeps names as written (and compares them without case), so the names a statement
/// that defines objects gives are folded here: every unquoted word of its text, which leaves
/// quoted names, strings and the meaning of keywords as they were.
fn fold_defined_names(stmt: Statement) -> Statement {
    use sqlparser::tokenizer::{Token, Tokenizer};
    if !matches!(
        stmt,
        Statement::CreateTable(_)
            | Statement::AlterTable(_)
            | Statement::CreateIndex(_)
            | Statement::CreateView(_)
            | Statement::CreateSequence { .. }
    ) {
        return stmt;
    }
    let sql = stmt.to_string();
    if !sql.chars().any(|c| c.is_ascii_uppercase()) {
        return stmt;
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, &sql).tokenize() else {
        return stmt;
    };
    let folded: String = tokens
        .into_iter()
        .map(|t| match t {
            Token::Word(mut w) if w.quote_style.is_none() => {
                w.value = w.value.to_lowercase();
                Token::Word(w).to_string()
            }
            other => other.to_string(),
        })
        .collect();
    match Parser::parse_sql(&PostgreSqlDialect {}, &folded) {
        Ok(mut parsed) if parsed.len() == 1 => parsed.pop().unwrap_or(stmt),
        _ => stmt,
    }
}

/// One statement; `created_user`: it was written `CREATE USER` (a role that may log in).
fn translate_statement(stmt: Statement, created_user: bool) -> Result<Translated, SqlError> {
    let mut stmt = fold_defined_names(stmt);
    let original = stmt.to_string();
    if let Some(t) = crate::roles::translate(&stmt, &original, created_user)? {
        return Ok(t);
    }
    if let Some(t) = crate::privileges::translate(&stmt, &original)? {
        return Ok(t);
    }
    if matches!(stmt, Statement::Copy { .. }) {
        return translate_copy(&stmt, original);
    }
    // The declared query is translated when it runs, as any query.
    if matches!(
        stmt,
        Statement::Declare { .. } | Statement::Fetch { .. } | Statement::Close { .. }
    ) {
        let (op, tag) = cursor_op(&stmt)?;
        let mut t = Translated::without_sql(StatementKind::Cursor(op), tag, original);
        // The query's parameters are the statement's (psycopg 3 binds them to DECLARE).
        if let StatementKind::Cursor(crate::CursorOp::Declare { query, .. }) = &t.kind {
            if query.contains('$') {
                if let Some(inner) = translate(query)?.pop() {
                    t.param_count = inner.param_count;
                    t.params = inner.params;
                }
            }
        }
        return Ok(t);
    }
    // A typed literal has a quoted string: statements without one skip the walk.
    if original.contains('\'') {
        typed_literals_as_casts(&mut stmt);
    }
    // Only statements with `$n` parameters (the extended protocol's) need their types: the
    // simple protocol's statements skip the walk.
    let (params, param_probe) = match original.contains('$') {
        true => crate::params::infer(&stmt),
        false => (Vec::new(), None),
    };
    // The probe is a plain SELECT of columns: translated as any query, without parameters of
    // its own. One that does not translate leaves the parameters unknown.
    let param_probe = param_probe.and_then(|q| {
        let mut t = translate(&q).ok()?;
        t.pop()?.sqlite.into_iter().next()
    });
    let stmt = rewrite_delete_using(stmt)?;
    let mut stmt = rewrite_distinct_on(stmt)?;
    // Named from the Postgres text, before functions are renamed for SQLite.
    let mut columns = projection_hints(&stmt);
    if let Some(empty) = crate::catalog::empty_result(&stmt, &columns) {
        stmt = empty;
    }
    // Translated as any query; one that does not translate leaves those columns untyped.
    let column_probe = crate::columns::aggregate_probe(&stmt, &mut columns)
        .and_then(|q| translate(&q).ok()?.pop()?.sqlite.into_iter().next());
    // Typed from the Postgres text, before literals become parameters.
    let assigned = crate::assign::checks(&stmt);
    if let Some(call) = admin_call(&stmt)? {
        return Ok(Translated::without_sql(
            StatementKind::Admin(call),
            CommandTag::Select,
            original,
        ));
    }
    if let Some(op) = set_config_call(&stmt)? {
        return Ok(Translated::without_sql(
            StatementKind::Session(op),
            CommandTag::Select,
            original,
        ));
    }
    if matches!(stmt, Statement::Query(_)) && reads_introspection(&stmt) {
        if query_writes(&stmt) {
            return Err(SqlError::unsupported(
                "writing statements over sqlkeeper views",
            ));
        }
        // Runs on a scratch database where the views are tables of the `sqlkeeper` schema.
        let param_count = rewrite_expressions(&mut stmt);
        sqlite_query_forms(&mut stmt)?;
        return Ok(Translated {
            sqlite: vec![stmt.to_string()],
            param_count,
            columns,
            params,
            ..Translated::without_sql(StatementKind::Introspection, CommandTag::Select, original)
        });
    }
    check_internal_names(&stmt)?;
    check_supported_query_features(&stmt)?;
    check_no_deferred_constraints(&stmt)?;
    crate::catalog::rewrite(&mut stmt);
    if let Statement::AlterTable(at) = &mut stmt {
        for op in &mut at.operations {
            if let sqlparser::ast::AlterTableOperation::AddColumn { column_def, .. } = op {
                parenthesize_default(column_def);
            }
        }
    }
    let mut serial_sequences = Vec::new();
    let (kind, tag) = match &mut stmt {
        Statement::Query(_) => {
            // nextval/setval change sequences: such a query is a write, through the log.
            let kind = if query_writes(&stmt) || calls_sequence_functions(&stmt) {
                StatementKind::Write
            } else {
                StatementKind::Read
            };
            (kind, CommandTag::Select)
        }
        Statement::Insert(_) => (StatementKind::Write, CommandTag::Insert),
        Statement::Update(_) => (StatementKind::Write, CommandTag::Update),
        Statement::Delete(_) => (StatementKind::Write, CommandTag::Delete),
        Statement::CreateTable(ct) => {
            if ct.temporary {
                return Err(SqlError::unsupported("CREATE TEMPORARY TABLE"));
            }
            serial_sequences = rewrite_serial_columns(ct)?;
            if let sqlparser::ast::CreateTableOptions::With(options) = &ct.table_options {
                for o in options {
                    storage_parameter(option_key_value(o)?, TABLE_STORAGE_PARAMETERS)?;
                }
                ct.table_options = sqlparser::ast::CreateTableOptions::None;
            }
            (StatementKind::Ddl, CommandTag::Fixed("CREATE TABLE"))
        }
        Statement::CreateIndex(ci) => {
            // Every index build is one log entry applied in order: CONCURRENTLY has no meaning.
            ci.concurrently = false;
            for o in std::mem::take(&mut ci.with) {
                let Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } = &o
                else {
                    return Err(SqlError::syntax(
                        format!("syntax error at or near \"{o}\""),
                        None,
                    ));
                };
                let Expr::Identifier(key) = left.as_ref() else {
                    return Err(SqlError::syntax(
                        format!("syntax error at or near \"{left}\""),
                        None,
                    ));
                };
                storage_parameter((key, right), INDEX_STORAGE_PARAMETERS)?;
            }
            (StatementKind::Ddl, CommandTag::Fixed("CREATE INDEX"))
        }
        Statement::CreateView(_) => (StatementKind::Ddl, CommandTag::Fixed("CREATE VIEW")),
        Statement::AlterTable(_) => (StatementKind::Ddl, CommandTag::Fixed("ALTER TABLE")),
        Statement::CreateType { .. } => (StatementKind::Ddl, CommandTag::Fixed("CREATE TYPE")),
        Statement::AlterType(_) => (StatementKind::Ddl, CommandTag::Fixed("ALTER TYPE")),
        Statement::Drop { object_type, .. } => {
            if !matches!(
                object_type,
                ObjectType::Table
                    | ObjectType::View
                    | ObjectType::Index
                    | ObjectType::Sequence
                    | ObjectType::Type
            ) {
                return Err(SqlError::unsupported(format!("DROP {object_type}")));
            }
            (StatementKind::Ddl, CommandTag::Fixed(drop_tag(object_type)))
        }
        Statement::Truncate(t) => {
            // The sequences table keeps no start value and no owner, so a restart cannot be
            // done as PostgreSQL does it: refused, rather than continuing the identities
            // silently.
            if t.identity == Some(sqlparser::ast::TruncateIdentityOption::Restart) {
                return Err(SqlError::unsupported("TRUNCATE ... RESTART IDENTITY"));
            }
            (StatementKind::Write, CommandTag::Fixed("TRUNCATE TABLE"))
        }
        Statement::CreateSequence { temporary, .. } => {
            if *temporary {
                return Err(SqlError::unsupported("CREATE TEMPORARY SEQUENCE"));
            }
            (StatementKind::Ddl, CommandTag::Fixed("CREATE SEQUENCE"))
        }
        // VACUUM is whole-database in SQLite and cannot run inside the apply transaction; it
        // is accepted through the log (every replica answers alike) and reclaims nothing yet.
        Statement::Vacuum(_) => (StatementKind::Write, CommandTag::Fixed("VACUUM")),
        Statement::Analyze(_) => (StatementKind::Ddl, CommandTag::Fixed("ANALYZE")),
        Statement::Comment { .. } => (StatementKind::Ddl, CommandTag::Fixed("COMMENT")),
        Statement::StartTransaction { modes, begin, .. } => {
            let (read_only, isolation) = transaction_modes(modes)?;
            let start = !*begin;
            let tag = if start { "START TRANSACTION" } else { "BEGIN" };
            (
                StatementKind::Transaction(TxnOp::Begin {
                    start,
                    read_only,
                    isolation,
                }),
                CommandTag::Fixed(tag),
            )
        }
        Statement::Set(Set::SetTransaction {
            modes,
            session: false,
            snapshot: None,
        }) => {
            let (read_only, isolation) = transaction_modes(modes)?;
            (
                StatementKind::Transaction(TxnOp::SetTransaction {
                    read_only,
                    isolation,
                }),
                CommandTag::Fixed("SET"),
            )
        }
        Statement::Commit { .. } => (
            StatementKind::Transaction(TxnOp::Commit),
            CommandTag::Fixed("COMMIT"),
        ),
        Statement::Rollback {
            savepoint: None, ..
        } => (
            StatementKind::Transaction(TxnOp::Rollback),
            CommandTag::Fixed("ROLLBACK"),
        ),
        Statement::Rollback {
            savepoint: Some(name),
            ..
        } => (
            StatementKind::Transaction(TxnOp::RollbackTo(fold_ident(name))),
            CommandTag::Fixed("ROLLBACK"),
        ),
        Statement::Savepoint { name } => (
            StatementKind::Transaction(TxnOp::Savepoint(fold_ident(name))),
            CommandTag::Fixed("SAVEPOINT"),
        ),
        Statement::ReleaseSavepoint { name } => (
            StatementKind::Transaction(TxnOp::Release(fold_ident(name))),
            CommandTag::Fixed("RELEASE"),
        ),
        Statement::Set(set) => (
            StatementKind::Session(session_set(set)?),
            CommandTag::Fixed("SET"),
        ),
        Statement::ShowVariable { variable } => {
            let words: Vec<String> = variable.iter().map(|i| i.value.to_lowercase()).collect();
            // sqlparser splits both `transaction isolation level` and `sqlkeeper.log_index`
            // into words; only the SQL-standard multi-word names are spelled with spaces.
            let spaced = matches!(
                words.first().map(String::as_str),
                Some("transaction" | "time" | "session")
            );
            let name = words.join(if spaced { " " } else { "." });
            (
                StatementKind::Session(SessionOp::Show(name)),
                CommandTag::Fixed("SHOW"),
            )
        }
        Statement::Reset(r) => {
            let name = match &r.reset {
                Reset::ALL => None,
                Reset::SessionAuthorization => Some("session_authorization".to_string()),
                Reset::ConfigurationParameter(n) => Some(object_name_text(n)),
            };
            (
                StatementKind::Session(SessionOp::Reset(name)),
                CommandTag::Fixed("RESET"),
            )
        }
        other => return Err(SqlError::unsupported(first_words(other))),
    };

    // A view's query runs only when it is read; everything else of kind Write or Ddl runs on
    // every replica now.
    if matches!(kind, StatementKind::Write | StatementKind::Ddl)
        && !matches!(stmt, Statement::CreateView(_))
    {
        crate::plan::check_order_independent(&stmt)?;
    }
    let param_count = rewrite_expressions(&mut stmt);
    crate::rewrite::postgres_expressions(&mut stmt)?;
    crate::values::check_array_columns(&stmt)?;
    crate::values::add_column_checks(&mut stmt);
    if crate::series::may_have_series(&original) {
        crate::series::rewrite(&mut stmt)?;
    }
    strip_public_schema(&mut stmt);
    sqlite_query_forms(&mut stmt)?;
    if let Statement::Query(q) = &mut stmt {
        // One writer applies entries in log order: row locks have nothing to do.
        q.locks.clear();
    }
    // A cast of a string literal needs a quoted string (or a dollar-quoted one): other
    // statements skip the walk.
    let literal_casts = match original.contains(['\'', '$']) {
        true => literal_casts(&stmt),
        false => Vec::new(),
    };
    let session_values = match kind {
        StatementKind::Read | StatementKind::Write
            if crate::session_values::may_have(&original) =>
        {
            crate::session_values::mark(&mut stmt)?
        }
        _ => Vec::new(),
    };
    let literals = match kind {
        StatementKind::Read | StatementKind::Write => {
            crate::literals::bind(&mut stmt, param_count + 1)
        }
        _ => Vec::new(),
    };
    crate::session_values::number(
        &mut stmt,
        param_count + literals.len() + 1,
        session_values.len(),
    );
    let probe = if kind == StatementKind::Write {
        crate::plan::probe(&stmt)
    } else {
        None
    };

    let existence_notice = ExistenceNotice::of(&stmt);
    let mut effect = match (column_defaults(&mut stmt), assigned) {
        (Some(Effect::Defaults { table, width, .. }), Some((_, assigned))) => Effect::Defaults {
            table,
            width,
            assigned,
        },
        (None, Some((table, assigned))) => Effect::Defaults {
            table,
            width: None,
            assigned,
        },
        (effect, _) => effect.unwrap_or(Effect::Plain),
    };
    // Columns of an enum type: the type must exist when the statement runs.
    let type_guards = crate::enums::column_type_guards(&mut stmt);
    let mut sqlite = match (&kind, &stmt) {
        (StatementKind::Transaction(_) | StatementKind::Session(_), _) => Vec::new(),
        (_, Statement::CreateType { .. }) => crate::enums::create_type_sql(&stmt)?,
        (_, Statement::AlterType(at)) => crate::enums::alter_type_sql(at)?,
        (
            _,
            Statement::Drop {
                object_type: ObjectType::Type,
                if_exists,
                names,
                cascade,
                ..
            },
        ) => crate::enums::drop_type_sql(names, *if_exists, *cascade)?,
        (
            _,
            Statement::Drop {
                object_type: ObjectType::Sequence,
                if_exists,
                names,
                ..
            },
        ) => {
            effect = Effect::Sequences;
            names
                .iter()
                .flat_map(|n| {
                    drop_sequence_sql(
                        object_name_text(n).trim_start_matches("public."),
                        *if_exists,
                    )
                })
                .collect()
        }
        (
            _,
            Statement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            },
        ) => {
            if *cascade {
                return Err(SqlError::unsupported("DROP ... CASCADE"));
            }
            // SQLite drops one object per statement.
            let mut out: Vec<String> = names
                .iter()
                .map(|n| {
                    format!(
                        "DROP {object_type} {}{n}",
                        if *if_exists { "IF EXISTS " } else { "" }
                    )
                })
                .collect();
            out.extend(crate::comments::maintenance(&stmt));
            out.extend(crate::privileges::maintenance(&stmt));
            out
        }
        (_, Statement::Comment { .. }) => crate::comments::comment_sql(&stmt)?,
        (_, Statement::Vacuum(_)) => Vec::new(),
        (
            _,
            Statement::CreateSequence {
                if_not_exists,
                name,
                sequence_options,
                ..
            },
        ) => {
            effect = Effect::Sequences;
            vec![create_sequence_sql(
                &object_name_text(name),
                *if_not_exists,
                sequence_options,
            )?]
        }

        // Planner statistics would make replicas plan (and so order rows) differently, and
        // SQLite keeps them in a connection's memory even when the transaction that gathered
        // them is rolled back: ANALYZE is accepted and gathers nothing.
        (_, Statement::Analyze(_)) => Vec::new(),
        (_, Statement::Truncate(t)) => t
            .table_names
            .iter()
            .map(|t| format!("DELETE FROM {}", t.name))
            .collect(),
        // ALTER TABLE forms SQLite lacks: the engine rebuilds the table, one step per change.
        // Computed after the rewrites, so constraint and default expressions are SQLite SQL.
        (_, Statement::AlterTable(at)) => {
            let table = object_name_text(&at.name)
                .trim_start_matches("public.")
                .to_string();
            match crate::rebuild::alter_ops(&table, &at.operations)? {
                Some(ops) => {
                    effect = Effect::RebuildTable;
                    ops.iter()
                        .map(|op| rebuild_call(&table, op))
                        .collect::<Result<Vec<_>, SqlError>>()?
                }
                None => {
                    let mut out = native_alter_table(at, &table, &mut effect)?;
                    if effect == Effect::Plain {
                        out.extend(crate::comments::maintenance(&stmt));
                        out.extend(crate::privileges::maintenance(&stmt));
                    }
                    out
                }
            }
        }
        // SERIAL columns get a fresh sequence, created before the table.
        (_, Statement::CreateTable(ct)) => {
            let mut out = Vec::new();
            if !serial_sequences.is_empty() {
                effect = Effect::Sequences;
            }
            for seq in &serial_sequences {
                if ct.if_not_exists {
                    // The table may exist already: keep its sequence (and its position).
                    out.push(create_sequence_sql(seq, true, &[])?);
                } else {
                    out.extend(drop_sequence_sql(seq, true));
                    out.push(create_sequence_sql(seq, false, &[])?);
                }
            }
            out.push(with_sqlite_array_types(&stmt).to_string());
            out.extend(value_triggers(ct));
            out
        }
        // SQLite has no CREATE OR REPLACE VIEW: the view is dropped and created again, in the
        // one entry.
        (_, Statement::CreateView(v)) if v.or_replace => {
            let mut created = v.clone();
            created.or_replace = false;
            vec![
                format!("DROP VIEW IF EXISTS {}", v.name),
                Statement::CreateView(created).to_string(),
            ]
        }
        _ => vec![stmt.to_string()],
    };
    sqlite.splice(0..0, type_guards);
    // A table or view a role that is not a superuser creates is that role's.
    let created = match &stmt {
        Statement::CreateTable(ct) => Some(&ct.name),
        Statement::CreateView(v) => Some(&v.name),
        _ => None,
    };
    if let Some(name) = created.and_then(|n| crate::comments::fold(n).pop()) {
        sqlite.insert(0, crate::privileges::owner_sql(&name));
    }
    Ok(Translated {
        kind,
        sqlite,
        effect,
        tag,
        param_count,
        original,
        columns,
        probe,
        params,
        param_probe,
        existence_notice,
        literals,
        literal_casts,
        column_probe,
        session_values,
    })
}

/// `DECLARE`, `FETCH` and `CLOSE` of a cursor, forward only: the session runs them
/// (`session/src/cursor.rs`). Cursors that outlive their block (`WITH HOLD`), binary cursors,
/// `FETCH` backward or to a position, and `FETCH ... INTO` are refused (0A000).
fn cursor_op(stmt: &Statement) -> Result<(crate::CursorOp, CommandTag), SqlError> {
    use crate::CursorOp;
    use sqlparser::ast::{CloseCursor, DeclareType, FetchDirection};
    let count = |v: &sqlparser::ast::ValueWithSpan| -> Result<u64, SqlError> {
        match &v.value {
            Value::Number(n, _) => n.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                SqlError::unsupported(format!("FETCH of {n} rows (only forward, at least one)"))
            }),
            other => Err(SqlError::syntax(
                format!("syntax error at or near \"{other}\""),
                None,
            )),
        }
    };
    match stmt {
        Statement::Declare { stmts } => {
            let [d] = stmts.as_slice() else {
                return Err(SqlError::unsupported("DECLARE of several cursors"));
            };
            let (Some(DeclareType::Cursor), Some(query), [name]) =
                (&d.declare_type, &d.for_query, d.names.as_slice())
            else {
                return Err(SqlError::unsupported("DECLARE other than of a cursor"));
            };
            if d.hold == Some(true) {
                return Err(SqlError::unsupported("DECLARE ... CURSOR WITH HOLD"));
            }
            if d.binary == Some(true) {
                return Err(SqlError::unsupported("DECLARE BINARY CURSOR"));
            }
            Ok((
                CursorOp::Declare {
                    name: fold_ident(name),
                    query: query.to_string(),
                },
                CommandTag::Fixed("DECLARE CURSOR"),
            ))
        }
        Statement::Fetch {
            name,
            direction,
            into,
            ..
        } => {
            if into.is_some() {
                return Err(SqlError::unsupported("FETCH ... INTO"));
            }
            let count = match direction {
                FetchDirection::Next => Some(1),
                FetchDirection::All | FetchDirection::ForwardAll => None,
                FetchDirection::Count { limit }
                | FetchDirection::Forward { limit: Some(limit) } => Some(count(limit)?),
                other => return Err(SqlError::unsupported(format!("FETCH {other}"))),
            };
            Ok((
                CursorOp::Fetch {
                    name: fold_ident(name),
                    count,
                },
                CommandTag::Fetch,
            ))
        }
        Statement::Close { cursor } => Ok(match cursor {
            CloseCursor::All => (CursorOp::Close(None), CommandTag::Fixed("CLOSE CURSOR ALL")),
            CloseCursor::Specific { name } => (
                CursorOp::Close(Some(fold_ident(name))),
                CommandTag::Fixed("CLOSE CURSOR"),
            ),
        }),
        other => Err(SqlError::unsupported(first_words(other))),
    }
}

/// The string literals `stmt` casts to a checked type, as the rewrites left them:
/// `_sqlkeeper_cast('abc', 'int4', -1)` (see [`Translated::literal_casts`]).
fn literal_casts(stmt: &Statement) -> Vec<(String, String, i64)> {
    let mut found = Vec::new();
    let _ = sqlparser::ast::visit_expressions(stmt, |e| {
        if let Expr::Function(f) = e {
            if f.name.to_string() == crate::values::CAST_FUNCTION {
                if let Some([text, ty, typmod]) = crate::rewrite::literal_args(f).as_deref() {
                    if let (Value::SingleQuotedString(text), Value::SingleQuotedString(ty)) =
                        (text, ty)
                    {
                        let typmod = match typmod {
                            Value::Number(n, _) => n.parse().unwrap_or(-1),
                            _ => -1,
                        };
                        found.push((text.clone(), ty.clone(), typmod));
                    }
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

fn object_name_text(n: &ObjectName) -> String {
    n.0.iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.to_lowercase(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn expr_text(e: &Expr) -> String {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// The access mode and isolation level of `BEGIN`, `START TRANSACTION` or `SET TRANSACTION`.
fn transaction_modes(
    modes: &[TransactionMode],
) -> Result<(Option<bool>, Option<Isolation>), SqlError> {
    let (mut read_only, mut isolation) = (None, None);
    for m in modes {
        match m {
            TransactionMode::AccessMode(a) => {
                read_only = Some(matches!(a, TransactionAccessMode::ReadOnly));
            }
            TransactionMode::IsolationLevel(l) => {
                isolation = Some(match l {
                    TransactionIsolationLevel::ReadUncommitted
                    | TransactionIsolationLevel::ReadCommitted => Isolation::ReadCommitted,
                    TransactionIsolationLevel::RepeatableRead => Isolation::RepeatableRead,
                    TransactionIsolationLevel::Serializable => Isolation::Serializable,
                    other => return Err(SqlError::unsupported(format!("ISOLATION LEVEL {other}"))),
                });
            }
        }
    }
    Ok((read_only, isolation))
}

fn session_set(set: &Set) -> Result<SessionOp, SqlError> {
    match set {
        // SET SESSION CHARACTERISTICS AS TRANSACTION ...: the session's defaults.
        Set::SetTransaction {
            modes,
            session: true,
            snapshot: None,
        } => {
            let (read_only, isolation) = transaction_modes(modes)?;
            match (read_only, isolation) {
                (None, Some(i)) => Ok(SessionOp::Set {
                    name: "default_transaction_isolation".into(),
                    value: Some(i.name().into()),
                }),
                (Some(r), None) => Ok(SessionOp::Set {
                    name: "default_transaction_read_only".into(),
                    value: Some(if r { "on" } else { "off" }.into()),
                }),
                _ => Err(SqlError::unsupported(
                    "SET SESSION CHARACTERISTICS with more than one mode (set them one at a time)",
                )),
            }
        }
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = object_name_text(variable);
            let value = match values.as_slice() {
                [Expr::Identifier(i)] if i.value.eq_ignore_ascii_case("default") => None,
                vs => Some(vs.iter().map(expr_text).collect::<Vec<_>>().join(", ")),
            };
            Ok(SessionOp::Set { name, value })
        }
        Set::SetTimeZone { value, .. } => Ok(SessionOp::Set {
            name: "timezone".into(),
            value: Some(expr_text(value)),
        }),
        Set::SetNames { charset_name, .. } => Ok(SessionOp::Set {
            name: "client_encoding".into(),
            value: Some(charset_name.value.clone()),
        }),
        other => Err(SqlError::unsupported(format!("{other}"))),
    }
}

/// SQLite takes only literals, signed numbers and parenthesized expressions after DEFAULT:
/// `DEFAULT now()` becomes `DEFAULT (now())`.
fn parenthesize_default(col: &mut sqlparser::ast::ColumnDef) {
    for o in &mut col.options {
        if let ColumnOption::Default(e) = &mut o.option {
            let signed_number =
                matches!(e, Expr::UnaryOp { expr, .. } if matches!(**expr, Expr::Value(_)));
            if !matches!(e, Expr::Value(_) | Expr::Nested(_)) && !signed_number {
                *e = Expr::Nested(Box::new(e.clone()));
            }
        }
    }
}

/// Deferred constraints would be checked at the end of the apply batch's SQLite transaction,
/// where a violation cannot be turned into one statement's error: refused.
fn check_no_deferred_constraints(stmt: &Statement) -> Result<(), SqlError> {
    if !matches!(stmt, Statement::CreateTable(_) | Statement::AlterTable(_)) {
        return Ok(());
    }
    // Looked for in the statement's text with its string literals emptied, so a DEFAULT or
    // CHECK literal that happens to spell the words does not count.
    let mut bare = stmt.clone();
    let _ = visit_expressions_mut(&mut bare, |e| {
        if let Expr::Value(v) = e {
            if matches!(v.value, Value::SingleQuotedString(_)) {
                v.value = Value::SingleQuotedString(String::new());
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if bare
        .to_string()
        .to_ascii_uppercase()
        .contains("INITIALLY DEFERRED")
    {
        return Err(SqlError::unsupported(
            "INITIALLY DEFERRED constraints (constraints are checked at each statement)",
        ));
    }
    Ok(())
}

/// An identifier as Postgres resolves it: unquoted names fold to lower case.
fn fold_ident(i: &sqlparser::ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        // Postgres folds ASCII letters only (in UTF-8 databases).
        i.value.to_ascii_lowercase()
    }
}

/// Internal tables (`_sqlkeeper_*`) and SQLite's own (`sqlite_*`) are not user data: a
/// replicated statement that touched them could break the state machine's bookkeeping.
///
/// The only schema is `public` (SQLite's `main`): a name in any other schema (`temp.t`, an
/// attached database) would live outside the replicated state, so it is refused.
fn check_internal_names(stmt: &Statement) -> Result<(), SqlError> {
    fn check(name: &ObjectName) -> Result<(), SqlError> {
        if crate::catalog::relation(name).is_some() {
            return Ok(());
        }
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| p.to_string().trim_matches('"').to_ascii_lowercase())
            .collect();
        // Set-returning functions in FROM are relations to the visitor: `pg_catalog.unnest(a)`.
        if let [schema, f] = parts.as_slice() {
            if schema == "pg_catalog" && matches!(f.as_str(), "unnest" | "generate_series") {
                return Ok(());
            }
        }
        if let [schema, _] = parts.as_slice() {
            if schema != "public" {
                return Err(SqlError {
                    sqlstate: crate::SqlState::new("3F000"),
                    message: format!("schema \"{schema}\" does not exist"),
                    position: None,
                });
            }
        }
        match parts.last() {
            Some(n) if n.starts_with("_sqlkeeper") || n.starts_with("sqlite_") => Err(SqlError {
                sqlstate: crate::SqlState::new("42501"),
                message: format!("permission denied for table {n}"),
                position: None,
            }),
            _ => Ok(()),
        }
    }
    // Names that are not visited as relations: DROP targets, new index names, RENAME TO.
    if let Statement::Drop { names, .. } = stmt {
        names.iter().try_for_each(check)?;
    }
    if let Statement::CreateIndex(ci) = stmt {
        if let Some(n) = &ci.name {
            check(n)?;
        }
    }
    if let Statement::AlterTable(at) = stmt {
        for op in &at.operations {
            if let sqlparser::ast::AlterTableOperation::RenameTable { table_name } = op {
                let text = table_name.to_string();
                let target = text
                    .trim_start_matches("TO ")
                    .trim_start_matches("AS ")
                    .trim();
                let parts: Vec<sqlparser::ast::Ident> =
                    target.split('.').map(sqlparser::ast::Ident::new).collect();
                check(&ObjectName::from(parts))?;
            }
        }
    }
    if let Statement::CreateView(v) = stmt {
        if v.temporary {
            return Err(SqlError::unsupported("CREATE TEMPORARY VIEW"));
        }
    }
    match visit_relations(stmt, |name| match check(name) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => ControlFlow::Break(e),
    }) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// An ALTER TABLE SQLite runs itself, with the boolean triggers kept in step: a boolean
/// column added gets them, a column dropped loses them first (SQLite refuses to drop a column
/// a trigger uses).
fn native_alter_table(
    at: &sqlparser::ast::AlterTable,
    table: &str,
    effect: &mut Effect,
) -> Result<Vec<String>, SqlError> {
    let mut out = Vec::new();
    for op in &at.operations {
        if let sqlparser::ast::AlterTableOperation::DropColumn { column_names, .. } = op {
            for c in column_names {
                for name in value_trigger_names(table, &c.value) {
                    out.push(format!("DROP TRIGGER IF EXISTS \"{name}\""));
                }
            }
        }
    }
    // SQLite runs one operation per ALTER TABLE.
    for op in &at.operations {
        match op {
            sqlparser::ast::AlterTableOperation::AddColumn { column_def, .. }
                if column_def
                    .options
                    .iter()
                    .any(|o| matches!(&o.option, ColumnOption::Default(Expr::Nested(_)))) =>
            {
                out.extend(add_column_with_expression_default(
                    at, table, column_def, effect,
                )?)
            }
            op => {
                let mut op = op.clone();
                if let sqlparser::ast::AlterTableOperation::AddColumn { column_def, .. } = &mut op {
                    sqlite_array_type(&mut column_def.data_type);
                }
                out.push(format!("ALTER TABLE {} {op}", at.name))
            }
        }
    }
    let added: Vec<sqlparser::ast::ColumnDef> = at
        .operations
        .iter()
        .filter_map(|o| match o {
            sqlparser::ast::AlterTableOperation::AddColumn { column_def, .. } => {
                Some(column_def.clone())
            }
            _ => None,
        })
        .collect();
    if !added.is_empty() {
        let parsed = Parser::parse_sql(
            &PostgreSqlDialect {},
            &format!("CREATE TABLE {} (x int)", at.name),
        )
        .map_err(|e| SqlError::syntax(e.to_string(), None))?;
        if let Some(Statement::CreateTable(mut pseudo)) = parsed.into_iter().next() {
            pseudo.columns = added;
            out.extend(value_triggers(&pseudo));
        }
    }
    Ok(out)
}

/// `ADD COLUMN c t DEFAULT (expr)`: SQLite refuses an expression default on a table with
/// rows, where Postgres evaluates it for every existing row. Added without it, filled with an
/// UPDATE, then the default (and NOT NULL) set by a table rebuild, all in the one entry.
fn add_column_with_expression_default(
    at: &sqlparser::ast::AlterTable,
    table: &str,
    column_def: &sqlparser::ast::ColumnDef,
    effect: &mut Effect,
) -> Result<Vec<String>, SqlError> {
    let mut bare = column_def.clone();
    let mut default = None;
    let mut not_null = false;
    bare.options.retain(|o| match &o.option {
        ColumnOption::Default(e) => {
            default = Some(e.clone());
            false
        }
        ColumnOption::NotNull => {
            not_null = true;
            false
        }
        _ => true,
    });
    let Some(default) = default else {
        return Ok(vec![format!(
            "ALTER TABLE {} ADD COLUMN {column_def}",
            at.name
        )]);
    };
    let column = bare.name.value.clone();
    let mut out = vec![
        format!("ALTER TABLE {} ADD COLUMN {bare}", at.name),
        format!("UPDATE {} SET {} = {default}", at.name, bare.name),
    ];
    let mut ops = vec![crate::rebuild::AlterOp::SetDefault {
        column: column.clone(),
        expr: default.to_string(),
    }];
    if not_null {
        ops.push(crate::rebuild::AlterOp::SetNotNull(column));
    }
    *effect = Effect::RebuildTable;
    for op in ops {
        out.push(rebuild_call(table, &op)?);
    }
    Ok(out)
}

/// The internal statement that asks the engine to rebuild `table` with one change.
fn rebuild_call(table: &str, op: &crate::rebuild::AlterOp) -> Result<String, SqlError> {
    let json = serde_json::to_string(op).map_err(SqlError::unsupported)?;
    Ok(format!(
        "SELECT {}({}, {})",
        crate::rebuild::REBUILD_TABLE_FUNCTION,
        quote_literal(table),
        quote_literal(&json)
    ))
}

/// `stmt` (a `CREATE TABLE`) with its columns' array types written as SQLite keeps them
/// ([`sqlite_array_type`]).
fn with_sqlite_array_types(stmt: &Statement) -> Statement {
    let mut stmt = stmt.clone();
    if let Statement::CreateTable(ct) = &mut stmt {
        for c in &mut ct.columns {
            sqlite_array_type(&mut c.data_type);
        }
    }
    stmt
}

/// An array type as a quoted type name (`"VARCHAR(5)[]"`): SQLite's grammar has no `[]` after
/// a type's modifier, and keeps a quoted name as the column's declared type, which is where
/// the column's PostgreSQL type is read from (`pg_type_of_name`). Its affinity is the element
/// type's, and no array's text form (`{…}`) is ever converted by it.
fn sqlite_array_type(dt: &mut DataType) {
    if let DataType::Array(_) = dt {
        *dt = DataType::Custom(
            sqlparser::ast::ObjectName::from(vec![Ident::with_quote('"', dt.to_string())]),
            vec![],
        );
    }
}

/// Triggers that store a value the way Postgres stores it, after every insert and update of
/// the column. Postgres accepts `'t'`, `'true'`, `'yes'`, `'on'`, `'1'` (and their opposites)
/// for a boolean; SQLite would keep the text, which is false in a WHERE clause: a `boolean`
/// column stores 1/0 instead (`pg_bool`, 22P02 for other text). A `jsonb` column stores its
/// value normalized as Postgres prints it, a `uuid` column in lower case with hyphens
/// (`_sqlkeeper_cast`); their checks (`values.rs`) have already refused invalid values.
/// Dates and timestamps are stored as Postgres prints them, `numeric(p, s)` rounded to its
/// scale, a float in an integer column rounded, `varchar(n)` without trailing spaces past `n`,
/// `char(n)` without trailing spaces.
fn value_triggers(ct: &sqlparser::ast::CreateTable) -> Vec<String> {
    column_value_triggers(ct)
        .into_iter()
        .map(|(_, sql)| sql)
        .collect()
}

/// The names [`column_value_triggers`] gives the triggers of `column` of `table`, of every
/// kind: what dropping the column, or changing its type, drops.
pub(crate) fn value_trigger_names(table: &str, column: &str) -> Vec<String> {
    let mut names = Vec::new();
    for kind in ["bool", "norm", "enum"] {
        for event in ["insert", "update"] {
            names.push(value_trigger_name(kind, table, column, event));
        }
    }
    names
}

/// The name of the trigger of `kind` (`bool`, `norm`, `enum`) that keeps `column` of `table`
/// on `event` (`insert`, `update`).
pub(crate) fn value_trigger_name(kind: &str, table: &str, column: &str, event: &str) -> String {
    format!("_sqlkeeper_{kind}_{table}_{column}_{event}")
}

/// [`value_triggers`], each with the column it keeps: the triggers that keep a value in its
/// type's form, and those that refuse a value that is not a label of the column's enum type.
pub(crate) fn column_value_triggers(ct: &sqlparser::ast::CreateTable) -> Vec<(String, String)> {
    let table = object_name_text(&ct.name)
        .trim_start_matches("public.")
        .to_string();
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    ct.columns
        .iter()
        .filter_map(|c| {
            let cq = q(&c.name.value);
            let (kind, when, value) = match &c.data_type {
                DataType::Boolean | DataType::Bool => (
                    "bool",
                    format!("typeof(NEW.{cq}) = 'text'"),
                    format!("pg_bool(NEW.{cq})"),
                ),
                dt => {
                    let cast = |ty: &str, typmod: i64| {
                        format!(
                            "{}(NEW.{cq}, '{ty}', {typmod})",
                            crate::values::CAST_FUNCTION
                        )
                    };
                    let (when, value) = match crate::values::checked_type(dt)? {
                        // Arrays stored in their text form with each element as its type
                        // prints it (`{1,2}`, `{t,f}`, `{1.50}`), so equal arrays are equal.
                        (ty, typmod) if ty.ends_with("[]") => {
                            let norm = cast(ty, typmod);
                            (format!("CAST(NEW.{cq} AS TEXT) IS NOT {norm}"), norm)
                        }
                        // Values stored in the form Postgres prints them: normalized jsonb,
                        // lower-case uuids, dates and timestamps as `2024-02-29 10:00:00+00`.
                        // Compared as text: the column's NUMERIC affinity makes the stored `42`
                        // of a jsonb an integer, which is never the text `42`, and the trigger
                        // would fire again and again.
                        (ty @ ("jsonb" | "uuid" | "date" | "timestamp" | "timestamptz"), _) => {
                            let norm = cast(ty, -1);
                            (format!("CAST(NEW.{cq} AS TEXT) IS NOT {norm}"), norm)
                        }
                        // A fractional value assigned to an integer column is rounded, as
                        // PostgreSQL's assignment cast rounds it (SQLite keeps the float);
                        // only a float stored there fires it.
                        (ty @ ("int2" | "int4" | "int8"), _) => {
                            (format!("typeof(NEW.{cq}) = 'real'"), cast(ty, -1))
                        }
                        // The specials of a float written as text (`'-inf'`) stored as the
                        // float they are, so `-Infinity` sorts first and equals
                        // `'-Infinity'::float8`; a NaN stays the text `'NaN'`
                        // (`numeric::NAN_TEXT`), which the REAL affinity leaves as it is.
                        (ty @ ("float4" | "float8"), _) => (
                            format!(
                                "typeof(NEW.{cq}) = 'text' AND NEW.{cq} IS NOT '{}'",
                                crate::numeric::NAN_TEXT
                            ),
                            cast(ty, -1),
                        ),
                        // PostgreSQL cuts the trailing spaces past `varchar(n)`'s length (the
                        // column's check refuses anything else past it) ...
                        ("varchar", n) if n >= 0 => {
                            (format!("length(NEW.{cq}) > {n}"), cast("varchar", n))
                        }
                        // ... and a `char(n)`'s trailing spaces mean nothing: stored without
                        // them (`char_length` does not count them), printed padded to n.
                        ("bpchar", _) => (
                            format!("substr(NEW.{cq}, -1) = ' '"),
                            format!("rtrim(NEW.{cq}, ' ')"),
                        ),
                        // `numeric(p, s)` rounded to its scale (compared as numbers: `12.5` is
                        // its own text).
                        ("numeric", typmod) if typmod >= 4 => {
                            let norm = cast("numeric", typmod);
                            (format!("NEW.{cq} IS NOT {norm}"), norm)
                        }
                        _ => return None,
                    };
                    ("norm", when, value)
                }
            };
            Some((c.name.value.clone(), cq, kind, when, value))
        })
        .flat_map(|(col, cq, kind, when, value)| {
            let t = q(&table);
            let table = &table;
            ["INSERT", "UPDATE"].map(move |event| {
                let on = if event == "UPDATE" {
                    format!("UPDATE OF {cq}")
                } else {
                    "INSERT".to_string()
                };
                let sql = format!(
                    "CREATE TRIGGER IF NOT EXISTS {} AFTER {on} ON {t} WHEN {when} \
                     BEGIN UPDATE {t} SET {cq} = {value} WHERE rowid = NEW.rowid; END",
                    q(&value_trigger_name(
                        kind,
                        table,
                        &col,
                        &event.to_lowercase()
                    ))
                );
                (col.clone(), sql)
            })
        })
        .chain(ct.columns.iter().flat_map(|c| {
            let ty = crate::enums::enum_type_name(&c.data_type);
            ty.into_iter().flat_map(|ty| {
                crate::enums::membership_triggers(&table, &c.name.value, &ty)
                    .map(|sql| (c.name.value.clone(), sql))
            })
        }))
        .collect()
}

/// Whether the statement calls `nextval` or `setval`.
fn calls_sequence_functions(stmt: &Statement) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(stmt, |e| {
        if let Expr::Function(f) = e {
            let n = f.name.to_string().to_ascii_lowercase();
            if n.ends_with("nextval") || n.ends_with("setval") {
                found = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

/// Table of sequences in the state database (engine `sequences.rs`).
const SEQUENCES_TABLE: &str = "_sqlkeeper_sequences";

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn literal_i64(e: &Expr) -> Result<i64, SqlError> {
    let text = e.to_string().replace(' ', "");
    text.parse().map_err(|_| {
        SqlError::unsupported(format!("sequence option value {e} (only integer literals)"))
    })
}

/// `CREATE SEQUENCE` becomes a row of the sequences table. A duplicate name raises 42P07 (as
/// Postgres) unless IF NOT EXISTS.
fn create_sequence_sql(
    name: &str,
    if_not_exists: bool,
    options: &[sqlparser::ast::SequenceOptions],
) -> Result<String, SqlError> {
    use sqlparser::ast::SequenceOptions as O;
    let mut start = None;
    let mut increment = 1i64;
    for o in options {
        match o {
            O::StartWith(e, _) => start = Some(literal_i64(e)?),
            O::IncrementBy(e, _) => increment = literal_i64(e)?,
            // sqlparser's Cycle(true) is NO CYCLE, the default.
            O::Cache(_) | O::MinValue(None) | O::MaxValue(None) | O::Cycle(true) => {}
            other => return Err(SqlError::unsupported(format!("sequence option {other}"))),
        }
    }
    if increment == 0 {
        return Err(SqlError {
            sqlstate: crate::SqlState::new("22023"),
            message: "INCREMENT must not be zero".into(),
            position: None,
        });
    }
    let start = start.unwrap_or(if increment > 0 { 1 } else { -1 });
    let n = quote_literal(name);
    let guard = if if_not_exists {
        format!("WHERE NOT EXISTS (SELECT 1 FROM {SEQUENCES_TABLE} WHERE name = {n})")
    } else {
        format!(
            "WHERE NOT EXISTS (SELECT 1 FROM {SEQUENCES_TABLE} WHERE name = {n} \
             AND pg_raise('42P07', 'relation \"' || {n} || '\" already exists'))"
        )
    };
    Ok(format!(
        "INSERT INTO {SEQUENCES_TABLE} (name, last_value, increment, is_called) SELECT {n}, {start}, {increment}, 0 {guard}"
    ))
}

/// `DROP SEQUENCE s`: a missing sequence raises 42P01 unless IF EXISTS.
fn drop_sequence_sql(name: &str, if_exists: bool) -> Vec<String> {
    let n = quote_literal(name);
    let mut out = Vec::new();
    if !if_exists {
        out.push(format!(
            "SELECT pg_raise('42P01', 'sequence \"' || {n} || '\" does not exist') \
             WHERE NOT EXISTS (SELECT 1 FROM {SEQUENCES_TABLE} WHERE name = {n})"
        ));
    }
    out.push(format!("DELETE FROM {SEQUENCES_TABLE} WHERE name = {n}"));
    out
}

/// `SELECT DISTINCT ON (k) p FROM ... ORDER BY o` (top level) keeps the first row of each `k`
/// in `o` order. SQLite has no DISTINCT ON; it becomes a window query:
/// `SELECT p FROM (SELECT p, o, row_number() OVER (PARTITION BY k ORDER BY o) AS rn FROM ...)
/// WHERE rn = 1 ORDER BY o`, composed from the AST's parts and parsed again.
fn rewrite_distinct_on(stmt: Statement) -> Result<Statement, SqlError> {
    let Statement::Query(q) = &stmt else {
        return Ok(stmt);
    };
    let SetExpr::Select(sel) = q.body.as_ref() else {
        return Ok(stmt);
    };
    let Some(sqlparser::ast::Distinct::On(keys)) = &sel.distinct else {
        return Ok(stmt);
    };
    let grouped =
        !matches!(&sel.group_by, sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty());
    if grouped || sel.having.is_some() {
        return Err(SqlError::unsupported(
            "SELECT DISTINCT ON with GROUP BY or HAVING",
        ));
    }
    if q.with.is_some() || q.limit_clause.is_some() && q.order_by.is_none() {
        return Err(SqlError::unsupported(
            "SELECT DISTINCT ON with WITH, or with LIMIT but no ORDER BY",
        ));
    }
    let mut inner_items = Vec::new();
    let mut outer_items = Vec::new();
    for (i, item) in sel.projection.iter().enumerate() {
        let (expr, name) = match item {
            SelectItem::UnnamedExpr(e) => (
                e.to_string(),
                match e {
                    Expr::Identifier(id) => id.to_string(),
                    Expr::CompoundIdentifier(parts) => {
                        parts.last().map(|p| p.to_string()).unwrap_or_default()
                    }
                    _ => format!("\"_sqlkeeper_p{i}\""),
                },
            ),
            SelectItem::ExprWithAlias { expr, alias } => (expr.to_string(), alias.to_string()),
            _ => return Err(SqlError::unsupported("SELECT DISTINCT ON with *")),
        };
        inner_items.push(format!("{expr} AS _sqlkeeper_p{i}"));
        outer_items.push(format!("_sqlkeeper_p{i} AS {name}"));
    }
    let order: Vec<String> = match &q.order_by {
        Some(OrderBy {
            kind: OrderByKind::Expressions(items),
            ..
        }) => items.iter().map(|o| o.to_string()).collect(),
        _ => Vec::new(),
    };
    let mut outer_order = Vec::new();
    for (j, o) in order.iter().enumerate() {
        let (expr, dir) = match &q.order_by {
            Some(OrderBy {
                kind: OrderByKind::Expressions(items),
                ..
            }) => {
                let it = &items[j];
                let mut d = String::new();
                match &it.options.sort {
                    Some(OrderBySort::Asc) => d.push_str(" ASC"),
                    Some(OrderBySort::Desc) => d.push_str(" DESC"),
                    _ => {}
                }
                if let Some(nf) = it.options.nulls_first {
                    d.push_str(if nf { " NULLS FIRST" } else { " NULLS LAST" });
                }
                (it.expr.to_string(), d)
            }
            _ => (o.clone(), String::new()),
        };
        inner_items.push(format!("{expr} AS _sqlkeeper_o{j}"));
        outer_order.push(format!("_sqlkeeper_o{j}{dir}"));
    }
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let mut inner = format!(
        "SELECT {}, row_number() OVER (PARTITION BY {}{}) AS _sqlkeeper_rn",
        inner_items.join(", "),
        keys.join(", "),
        if order.is_empty() {
            String::new()
        } else {
            format!(" ORDER BY {}", order.join(", "))
        }
    );
    if !sel.from.is_empty() {
        let from: Vec<String> = sel.from.iter().map(|f| f.to_string()).collect();
        inner.push_str(&format!(" FROM {}", from.join(", ")));
    }
    if let Some(w) = &sel.selection {
        inner.push_str(&format!(" WHERE {w}"));
    }
    let mut sql = format!(
        "SELECT {} FROM ({inner}) AS _sqlkeeper_d WHERE _sqlkeeper_rn = 1",
        outer_items.join(", ")
    );
    if !outer_order.is_empty() {
        sql.push_str(&format!(" ORDER BY {}", outer_order.join(", ")));
    }
    if let Some(l) = &q.limit_clause {
        sql.push_str(&format!(" {l}"));
    }
    let dialect = PostgreSqlDialect {};
    let mut parsed =
        Parser::parse_sql(&dialect, &sql).map_err(|e| SqlError::syntax(e.to_string(), None))?;
    parsed
        .pop()
        .ok_or_else(|| SqlError::unsupported("SELECT DISTINCT ON"))
}

/// Query features with no SQLite equivalent yet: refused with 0A000 naming them, never
/// passed through with a different meaning.
fn check_supported_query_features(stmt: &Statement) -> Result<(), SqlError> {
    struct Check(Option<SqlError>);
    impl sqlparser::ast::Visitor for Check {
        type Break = ();
        fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
            if let SetExpr::Select(s) = q.body.as_ref() {
                if matches!(s.distinct, Some(sqlparser::ast::Distinct::On(_))) {
                    self.0 = Some(SqlError::unsupported("SELECT DISTINCT ON"));
                    return ControlFlow::Break(());
                }
            }
            // SQLite's WITH holds queries only.
            let writes = |q: &Query| {
                matches!(
                    q.body.as_ref(),
                    SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_)
                )
            };
            if q.with
                .as_ref()
                .is_some_and(|w| w.cte_tables.iter().any(|c| writes(&c.query)))
            {
                self.0 = Some(SqlError::unsupported(
                    "data-modifying statements (INSERT, UPDATE, DELETE) in WITH",
                ));
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut c = Check(None);
    let _ = sqlparser::ast::Visit::visit(stmt, &mut c);
    match c.0 {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `date '2001-09-28'`, `timestamp '...'` and every other `type 'text'` constant is Postgres'
/// cast of the text to the type (`'2001-09-28'::date`), and is translated as one.
fn typed_literals_as_casts(stmt: &mut Statement) {
    let _ = visit_expressions_mut(stmt, |e| {
        if let Expr::TypedString(ts) = e {
            *e = Expr::Cast {
                kind: CastKind::DoubleColon,
                expr: Box::new(Expr::Value(ts.value.clone())),
                data_type: ts.data_type.clone(),
                format: None,
            };
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `$n` placeholders become SQLite's positional `?n` (a bare `$1` would be a *named*
/// parameter in SQLite, numbered by first appearance). `x::t` becomes `CAST(x AS t)`.
/// Returns the highest parameter number.
fn rewrite_expressions(stmt: &mut Statement) -> usize {
    let mut max = 0usize;
    let _ = visit_expressions_mut(stmt, |e| {
        match e {
            Expr::Value(v) => {
                if let Value::Placeholder(p) = &v.value {
                    if let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                        max = max.max(n);
                        v.value = Value::Placeholder(format!("?{n}"));
                    }
                }
            }
            Expr::Cast { kind, .. } => {
                if matches!(kind, CastKind::DoubleColon) {
                    *kind = CastKind::Cast;
                }
            }
            _ => {}
        }
        ControlFlow::<()>::Continue(())
    });
    max
}

/// `(SELECT ... UNION SELECT ...) ORDER BY ...`, `(SELECT 1) UNION (SELECT 2)`: SQLite takes
/// no parentheses around a query's body or the members of a compound; a parenthesized query
/// with nothing of its own (no WITH, ORDER BY, LIMIT) is its body.
fn unparenthesize(body: &mut SetExpr) {
    // A loop, not recursion: a compound of thousands of members is a tree as deep (the poison
    // corpus has one), and must end in SQLite's 54001, not in a stack overflow here.
    let mut pending = vec![body];
    while let Some(b) = pending.pop() {
        while let SetExpr::Query(inner) = b {
            if inner.with.is_some()
                || inner.order_by.is_some()
                || inner.limit_clause.is_some()
                || inner.fetch.is_some()
            {
                break;
            }
            let empty = SetExpr::Values(sqlparser::ast::Values {
                explicit_row: false,
                value_keyword: false,
                rows: Vec::new(),
            });
            *b = std::mem::replace(inner.body.as_mut(), empty);
        }
        if let SetExpr::SetOperation { left, right, .. } = b {
            pending.push(left.as_mut());
            pending.push(right.as_mut());
        }
    }
}

/// What Postgres queries say that SQLite says differently, in one walk of the statement:
/// - Postgres sorts NULL above every value (last in ascending order, first in descending);
///   SQLite sorts it below. Every ORDER BY item (of queries and of windows, which decide which
///   row is "first": row_number, DISTINCT ON) without an explicit `NULLS FIRST/LAST` gets the
///   Postgres default spelled out.
/// - `OFFSET n` without `LIMIT` and `FETCH FIRST n ROWS ONLY` become `LIMIT -1 OFFSET n` and
///   `LIMIT n`; `WITH TIES` and `PERCENT` are refused (0A000).
/// - The target of an `UPDATE` or `DELETE` gets its alias with `AS`, which SQLite requires, and
///   its `RETURNING` names the target's columns without the alias, which SQLite's `RETURNING`
///   does not know.
/// - A parenthesized query body or compound member loses its parentheses ([`unparenthesize`]).
fn sqlite_query_forms(stmt: &mut Statement) -> Result<(), SqlError> {
    use sqlparser::ast::{LimitClause, OrderByExpr};
    fn nulls_as_postgres(items: &mut [OrderByExpr]) {
        for item in items {
            if item.options.nulls_first.is_none() {
                let desc = matches!(item.options.sort, Some(OrderBySort::Desc));
                item.options.nulls_first = Some(desc);
            }
        }
    }
    struct Fix(Option<SqlError>);
    impl VisitorMut for Fix {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            unparenthesize(&mut query.body);
            if let Some(OrderBy {
                kind: OrderByKind::Expressions(items),
                ..
            }) = &mut query.order_by
            {
                nulls_as_postgres(items);
            }
            let number = |n: &str| Expr::Value(Value::Number(n.into(), false).into());
            if let Some(fetch) = query.fetch.take() {
                if fetch.with_ties || fetch.percent {
                    self.0 = Some(SqlError::unsupported("FETCH ... WITH TIES or PERCENT"));
                    return ControlFlow::Break(());
                }
                let quantity = fetch.quantity.unwrap_or_else(|| number("1"));
                match &mut query.limit_clause {
                    Some(LimitClause::LimitOffset { limit, .. }) if limit.is_none() => {
                        *limit = Some(quantity)
                    }
                    None => {
                        query.limit_clause = Some(LimitClause::LimitOffset {
                            limit: Some(quantity),
                            offset: None,
                            limit_by: Vec::new(),
                        })
                    }
                    _ => {}
                }
            }
            if let Some(LimitClause::LimitOffset {
                limit: limit @ None,
                offset: Some(_),
                ..
            }) = &mut query.limit_clause
            {
                *limit = Some(number("-1"));
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
            if let Expr::Function(f) = expr {
                if let Some(sqlparser::ast::WindowType::WindowSpec(spec)) = &mut f.over {
                    nulls_as_postgres(&mut spec.order_by);
                }
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_statement(&mut self, stmt: &mut Statement) -> ControlFlow<()> {
            let (relation, returning) = match stmt {
                Statement::Update(u) => (&mut u.table.relation, &mut u.returning),
                Statement::Delete(d) => match &mut d.from {
                    sqlparser::ast::FromTable::WithFromKeyword(f)
                    | sqlparser::ast::FromTable::WithoutKeyword(f)
                        if f.len() == 1 =>
                    {
                        (&mut f[0].relation, &mut d.returning)
                    }
                    _ => return ControlFlow::Continue(()),
                },
                _ => return ControlFlow::Continue(()),
            };
            if let sqlparser::ast::TableFactor::Table {
                alias: Some(alias), ..
            } = relation
            {
                alias.explicit = true;
                // SQLite's RETURNING sees the target table only, and not by its alias.
                let name = alias.name.value.clone();
                for item in returning.iter_mut().flatten() {
                    let _ = visit_expressions_mut(item, |e| {
                        if let Expr::CompoundIdentifier(parts) = e {
                            if parts.len() == 2 && parts[0].value == name {
                                *e = Expr::Identifier(parts[1].clone());
                            }
                        }
                        ControlFlow::<()>::Continue(())
                    });
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut fix = Fix(None);
    let _ = stmt.visit(&mut fix);
    match fix.0 {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The last part of a name (`t` of `public.t`), as written without its quotes.
fn last_identifier(n: &ObjectName) -> Option<String> {
    n.0.last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
}

/// `DEFAULT` written as a value: an unquoted identifier of that name, as the parser reads it.
fn is_default_keyword(e: &Expr) -> bool {
    matches!(e, Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

fn default_marker(key: Expr) -> Expr {
    crate::rewrite::call(DEFAULT_MARKER, vec![key])
}

/// What SQLite cannot take in an `INSERT` or `UPDATE`: `INSERT INTO t VALUES (...)` with fewer
/// values than `t` has columns (PostgreSQL fills the rest with their defaults), and `DEFAULT`
/// as a value in `VALUES` or `SET`. Both need the table's columns as they are when the
/// statement runs, which only the engine knows: the statement gets markers in their place and
/// [`Effect::Defaults`].
fn column_defaults(stmt: &mut Statement) -> Option<Effect> {
    use crate::rewrite::{number, string as text};
    match stmt {
        Statement::Insert(ins) => {
            let sqlparser::ast::TableObject::TableName(name) = &ins.table else {
                return None;
            };
            let table = last_identifier(name)?;
            let SetExpr::Values(values) = ins.source.as_mut()?.body.as_mut() else {
                return None;
            };
            let width = values.rows.first().map(|r| r.len())?;
            let names: Vec<Option<String>> = ins.columns.iter().map(last_identifier).collect();
            let mut marked = false;
            for row in &mut values.rows {
                for (i, v) in row.iter_mut().enumerate() {
                    if is_default_keyword(v) {
                        *v = default_marker(match names.get(i) {
                            Some(Some(n)) => text(n),
                            _ if names.is_empty() => number(i as i64 + 1),
                            // More values than named columns: SQLite reports it.
                            _ => Expr::Value(Value::Null.into()),
                        });
                        marked = true;
                    }
                }
            }
            let unnamed = ins.columns.is_empty();
            if unnamed {
                ins.columns = vec![ObjectName::from(vec![sqlparser::ast::Ident::with_quote(
                    '"',
                    COLUMNS_MARKER,
                )])];
            }
            (unnamed || marked).then(|| Effect::Defaults {
                table,
                width: unnamed.then_some(width as u32),
                assigned: Vec::new(),
            })
        }
        Statement::Update(up) => {
            let sqlparser::ast::TableFactor::Table { name, .. } = &up.table.relation else {
                return None;
            };
            let table = last_identifier(name)?;
            let mut marked = false;
            for a in &mut up.assignments {
                if let sqlparser::ast::AssignmentTarget::ColumnName(c) = &a.target {
                    if is_default_keyword(&a.value) {
                        a.value = default_marker(text(&last_identifier(c)?));
                        marked = true;
                    }
                }
            }
            marked.then_some(Effect::Defaults {
                table,
                width: None,
                assigned: Vec::new(),
            })
        }
        _ => None,
    }
}

/// PostgreSQL 15's storage parameters of a table (`WITH (fillfactor = 70)`): accepted and
/// ignored, since SQLite's pages, vacuum and TOAST have none of these knobs; any other name
/// is PostgreSQL's 22023.
const TABLE_STORAGE_PARAMETERS: &[&str] = &[
    "fillfactor",
    "toast_tuple_target",
    "parallel_workers",
    "autovacuum_enabled",
    "vacuum_index_cleanup",
    "vacuum_truncate",
    "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_insert_threshold",
    "autovacuum_vacuum_scale_factor",
    "autovacuum_vacuum_insert_scale_factor",
    "autovacuum_analyze_threshold",
    "autovacuum_analyze_scale_factor",
    "autovacuum_vacuum_cost_delay",
    "autovacuum_vacuum_cost_limit",
    "autovacuum_freeze_min_age",
    "autovacuum_freeze_max_age",
    "autovacuum_freeze_table_age",
    "autovacuum_multixact_freeze_min_age",
    "autovacuum_multixact_freeze_max_age",
    "autovacuum_multixact_freeze_table_age",
    "log_autovacuum_min_duration",
    "user_catalog_table",
    "oids",
];

/// PostgreSQL 15's storage parameters of a B-tree index, accepted and ignored likewise.
const INDEX_STORAGE_PARAMETERS: &[&str] = &["fillfactor", "deduplicate_items"];

/// The key and value of a `WITH (key = value)` option.
fn option_key_value(o: &sqlparser::ast::SqlOption) -> Result<(&Ident, &Expr), SqlError> {
    match o {
        sqlparser::ast::SqlOption::KeyValue { key, value } => Ok((key, value)),
        other => Err(SqlError::syntax(
            format!("syntax error at or near \"{other}\""),
            None,
        )),
    }
}

/// Checks one storage parameter as PostgreSQL does: a known name (22023 otherwise) and, for
/// `fillfactor`, a value in its range (a table's 10 to 100).
fn storage_parameter((key, value): (&Ident, &Expr), known: &[&str]) -> Result<(), SqlError> {
    let name = key.value.to_lowercase();
    let invalid = |message: String| SqlError {
        sqlstate: crate::SqlState::new("22023"),
        message,
        position: None,
    };
    if !known.contains(&name.as_str()) {
        return Err(invalid(format!("unrecognized parameter \"{name}\"")));
    }
    if name == "fillfactor" {
        let text = expr_text(value);
        match text.parse::<i64>() {
            Ok(v) if (10..=100).contains(&v) => {}
            Ok(_) => {
                return Err(invalid(format!(
                    "value {text} out of bounds for option \"fillfactor\""
                )))
            }
            Err(_) => {
                return Err(invalid(format!(
                    "invalid value for integer option \"fillfactor\": {text}"
                )))
            }
        }
    }
    Ok(())
}

/// `public` is the only schema; SQLite calls it `main`. Drop the qualifier.
fn strip_public_schema(stmt: &mut Statement) {
    fn strip(name: &mut ObjectName) {
        if name.0.len() == 2 {
            if let ObjectNamePart::Identifier(i) = &name.0[0] {
                if i.value.eq_ignore_ascii_case("public") {
                    name.0.remove(0);
                }
            }
        }
    }
    // DROP's names are not visited as relations.
    if let Statement::Drop { names, .. } = stmt {
        names.iter_mut().for_each(strip);
    }
    let _ = visit_relations_mut(stmt, |name| {
        strip(name);
        ControlFlow::<()>::Continue(())
    });
}

fn is_serial(dt: &DataType) -> bool {
    match dt {
        DataType::Custom(name, _) => {
            let n = name.to_string().to_ascii_lowercase();
            matches!(
                n.as_str(),
                "serial" | "bigserial" | "smallserial" | "serial4" | "serial8" | "serial2"
            )
        }
        _ => false,
    }
}

/// A `SERIAL` (or `GENERATED BY DEFAULT AS IDENTITY`) column gets a sequence of its own,
/// `<table>_<column>_seq` as in Postgres, created before the table, and a default that draws
/// from it; the key too. The key is declared `INT`/`BIGINT`, never `INTEGER`: SQLite makes
/// an `INTEGER PRIMARY KEY` the row id, ignores its default and numbers rows max + 1, which
/// is not a sequence (an explicit id would move it, and two transaction blocks inserting at
/// once would pick the same number). Values of a sequence can be reserved for a node's
/// blocks ahead of time, so concurrent blocks never draw the same one.
fn rewrite_serial_columns(ct: &mut sqlparser::ast::CreateTable) -> Result<Vec<String>, SqlError> {
    let mut sequences = Vec::new();
    let table = object_name_text(&ct.name)
        .trim_start_matches("public.")
        .to_string();
    for col in &mut ct.columns {
        // SQLite takes only literals, signed numbers and parenthesized expressions after
        // DEFAULT: `DEFAULT now()` becomes `DEFAULT (now())`.
        parenthesize_default(col);
    }
    for col in &mut ct.columns {
        // GENERATED BY DEFAULT AS IDENTITY behaves like SERIAL. ALWAYS would also have to
        // refuse explicit values, which is not enforced yet: refused rather than weakened.
        let identity = col.options.iter().position(|o| {
            matches!(
                &o.option,
                ColumnOption::Generated {
                    generation_expr: None,
                    ..
                }
            )
        });
        if let Some(i) = identity {
            if let ColumnOption::Generated { generated_as, .. } = &col.options[i].option {
                if matches!(generated_as, sqlparser::ast::GeneratedAs::Always) {
                    return Err(SqlError::unsupported(
                        "GENERATED ALWAYS AS IDENTITY (use GENERATED BY DEFAULT AS IDENTITY)",
                    ));
                }
            }
            col.options.remove(i);
        } else if !is_serial(&col.data_type) {
            continue;
        }
        let seq = format!("{table}_{}_seq", col.name.value.to_lowercase());
        let ty = col.data_type.to_string().to_ascii_lowercase();
        col.data_type = if ty.contains("big") || ty.ends_with('8') {
            DataType::BigInt(None)
        } else if ty.contains("small") || ty.ends_with('2') {
            DataType::SmallInt(None)
        } else {
            DataType::Int(None)
        };
        let default = Expr::Nested(Box::new(crate::rewrite::call(
            "nextval",
            vec![Expr::Value(Value::SingleQuotedString(seq.clone()).into())],
        )));
        col.options.push(sqlparser::ast::ColumnOptionDef {
            name: None,
            option: ColumnOption::Default(default),
        });
        col.options.push(sqlparser::ast::ColumnOptionDef {
            name: None,
            option: ColumnOption::NotNull,
        });
        sequences.push(seq);
    }
    Ok(sequences)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Translated {
        let mut v = translate(sql).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    #[test]
    fn classifies_and_tags() {
        assert_eq!(one("select 1").kind, StatementKind::Read);
        assert_eq!(one("insert into t values (1)").tag, CommandTag::Insert);
        // SQLite's WITH holds queries only: a data-modifying WITH is refused, not misread.
        let e = translate("with x as (insert into t values (1) returning *) select * from x")
            .unwrap_err();
        assert_eq!(e.sqlstate.to_string(), "0A000");
        assert_eq!(one("create table t (a int)").tag.render(0), "CREATE TABLE");
        assert_eq!(CommandTag::Insert.render(3), "INSERT 0 3");
    }

    #[test]
    fn arrays_translate_to_their_text_form_and_the_engine_functions() {
        // `json[]` and two dimensions are refused; the others are kept as quoted type names
        // with checks.
        let e = translate("CREATE TABLE a (j json[])").unwrap_err();
        assert_eq!(e.sqlstate, "0A000");
        let e = translate("CREATE TABLE a (m int[][])").unwrap_err();
        assert_eq!(e.sqlstate, "0A000");
        let t = one("CREATE TABLE a (i int[], v varchar(5)[])");
        // After the statement that makes a role that is not a superuser its owner.
        assert!(t.sqlite[0].starts_with("INSERT OR REPLACE INTO _sqlkeeper_owners"));
        assert!(
            t.sqlite[1].contains(r#"i "INT[]" CHECK (_sqlkeeper_valid("i", 'int4[]', -1))"#),
            "{}",
            t.sqlite[1]
        );
        assert!(
            t.sqlite[1]
                .contains(r#"v "VARCHAR(5)[]" CHECK (_sqlkeeper_valid("v", 'varchar[]', 5))"#),
            "{}",
            t.sqlite[1]
        );
        assert_eq!(
            one("SELECT ARRAY[1, 2] && a, 3 = ANY (a), 3 > ALL ('{1,2}'), 4 = ANY (ARRAY[4]) FROM t").sqlite,
            vec!["SELECT _sqlkeeper_array_overlaps(_sqlkeeper_array(1, 2), a), \
                  _sqlkeeper_array_cmp(3, '=', 0, a), _sqlkeeper_array_cmp(3, '>', 1, '{1,2}'), \
                  4 IN (4) FROM t"]
        );
        assert_eq!(
            one(
                "SELECT ARRAY[1] || ARRAY[2], ARRAY[1] || 2, 0 || ARRAY[1], '{x}'::text[] || '{y}'"
            )
            .sqlite,
            vec![
                "SELECT array_cat(_sqlkeeper_array(1), _sqlkeeper_array(2)), \
                  array_append(_sqlkeeper_array(1), 2), array_prepend(0, _sqlkeeper_array(1)), \
                  array_cat(_sqlkeeper_cast('{x}', 'text[]', -1), '{y}')"
            ]
        );
        let e = translate("SELECT ARRAY[ARRAY[1]]").unwrap_err();
        assert_eq!(e.sqlstate, "0A000");
        // A cast to an array type that is not checked here is its text (NUMERIC affinity
        // would make it 0).
        assert_eq!(
            one("SELECT '{1,2}'::oid[]").sqlite,
            vec!["SELECT CAST('{1,2}' AS TEXT)"]
        );
    }

    #[test]
    fn placeholders_become_positional() {
        let t = one("SELECT * FROM t WHERE a = $2 AND b = $1");
        assert_eq!(t.param_count, 2);
        assert_eq!(t.sqlite, vec!["SELECT * FROM t WHERE a = ?2 AND b = ?1"]);
    }

    #[test]
    fn syntax_error_has_position() {
        let e = translate("SELEC 1").unwrap_err();
        assert_eq!(e.sqlstate, "42601");
        assert_eq!(e.position, Some(1));
        let e = translate("select 1; selec 2").unwrap_err();
        assert_eq!(e.sqlstate, "42601");
    }

    #[test]
    fn drop_many_and_truncate_split() {
        let drop = one("DROP TABLE IF EXISTS a, public.b").sqlite;
        assert_eq!(
            drop[..2],
            ["DROP TABLE IF EXISTS a", "DROP TABLE IF EXISTS b"]
        );
        // Then the comments of what is gone go with it (`comments.rs`).
        assert!(
            drop[2].starts_with("DELETE FROM _sqlkeeper_comments"),
            "{drop:?}"
        );
        // And their owners and grants (`privileges.rs`).
        assert!(
            drop[3].starts_with("DELETE FROM _sqlkeeper_owners")
                && drop[4].starts_with("DELETE FROM _sqlkeeper_privileges"),
            "{drop:?}"
        );
        assert_eq!(drop.len(), 5);
        assert_eq!(
            one("TRUNCATE a, b").sqlite,
            vec!["DELETE FROM a", "DELETE FROM b"]
        );
    }

    #[test]
    fn serial_primary_key_draws_from_its_own_sequence_not_the_rowid() {
        let sqlite = one("CREATE TABLE t (id SERIAL PRIMARY KEY, v TEXT)").sqlite;
        // The table, then the triggers that round a float stored in the integer column.
        let at = sqlite
            .iter()
            .position(|s| s.starts_with("CREATE TABLE"))
            .unwrap();
        assert_eq!(
            sqlite[at],
            "CREATE TABLE t (id INT PRIMARY KEY DEFAULT (nextval('t_id_seq')) NOT NULL CHECK (_sqlkeeper_valid(\"id\", 'int4', -1)), v TEXT)"
        );
        assert!(sqlite[..at]
            .iter()
            .any(|s| s.contains("INSERT INTO _sqlkeeper_sequences") && s.contains("'t_id_seq'")));
        assert!(sqlite[at + 1..]
            .iter()
            .all(|s| s.starts_with("CREATE TRIGGER IF NOT EXISTS \"_sqlkeeper_norm_t_id_")));
        assert!(one("CREATE TABLE t (id BIGSERIAL PRIMARY KEY)")
            .sqlite
            .iter()
            .any(|s| s.starts_with(
                "CREATE TABLE t (id BIGINT PRIMARY KEY DEFAULT (nextval('t_id_seq'))"
            )));
    }

    #[test]
    fn cluster_functions_and_views() {
        let t = one("SELECT sqlkeeper.add_node(4, '127.0.0.1:7436')");
        assert_eq!(
            t.kind,
            StatementKind::Admin(AdminCall {
                function: "add_node".into(),
                args: vec!["4".into(), "127.0.0.1:7436".into()]
            })
        );
        assert_eq!(
            translate("SELECT sqlkeeper.nope(1)").unwrap_err().sqlstate,
            "42883"
        );
        assert_eq!(
            translate("SELECT sqlkeeper.remove_node()")
                .unwrap_err()
                .sqlstate,
            "42883"
        );
        let t = one("SELECT role, applied_index FROM sqlkeeper.status");
        assert_eq!(t.kind, StatementKind::Introspection);
        assert_eq!(
            translate("SELECT * FROM other.t").unwrap_err().sqlstate,
            "3F000"
        );
    }

    #[test]
    fn show_names() {
        for (sql, name) in [
            ("SHOW sqlkeeper.log_index", "sqlkeeper.log_index"),
            (
                "SHOW transaction isolation level",
                "transaction isolation level",
            ),
            ("SHOW search_path", "search_path"),
        ] {
            assert_eq!(
                one(sql).kind,
                StatementKind::Session(SessionOp::Show(name.into())),
                "{sql}"
            );
        }
    }

    #[test]
    fn null_ordering_follows_postgres() {
        assert_eq!(
            one("SELECT a FROM t ORDER BY a, b DESC, c DESC NULLS LAST").sqlite,
            vec!["SELECT a FROM t ORDER BY a NULLS LAST, b DESC NULLS FIRST, c DESC NULLS LAST"]
        );
    }

    #[test]
    fn internal_tables_are_refused() {
        assert_eq!(
            translate("select * from _sqlkeeper_meta")
                .unwrap_err()
                .sqlstate,
            "42501"
        );
        assert_eq!(
            translate("delete from sqlite_schema").unwrap_err().sqlstate,
            "42501"
        );
        assert_eq!(
            translate("drop table _sqlkeeper_meta")
                .unwrap_err()
                .sqlstate,
            "42501"
        );
        assert_eq!(
            translate("create table temp.t (a int)")
                .unwrap_err()
                .sqlstate,
            "3F000"
        );
        assert_eq!(
            translate("create temporary view v as select 1")
                .unwrap_err()
                .sqlstate,
            "0A000"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let sql = format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(translate(&sql).unwrap_err().sqlstate, "54001");
    }
}
