//! Expression rewrites from Postgres to SQLite that keep Postgres' meaning. Each one is a row
//! of the translation table in `docs/compat.md` and has a golden test case
//! (`sql/tests/testdata/translate.txt`). Functions named here that SQLite lacks are provided
//! by the engine on every connection (`engine/src/functions.rs`).

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, Ident, ObjectName, Query, SelectItem, SetExpr,
    Statement, TrimWhereField, UnaryOperator, Value, VisitMut, VisitorMut,
};

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::error::SqlError;

/// Postgres function names that SQLite spells differently.
const RENAMED_FUNCTIONS: &[(&str, &str)] = &[
    ("json_agg", "json_group_array"),
    ("jsonb_agg", "json_group_array"),
    ("json_object_agg", "json_group_object"),
    ("jsonb_object_agg", "json_group_object"),
    ("strpos", "instr"),
    ("char_length", "length"),
    ("character_length", "length"),
    ("mod", crate::values::MOD_FUNCTION),
    // btrim(s[, chars]) is SQLite's trim(s[, chars]).
    ("btrim", "trim"),
    // Booleans are 0 and 1: the aggregates of booleans are the least and the greatest.
    ("bool_and", "min"),
    ("every", "min"),
    ("bool_or", "max"),
];

/// Functions whose result depends on the node or its SQLite internals: refused by name.
const REFUSED_FUNCTIONS: &[&str] = &[
    "load_extension",
    "sqlite_version",
    "sqlite_source_id",
    "sqlite_compileoption_used",
    "sqlite_compileoption_get",
    "sqlite_offset",
    "changes",
    "total_changes",
    "last_insert_rowid",
    "txid_current",
    // internal to the engine: only the translator may emit them
    "sqlkeeper_rebuild_table",
    "pg_raise",
];

pub(crate) fn string(s: &str) -> Expr {
    Expr::Value(Value::SingleQuotedString(s.to_string()).into())
}

pub(crate) fn number(n: i64) -> Expr {
    Expr::Value(Value::Number(n.to_string(), false).into())
}

pub(crate) fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| FunctionArg::Unnamed(FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        within_group: vec![],
        filter: None,
        null_treatment: None,
        over: None,
    })
}

/// Rewrites every expression of `stmt`; fails on functions that cannot be made deterministic.
pub(crate) fn postgres_expressions(stmt: &mut Statement) -> Result<(), SqlError> {
    /// Quantified comparisons are replaced on the way down, before their subquery is visited
    /// (so it is rewritten as a set of rows, not as a scalar subquery); everything else on the
    /// way up, after its operands.
    struct Rewrite;
    impl VisitorMut for Rewrite {
        type Break = SqlError;
        fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<SqlError> {
            quantified(e);
            array_concatenation(e);
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<SqlError> {
            match rewrite(e) {
                Ok(()) => ControlFlow::Continue(()),
                Err(err) => ControlFlow::Break(err),
            }
        }
    }
    match stmt.visit(&mut Rewrite) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// The width in bytes (2, 4 or 8) of an integer-typed expression whose type is known without
/// the catalog: an integer literal (`integer` if it fits, as in PostgreSQL), a cast to an
/// integer type, a function that returns `integer` (`length`), integer arithmetic of those,
/// or a `CASE`, `coalesce` or `nullif` of them (of their widest type, NULLs aside); `None` for
/// anything else.
fn int_width(e: &Expr) -> Option<u8> {
    // PostgreSQL folds signs into a constant: `-2147483648` is an integer, `- -2147483648`
    // and `-(-2147483648)` the bigint 2147483648.
    if let Some(n) = signed_constant(e) {
        return literal_width(&n);
    }
    match e {
        Expr::Nested(inner) => int_width(inner),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => int_width(expr),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => int_width(expr),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => literal_width(n),
            _ => None,
        },
        Expr::Case {
            conditions,
            else_result,
            ..
        } => widest_int(
            conditions
                .iter()
                .map(|c| &c.result)
                .chain(else_result.as_deref()),
        ),
        Expr::Function(f) => {
            let name = f.name.to_string();
            let width = |ty: Option<&str>| match ty? {
                "int2" => Some(2),
                "int4" => Some(4),
                "int8" => Some(8),
                _ => None,
            };
            if name == crate::values::CAST_FUNCTION {
                width(text_arg(f, 1))
            } else if matches!(name.as_str(), "greatest" | "least" | "coalesce") {
                // Of the widest of its arguments' types, when every one is an integer type.
                widest_int(plain_args(f)?.iter())
            } else if name == "nullif" {
                int_width(plain_args(f)?.first()?)
            } else if matches!(
                name.as_str(),
                // `integer` functions, as translated (`strpos`, `position` are `instr`).
                "length" | "instr" | "ascii" | "octet_length" | "pg_json_array_length"
            ) {
                Some(4)
            } else if [
                crate::values::ADD_FUNCTION,
                crate::values::SUB_FUNCTION,
                crate::values::MUL_FUNCTION,
                crate::values::DIV_FUNCTION,
                crate::values::MOD_FUNCTION,
            ]
            .contains(&name.as_str())
            {
                // Checked arithmetic carries its width; without one it is bigint when both
                // operands are integers (narrower ones would carry theirs), else unknown.
                width(text_arg(f, 2)).or_else(|| {
                    let args = plain_args(f)?;
                    widest_int(args.iter().take(2)).filter(|_| args.len() == 2)
                })
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The widest integer type of `exprs`, when each is of an integer type or a NULL and one at
/// least is typed: PostgreSQL's common type of a `CASE`'s results or of `coalesce`'s and
/// `greatest`'s arguments.
fn widest_int<'a>(exprs: impl Iterator<Item = &'a Expr>) -> Option<u8> {
    exprs
        .filter(|e| !matches!(e, Expr::Value(v) if v.value == Value::Null))
        .map(int_width)
        .try_fold(0u8, |w, a| Some(w.max(a?)))
        .filter(|w| *w > 0)
}

/// The engine's name of the integer type of this width whose results are checked against its
/// range (`smallint`, `integer`); `None` for `bigint`, whose overflow SQLite reports itself.
fn checked_int_type(width: u8) -> Option<&'static str> {
    match width {
        2 => Some("int2"),
        4 => Some("int4"),
        _ => None,
    }
}

/// A number with the minus signs in front of it folded into it, as PostgreSQL's parser folds
/// them (through parentheses, which it does not keep): `- -5` and `-(-5)` are `5`.
fn signed_constant(e: &Expr) -> Option<String> {
    match e {
        Expr::Nested(inner) => signed_constant(inner),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => signed_constant(expr).map(|n| match n.strip_prefix('-') {
            Some(positive) => positive.to_string(),
            None => format!("-{n}"),
        }),
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The arguments of a function call, if they are a plain list of expressions.
fn plain_args(f: &Function) -> Option<Vec<Expr>> {
    match &f.args {
        FunctionArguments::None => Some(Vec::new()),
        FunctionArguments::List(list)
            if list.duplicate_treatment.is_none() && list.clauses.is_empty() =>
        {
            list.args
                .iter()
                .map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}

/// The arguments of a call when every one is a literal value (a negative number is one).
pub(crate) fn literal_args(f: &Function) -> Option<Vec<Value>> {
    plain_args(f)?
        .iter()
        .map(|a| match a {
            Expr::Value(v) => Some(v.value.clone()),
            other => signed_constant(other).map(|n| Value::Number(n, false)),
        })
        .collect()
}

/// Argument `i` of a call when it is a string literal: the type name of a translated cast or
/// checked arithmetic (`_sqlkeeper_cast(x, 'int4', -1)`).
fn text_arg(f: &Function, i: usize) -> Option<&str> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.get(i)? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `e` (already rewritten) is a `json` or `jsonb` value: a cast to one, or the result
/// of a function that makes one.
fn is_json(e: &Expr) -> bool {
    match e {
        Expr::Nested(inner) => is_json(inner),
        Expr::Function(f) => {
            let name = f.name.to_string();
            if name == crate::values::CAST_FUNCTION {
                return matches!(text_arg(f, 1), Some("json" | "jsonb"));
            }
            matches!(
                name.as_str(),
                "pg_json_builder_text"
                    | "pg_jsonb_concat"
                    | "pg_to_json"
                    | "json_group_array"
                    | "json_group_object"
            )
        }
        _ => false,
    }
}

/// PostgreSQL's JSON functions written for SQLite and the engine (`jsonfuncs.rs`): the
/// builders are SQLite's `json_object`/`json_array` (JSON arguments nested as JSON), printed as
/// PostgreSQL prints `jsonb` or the builders' `json`; `None` for any other function.
fn json_function(bare: &str, f: &Function) -> Option<Expr> {
    let args = || plain_args(f);
    let jsonb = |e: Expr| crate::values::cast_call(&e, &DataType::JSONB).unwrap_or(e);
    Some(match bare {
        "json_build_object" | "jsonb_build_object" | "json_build_array" | "jsonb_build_array" => {
            let args = args()?
                .into_iter()
                .map(|a| {
                    if is_json(&a) {
                        call("json", vec![a])
                    } else {
                        a
                    }
                })
                .collect();
            let sqlite = if bare.ends_with("object") {
                "json_object"
            } else {
                "json_array"
            };
            let built = call(sqlite, args);
            if bare.starts_with("jsonb") {
                jsonb(built)
            } else {
                call("pg_json_builder_text", vec![built])
            }
        }
        "to_json" | "to_jsonb" => {
            let [a] = <[Expr; 1]>::try_from(args()?).ok()?;
            let j = if is_json(&a) {
                a
            } else {
                call("pg_to_json", vec![a])
            };
            if bare == "to_jsonb" {
                jsonb(j)
            } else {
                j
            }
        }
        "json_typeof" | "jsonb_typeof" => call("pg_json_typeof", args()?),
        "json_array_length" | "jsonb_array_length" => call("pg_json_array_length", args()?),
        "json_extract_path" | "jsonb_extract_path" => call(
            "pg_json_extract_path",
            std::iter::once(number(0)).chain(args()?).collect(),
        ),
        "json_extract_path_text" | "jsonb_extract_path_text" => call(
            "pg_json_extract_path",
            std::iter::once(number(1)).chain(args()?).collect(),
        ),
        _ => return None,
    })
}

/// An integer constant is an `integer` if it fits, else a `bigint` (else `numeric`).
fn literal_width(n: &str) -> Option<u8> {
    match n.parse::<i64>() {
        Ok(i) if i32::try_from(i).is_ok() => Some(4),
        Ok(_) => Some(8),
        Err(_) => None,
    }
}

/// Whether `e` is an array by its form: an `ARRAY[…]` constructor or a cast to an array type.
fn is_array_expr(e: &Expr) -> bool {
    match e {
        Expr::Array(_) => true,
        Expr::Cast { data_type, .. } => matches!(data_type, DataType::Array(_)),
        Expr::Nested(inner) => is_array_expr(inner),
        _ => false,
    }
}

/// `a || b` where an operand is an array by its form (`ARRAY[…]`, `x::int[]`): PostgreSQL's
/// array concatenation (`array_cat`; `array_append`/`array_prepend` of a value that is not an
/// array, an untyped string literal being read as an array, as PostgreSQL resolves it).
/// Rewritten on the way down, before the constructor is. Array columns concatenated with
/// `||` are not known here (their text would be concatenated): use `array_cat`.
fn array_concatenation(e: &mut Expr) {
    let Expr::BinaryOp {
        left,
        op: BinaryOperator::StringConcat,
        right,
    } = e
    else {
        return;
    };
    let literal =
        |x: &Expr| matches!(x, Expr::Value(v) if matches!(v.value, Value::SingleQuotedString(_)));
    let name = match (is_array_expr(left), is_array_expr(right)) {
        (true, true) => "array_cat",
        (true, false) if literal(right) => "array_cat",
        (false, true) if literal(left) => "array_cat",
        (true, false) => "array_append",
        (false, true) => "array_prepend",
        (false, false) => return,
    };
    *e = call(name, vec![(**left).clone(), (**right).clone()]);
}

/// The operands of `x op ANY (…)` (`any` true) or `x op ALL (…)`: `(x, op, …, any)`.
fn quantified_parts(e: &Expr) -> Option<(Box<Expr>, BinaryOperator, Box<Expr>, bool)> {
    match e {
        Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        } => Some((left.clone(), compare_op.clone(), right.clone(), true)),
        Expr::AllOp {
            left,
            compare_op,
            right,
        } => Some((left.clone(), compare_op.clone(), right.clone(), false)),
        _ => None,
    }
}

/// `x op ANY (a)` and `x op ALL (a)` over an array that is a value (a column, a parameter,
/// `'{1,2}'`, an `ARRAY[…]`): the engine's comparison with each element, keeping SQL's three
/// values. Those over a subquery were rewritten on the way down ([`quantified`]).
fn array_comparison(e: &mut Expr) {
    let Some((left, op, right, any)) = quantified_parts(e) else {
        return;
    };
    let op = op.to_string();
    if matches!(*right, Expr::Subquery(_))
        || !matches!(op.as_str(), "=" | "<>" | "!=" | "<" | "<=" | ">" | ">=")
    {
        return;
    }
    *e = call(
        crate::array::COMPARE_FUNCTION,
        vec![*left, string(&op), number(i64::from(!any)), *right],
    );
}

/// Quantified comparisons with a subquery, which SQLite lacks: `x = ANY (subquery)` is
/// `x IN (subquery)`; `x op ANY|ALL (subquery)` a CASE over EXISTS keeping SQL's three values:
/// ANY is true if one comparison is, false if none can be (or there are no rows), else NULL;
/// ALL the other way round. A subquery that is not a plain SELECT of one column is left for
/// SQLite to report.
fn quantified(e: &mut Expr) {
    let Some((left, op, right, any)) = quantified_parts(e) else {
        return;
    };
    let Expr::Subquery(q) = &*right else {
        // Over an array: `x = ANY (ARRAY[a, b])` is `x IN (a, b)` (before the array is
        // rewritten); other comparisons over arrays are rewritten on the way up
        // ([`array_comparison`]).
        if let (true, BinaryOperator::Eq, Expr::Array(arr)) = (any, &op, &*right) {
            *e = Expr::InList {
                expr: left,
                list: arr.elem.clone(),
                negated: false,
            };
        }
        return;
    };
    if any && op == BinaryOperator::Eq {
        *e = Expr::InSubquery {
            expr: left,
            subquery: q.clone(),
            negated: false,
        };
        return;
    }
    let mut q = q.clone();
    let Some(item) = sole_item(&mut q) else {
        return;
    };
    if let SelectItem::UnnamedExpr(v) | SelectItem::ExprWithAlias { expr: v, .. } = item {
        *item = SelectItem::ExprWithAlias {
            expr: v.clone(),
            alias: Ident::new("_sqlkeeper_v"),
        };
    }
    let cmp = format!("({left}) {op} _sqlkeeper_s._sqlkeeper_v");
    let from = format!("({q}) AS _sqlkeeper_s");
    let (decisive, test, otherwise) = match any {
        true => ("true", cmp.clone(), "false"),
        false => ("false", format!("NOT ({cmp})"), "true"),
    };
    let sql = format!(
        "CASE WHEN EXISTS (SELECT 1 FROM {from} WHERE {test}) THEN {decisive} \
         WHEN EXISTS (SELECT 1 FROM {from} WHERE ({cmp}) IS NULL) THEN NULL \
         ELSE {otherwise} END"
    );
    if let Ok(case) = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
    {
        *e = Expr::Nested(Box::new(case));
    }
}

/// The one result column of a query that is a plain SELECT of one expression.
/// Whether `op` is a regular-expression match (`~`, `~*`, `!~`, `!~*`, or one of them as
/// `OPERATOR(pg_catalog.~)`): `(case_insensitive, negated)`.
fn regex_operator(op: &BinaryOperator) -> Option<(bool, bool)> {
    let symbol = match op {
        BinaryOperator::PGRegexMatch => "~",
        BinaryOperator::PGRegexIMatch => "~*",
        BinaryOperator::PGRegexNotMatch => "!~",
        BinaryOperator::PGRegexNotIMatch => "!~*",
        BinaryOperator::PGCustomBinaryOperator(parts) => match parts.as_slice() {
            [schema, o] if schema.eq_ignore_ascii_case("pg_catalog") => o.as_str(),
            _ => return None,
        },
        _ => return None,
    };
    Some(match symbol {
        "~" => (false, false),
        "~*" => (true, false),
        "!~" => (false, true),
        "!~*" => (true, true),
        _ => return None,
    })
}

/// `ARRAY(subquery)` as the array's text form: the subquery's one column aggregated in order,
/// each element printed as PostgreSQL's `array_out` does (`_sqlkeeper_array_element`).
fn array_of_subquery(mut q: Query) -> Result<Expr, SqlError> {
    let Some(item) = sole_item(&mut q) else {
        return Err(SqlError {
            sqlstate: crate::SqlState::new("42601"),
            message: "subquery must return only one column".into(),
            position: None,
        });
    };
    let value = match item {
        SelectItem::UnnamedExpr(v) | SelectItem::ExprWithAlias { expr: v, .. } => v.clone(),
        _ => return Err(SqlError::unsupported("this ARRAY subquery")),
    };
    *item = SelectItem::ExprWithAlias {
        expr: value,
        alias: Ident::new("_sqlkeeper_v"),
    };
    let template = "SELECT '{' || coalesce(group_concat(_sqlkeeper_array_element(_sqlkeeper_v), \
                    ','), '') || '}' FROM (SELECT 1 AS _sqlkeeper_v) AS _sqlkeeper_a";
    let Ok(Some(Statement::Query(mut outer))) =
        Parser::parse_sql(&PostgreSqlDialect {}, template).map(|mut v| v.pop())
    else {
        return Err(SqlError::unsupported("this ARRAY subquery"));
    };
    if let SetExpr::Select(select) = outer.body.as_mut() {
        if let Some(sqlparser::ast::TableFactor::Derived { subquery, .. }) =
            select.from.first_mut().map(|t| &mut t.relation)
        {
            **subquery = q;
        }
    }
    Ok(Expr::Subquery(outer))
}

fn sole_item(q: &mut Query) -> Option<&mut SelectItem> {
    let SetExpr::Select(select) = q.body.as_mut() else {
        return None;
    };
    match select.projection.as_mut_slice() {
        [item @ (SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. })] => Some(item),
        _ => None,
    }
}

/// Aggregates that give one row without GROUP BY, under their SQLite names.
const AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "total",
    "avg",
    "min",
    "max",
    "group_concat",
    "string_agg",
    "json_group_array",
    "json_group_object",
];

/// Makes a scalar subquery fail with 21000 when it returns more than one row: its value becomes
/// `_sqlkeeper_single(count(*) OVER (), value)`. Left alone where one row at most is certain
/// or the window would count the wrong rows: a LIMIT, DISTINCT, a set operation, or a single
/// aggregate without GROUP BY. Subqueries of IN, ANY and ALL never get here (see
/// [`quantified`]).
fn single_row(q: &mut Query) {
    if q.limit_clause.is_some() || q.fetch.is_some() {
        return;
    }
    let SetExpr::Select(select) = q.body.as_ref() else {
        return;
    };
    let grouped = !matches!(
        &select.group_by,
        sqlparser::ast::GroupByExpr::Expressions(g, _) if g.is_empty()
    );
    if select.distinct.is_some() || select.having.is_some() && !grouped {
        return;
    }
    let Some(SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }) =
        sole_item(q)
    else {
        return;
    };
    let aggregate = matches!(&*value, Expr::Function(f) if f.over.is_none()
        && AGGREGATES.contains(&f.name.to_string().to_ascii_lowercase().as_str()));
    if aggregate && !grouped {
        return;
    }
    let count = Parser::new(&PostgreSqlDialect {})
        .try_with_sql("count(*) OVER ()")
        .and_then(|mut p| p.parse_expr());
    if let Ok(count) = count {
        *value = call(
            crate::values::SINGLE_ROW_FUNCTION,
            vec![count, value.clone()],
        );
    }
}

/// Whether `e` is printed with a leading sign (a signed operand, or a negative number).
fn starts_with_sign(e: &Expr) -> bool {
    match e {
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            ..
        } => true,
        Expr::Value(v) => matches!(&v.value, Value::Number(n, _) if n.starts_with(['-', '+'])),
        _ => false,
    }
}

fn rewrite(e: &mut Expr) -> Result<(), SqlError> {
    match e {
        // `a[i]` of an array (its text form, or an `int2vector`): `_sqlkeeper_array_at(a, i)`.
        // Slices and field access (`(x).f`) are not arrays' and stay as they are.
        Expr::CompoundFieldAccess { root, access_chain } => {
            use sqlparser::ast::{AccessExpr, Subscript};
            // `a.b[i]` parses as `a` with the chain `.b`, `[i]`: the array is `a.b`.
            let path: Option<Vec<Ident>> = match (root.as_ref(), access_chain.split_last()) {
                (Expr::Identifier(first), Some((AccessExpr::Subscript(_), dots))) => dots
                    .iter()
                    .map(|d| match d {
                        AccessExpr::Dot(Expr::Identifier(i)) => Some(i.clone()),
                        _ => None,
                    })
                    .collect::<Option<Vec<Ident>>>()
                    .map(|mut rest| {
                        rest.insert(0, first.clone());
                        rest
                    }),
                _ => None,
            };
            if let Some((AccessExpr::Subscript(Subscript::Index { index }), dots)) =
                access_chain.split_last()
            {
                let array = match (dots.is_empty(), path) {
                    (true, _) => Some((**root).clone()),
                    (false, Some(p)) => Some(Expr::CompoundIdentifier(p)),
                    (false, None) => None,
                };
                if let Some(array) = array {
                    *e = call("_sqlkeeper_array_at", vec![array, index.clone()]);
                }
            } else if let [sqlparser::ast::AccessExpr::Dot(Expr::Identifier(field))] =
                access_chain.as_slice()
            {
                // `(r.keys).x`: a record of `_pg_expandarray`, which the catalog's rewrite made
                // its element (`catalog::set_returning_items`).
                let mut inner = root.as_ref();
                while let Expr::Nested(x) = inner {
                    inner = x;
                }
                if field.value.eq_ignore_ascii_case("x")
                    && matches!(inner, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
                {
                    *e = inner.clone();
                }
            }
        }
        // `~~` and `~~*` are Postgres' names of LIKE and ILIKE.
        Expr::BinaryOp {
            left,
            op:
                op @ (BinaryOperator::PGLikeMatch
                | BinaryOperator::PGNotLikeMatch
                | BinaryOperator::PGILikeMatch
                | BinaryOperator::PGNotILikeMatch),
            right,
        } => {
            let negated = matches!(
                op,
                BinaryOperator::PGNotLikeMatch | BinaryOperator::PGNotILikeMatch
            );
            let (expr, pattern) = (left.clone(), right.clone());
            *e = match op {
                BinaryOperator::PGLikeMatch | BinaryOperator::PGNotLikeMatch => Expr::Like {
                    negated,
                    any: false,
                    expr,
                    pattern,
                    escape_char: None,
                },
                _ => Expr::ILike {
                    negated,
                    any: false,
                    expr,
                    pattern,
                    escape_char: None,
                },
            };
            return rewrite(e);
        }
        // `s ~ pattern` and its kin, also spelled `OPERATOR(pg_catalog.~)` (psql's `\d name`).
        Expr::BinaryOp { left, op, right } if regex_operator(op).is_some() => {
            let (case_insensitive, negated) = regex_operator(op).unwrap_or_default();
            let name = if case_insensitive {
                "texticregexeq"
            } else {
                "textregexeq"
            };
            let matched = call(name, vec![(**left).clone(), (**right).clone()]);
            *e = if negated {
                Expr::UnaryOp {
                    op: UnaryOperator::Not,
                    expr: Box::new(matched),
                }
            } else {
                matched
            };
        }
        // `OPERATOR(pg_catalog.=)` is `=`; other schema-qualified operators are not known.
        Expr::BinaryOp {
            op: op @ BinaryOperator::PGCustomBinaryOperator(_),
            ..
        } => {
            let BinaryOperator::PGCustomBinaryOperator(parts) = &*op else {
                return Ok(());
            };
            let plain = match parts.as_slice() {
                [schema, o] if schema.eq_ignore_ascii_case("pg_catalog") => match o.as_str() {
                    "=" => Some(BinaryOperator::Eq),
                    "<>" | "!=" => Some(BinaryOperator::NotEq),
                    "<" => Some(BinaryOperator::Lt),
                    ">" => Some(BinaryOperator::Gt),
                    "<=" => Some(BinaryOperator::LtEq),
                    ">=" => Some(BinaryOperator::GtEq),
                    _ => None,
                },
                _ => None,
            };
            match plain {
                Some(p) => *op = p,
                None => {
                    return Err(SqlError {
                        sqlstate: crate::SqlState::new("42883"),
                        message: format!("operator does not exist: {}", parts.join(".")),
                        position: None,
                    })
                }
            }
        }
        // The database's default collation is SQLite's (byte order, as PostgreSQL's "C").
        Expr::Collate { expr, collation } => {
            let name = collation.to_string().replace('"', "").to_ascii_lowercase();
            match name.trim_start_matches("pg_catalog.") {
                "default" => *e = (**expr).clone(),
                "c" | "posix" => *collation = ObjectName::from(vec![Ident::new("BINARY")]),
                _ => {}
            }
        }
        // `array_agg(x ORDER BY y)`: the array's text form, `{a,b}`; NULL over no rows.
        Expr::Function(f)
            if f.name.to_string().eq_ignore_ascii_case("array_agg")
                && f.over.is_none()
                && matches!(&f.args, FunctionArguments::List(l) if l.args.len() == 1) =>
        {
            if let FunctionArguments::List(list) = &f.args {
                let mut concat = call("group_concat", Vec::new());
                if let (Expr::Function(g), [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))]) =
                    (&mut concat, list.args.as_slice())
                {
                    g.args = FunctionArguments::List(FunctionArgumentList {
                        duplicate_treatment: list.duplicate_treatment,
                        args: vec![
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(call(
                                "_sqlkeeper_array_element",
                                vec![x.clone()],
                            ))),
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(string(","))),
                        ],
                        clauses: list.clauses.clone(),
                    });
                    g.filter = f.filter.clone();
                }
                let joined = |l: Expr, r: Expr| Expr::BinaryOp {
                    left: Box::new(l),
                    op: BinaryOperator::StringConcat,
                    right: Box::new(r),
                };
                *e = Expr::Nested(Box::new(joined(joined(string("{"), concat), string("}"))));
            }
        }
        // `sum(x)`, `avg(x)`: NaN when a NaN is among the values, or when infinities of both
        // signs are (SQLite's sum is then NULL) (`NAN_OR_FUNCTION`).
        Expr::Function(f)
            if ["sum", "avg"]
                .iter()
                .any(|n| f.name.to_string().eq_ignore_ascii_case(n))
                && matches!(&f.args, FunctionArguments::List(l) if l.args.len() == 1) =>
        {
            if let FunctionArguments::List(list) = &f.args {
                if let [FunctionArg::Unnamed(FunctionArgExpr::Expr(x))] = list.args.as_slice() {
                    // 2 for a NaN, 1 for another value, 0 for NULL.
                    let kind = Expr::BinaryOp {
                        left: Box::new(Expr::Nested(Box::new(Expr::IsNotNull(Box::new(
                            x.clone(),
                        ))))),
                        op: BinaryOperator::Plus,
                        right: Box::new(Expr::Nested(Box::new(Expr::IsNotDistinctFrom(
                            Box::new(x.clone()),
                            Box::new(string(crate::numeric::NAN_TEXT)),
                        )))),
                    };
                    let mut any_nan = call("max", vec![kind]);
                    if let Expr::Function(m) = &mut any_nan {
                        m.filter = f.filter.clone();
                        m.over = f.over.clone();
                    }
                    *e = call(crate::values::NAN_OR_FUNCTION, vec![e.clone(), any_nan]);
                }
            }
        }
        // `ARRAY(subquery)`: the array's text form, `{a,b}` (there is no array type).
        Expr::Function(f)
            if f.name.to_string().eq_ignore_ascii_case("array")
                && matches!(f.args, FunctionArguments::Subquery(_)) =>
        {
            if let FunctionArguments::Subquery(q) = &mut f.args {
                *e = array_of_subquery((**q).clone())?;
            }
        }
        // `^` is exponentiation, `#` exclusive or.
        Expr::BinaryOp {
            left,
            op: BinaryOperator::PGExp,
            right,
        } => {
            *e = call("power", vec![(**left).clone(), (**right).clone()]);
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::PGBitwiseXor,
            right,
        } => {
            let or = Expr::BinaryOp {
                left: left.clone(),
                op: BinaryOperator::BitwiseOr,
                right: right.clone(),
            };
            let and = Expr::BinaryOp {
                left: left.clone(),
                op: BinaryOperator::BitwiseAnd,
                right: right.clone(),
            };
            *e = Expr::Nested(Box::new(Expr::BinaryOp {
                left: Box::new(Expr::Nested(Box::new(or))),
                op: BinaryOperator::Minus,
                right: Box::new(Expr::Nested(Box::new(and))),
            }));
        }
        Expr::UnaryOp {
            op:
                op @ (UnaryOperator::PGSquareRoot | UnaryOperator::PGCubeRoot | UnaryOperator::PGAbs),
            expr,
        } => {
            let f = match op {
                UnaryOperator::PGSquareRoot => "sqrt",
                UnaryOperator::PGCubeRoot => "cbrt",
                _ => "abs",
            };
            *e = call(f, vec![(**expr).clone()]);
        }
        Expr::IsUnknown(inner) => *e = Expr::IsNull(inner.clone()),
        Expr::IsNotUnknown(inner) => *e = Expr::IsNotNull(inner.clone()),
        // SUBSTRING(s FROM a FOR n) and TRIM(BOTH|LEADING|TRAILING c FROM s): SQLite has only
        // the function forms.
        Expr::Substring {
            expr,
            substring_from,
            substring_for,
            ..
        } => {
            let mut args = vec![
                (**expr).clone(),
                substring_from
                    .as_deref()
                    .cloned()
                    .unwrap_or_else(|| number(1)),
            ];
            args.extend(substring_for.as_deref().cloned());
            *e = call("substr", args);
        }
        Expr::Trim {
            trim_where: Some(side),
            trim_what,
            expr,
            trim_characters: None,
        } => {
            let f = match side {
                TrimWhereField::Both => "trim",
                TrimWhereField::Leading => "ltrim",
                TrimWhereField::Trailing => "rtrim",
            };
            let what = trim_what.as_deref().cloned().unwrap_or_else(|| string(" "));
            *e = call(f, vec![(**expr).clone(), what]);
        }
        // Postgres LIKE is case-sensitive with backslash as the default escape; the engine's
        // like() implements exactly that, and always gets the escape spelled out.
        Expr::Like {
            any: false,
            escape_char,
            ..
        } if escape_char.is_none() => {
            *escape_char = Some(Box::new(string("\\")));
        }
        // a ILIKE b -> lower(a) LIKE lower(b)
        Expr::ILike {
            negated,
            any: false,
            expr,
            pattern,
            escape_char,
        } => {
            let escape = escape_char.take().unwrap_or_else(|| Box::new(string("\\")));
            *e = Expr::Like {
                negated: *negated,
                any: false,
                expr: Box::new(call("lower", vec![(**expr).clone()])),
                pattern: Box::new(call("lower", vec![(**pattern).clone()])),
                escape_char: Some(escape),
            };
        }
        // position(a IN b) -> instr(b, a)
        Expr::Position { expr, r#in } => {
            *e = call("instr", vec![(**r#in).clone(), (**expr).clone()]);
        }
        // overlay(s PLACING p FROM f [FOR n]) -> substr(s, 1, f - 1) || p || substr(s, f + n),
        // n the length of p by default.
        Expr::Overlay {
            expr,
            overlay_what,
            overlay_from,
            overlay_for,
        } => {
            let count = match overlay_for {
                Some(n) => (**n).clone(),
                None => call("length", vec![(**overlay_what).clone()]),
            };
            let binary = |left: Expr, op, right: Expr| Expr::BinaryOp {
                left: Box::new(left),
                op,
                right: Box::new(right),
            };
            let from = (**overlay_from).clone();
            let head = call(
                "substr",
                vec![
                    (**expr).clone(),
                    number(1),
                    Expr::Nested(Box::new(binary(
                        from.clone(),
                        BinaryOperator::Minus,
                        number(1),
                    ))),
                ],
            );
            let tail = call(
                "substr",
                vec![
                    (**expr).clone(),
                    Expr::Nested(Box::new(binary(from, BinaryOperator::Plus, count))),
                ],
            );
            *e = binary(
                binary(head, BinaryOperator::StringConcat, (**overlay_what).clone()),
                BinaryOperator::StringConcat,
                tail,
            );
        }
        // extract(field FROM x) -> pg_extract('field', x)
        Expr::Extract { field, expr, .. } => {
            let f = field.to_string().to_ascii_lowercase();
            *e = call("pg_extract", vec![string(&f), (**expr).clone()]);
        }
        // The jsonb operators SQLite lacks: `a @> b`, `a <@ b` (containment), `a ? k` (key
        // exists), `a #> path`, `a #>> path` (the value at a path, as jsonb or text), and
        // `a || b` of jsonb values (`jsonfuncs.rs`).
        Expr::BinaryOp { left, op, right }
            if matches!(
                op,
                BinaryOperator::AtArrow
                    | BinaryOperator::ArrowAt
                    | BinaryOperator::Question
                    | BinaryOperator::HashArrow
                    | BinaryOperator::HashLongArrow
            ) || (*op == BinaryOperator::StringConcat && (is_json(left) || is_json(right))) =>
        {
            let (l, r) = ((**left).clone(), (**right).clone());
            *e = match op {
                BinaryOperator::AtArrow => call("pg_json_contains", vec![l, r]),
                BinaryOperator::ArrowAt => call("pg_json_contains", vec![r, l]),
                BinaryOperator::Question => call("pg_jsonb_exists", vec![l, r]),
                BinaryOperator::HashArrow => call("pg_json_path", vec![l, r, number(0)]),
                BinaryOperator::HashLongArrow => call("pg_json_path", vec![l, r, number(1)]),
                _ => call("pg_jsonb_concat", vec![l, r]),
            };
        }
        // `- x` of an integer type (not a constant, whose sign is folded into it) is of its
        // type: `- (-2147483648)::int` and `- (-1 - 9223372036854775807)` are 22003, as in
        // PostgreSQL (SQLite would give a float).
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } if signed_constant(expr).is_none() && int_width(expr).is_some() => {
            let mut args = vec![number(0), (**expr).clone()];
            if let Some(ty) = int_width(expr).and_then(checked_int_type) {
                args.push(string(ty));
            }
            *e = call(crate::values::SUB_FUNCTION, args);
        }
        // `- x` of anything else but a constant: a float NaN stays NaN (`NEG_FUNCTION`).
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } if signed_constant(expr).is_none() => {
            *e = call(crate::values::NEG_FUNCTION, vec![(**expr).clone()]);
        }
        // `- -1` would print as `--1`, an SQL comment: the operand of a sign is parenthesized
        // when it starts with one.
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } if starts_with_sign(expr) => {
            **expr = Expr::Nested(expr.clone());
        }
        // Division and remainder by zero are errors (22012), not NULL; an overflow of `+`,
        // `-`, `*` is an error (22003), not a float or an infinity.
        Expr::BinaryOp {
            left,
            op:
                op @ (BinaryOperator::Divide
                | BinaryOperator::Modulo
                | BinaryOperator::Plus
                | BinaryOperator::Minus
                | BinaryOperator::Multiply),
            right,
        } => {
            let f = match op {
                BinaryOperator::Divide => crate::values::DIV_FUNCTION,
                BinaryOperator::Modulo => crate::values::MOD_FUNCTION,
                BinaryOperator::Plus => crate::values::ADD_FUNCTION,
                BinaryOperator::Minus => crate::values::SUB_FUNCTION,
                _ => crate::values::MUL_FUNCTION,
            };
            let mut args = vec![(**left).clone(), (**right).clone()];
            // Both operands smallint or integer: so is the result, checked against its range.
            if let (Some(a), Some(b)) = (int_width(left), int_width(right)) {
                args.extend(checked_int_type(a.max(b)).map(string));
            }
            *e = call(f, args);
        }
        // Casts to integer, length-limited text, uuid, json, date and timestamp types check the
        // value as Postgres does (22P02, 22003, 22007, 22008); a cast to varchar(n) cuts the
        // text. Casts to other types SQLite has no affinity for would take NUMERIC affinity and
        // turn text into 0 (CAST('{"a":1}' AS JSONB) = 0): text-like Postgres types cast to TEXT.
        Expr::Cast {
            kind,
            expr,
            data_type,
            format,
        } => {
            let checked =
                matches!(kind, CastKind::Cast | CastKind::DoubleColon) && format.is_none();
            if let Some(call) = checked
                .then(|| crate::values::cast_call(expr, data_type))
                .flatten()
            {
                *e = call;
                return Ok(());
            }
            // Text Postgres reads as a boolean (`'yes'`, `'off'`, `' t '`), 22P02 otherwise;
            // SQLite's CAST would read any text as 0.
            if checked && matches!(data_type, DataType::Boolean | DataType::Bool) {
                *e = call("pg_bool", vec![(**expr).clone()]);
                return Ok(());
            }
            // An array of a type whose arrays are not checked here (`oid[]`, `name[]`): its
            // text form, which NUMERIC affinity would turn into 0.
            if matches!(data_type, DataType::Array(_)) {
                *data_type = DataType::Text;
                return Ok(());
            }
            let name = data_type.to_string().to_ascii_lowercase();
            let base = name.split('(').next().unwrap_or("").trim().to_string();
            if matches!(
                base.as_str(),
                "json"
                    | "jsonb"
                    | "uuid"
                    | "varchar"
                    | "character varying"
                    | "char"
                    | "character"
                    | "bpchar"
                    | "name"
                    | "citext"
                    | "timestamp"
                    | "timestamptz"
                    | "timestamp with time zone"
                    | "timestamp without time zone"
                    | "date"
                    | "time"
                    | "interval"
            ) {
                *data_type = DataType::Text;
            } else if base == "bytea" {
                *data_type = DataType::Blob(None);
            } else if crate::enums::enum_type_name(data_type).is_some() {
                // An enum value is its label's text (`enums.rs`); the column's triggers check it.
                *data_type = DataType::Text;
            }
        }
        Expr::AnyOp { .. } | Expr::AllOp { .. } => array_comparison(e),
        // `ARRAY[a, b]`: its text form, `{a,b}` (one dimension only).
        Expr::Array(arr) => {
            if arr.elem.iter().any(|x| {
                matches!(x, Expr::Array(_))
                    || matches!(x, Expr::Function(f) if f.name.to_string() == crate::array::CONSTRUCT_FUNCTION)
            }) {
                return Err(SqlError::unsupported(
                    "multidimensional arrays (ARRAY[ARRAY[…]])",
                ));
            }
            *e = call(crate::array::CONSTRUCT_FUNCTION, arr.elem.clone());
        }
        // `a && b` of arrays: whether they share an element.
        Expr::BinaryOp {
            left,
            op: BinaryOperator::PGOverlap,
            right,
        } => {
            *e = call(
                crate::array::OVERLAPS_FUNCTION,
                vec![(**left).clone(), (**right).clone()],
            );
        }
        // A scalar subquery of more than one row is an error (21000), not its first row.
        Expr::Subquery(q) => single_row(q),
        // E'..' and $$..$$ strings become plain SQLite strings (the parser already unescaped them).
        Expr::Value(v) => match &v.value {
            Value::EscapedStringLiteral(s) => v.value = Value::SingleQuotedString(s.clone()),
            Value::DollarQuotedString(d) => v.value = Value::SingleQuotedString(d.value.clone()),
            _ => {}
        },
        Expr::Function(f) => {
            // Compare identifiers, not their quoting: "last_insert_rowid"() is the same function.
            let name = f.name.to_string().replace('"', "").to_ascii_lowercase();
            let bare = name.trim_start_matches("pg_catalog.").to_string();
            if bare.starts_with("_sqlkeeper") {
                // The engine's own functions (sequence reservations, table rebuilds) are
                // proposed by nodes, never by clients.
                return Err(SqlError {
                    sqlstate: crate::SqlState::new("42883"),
                    message: format!("function {bare} does not exist"),
                    position: None,
                });
            }
            if REFUSED_FUNCTIONS.contains(&bare.as_str()) {
                return Err(SqlError {
                    sqlstate: crate::SqlState::new("0A000"),
                    message: format!(
                        "function {bare}() is not supported: its result depends on the node, so replicas could diverge"
                    ),
                    position: None,
                });
            }
            if let Some(json) = json_function(&bare, f) {
                *e = json;
            } else if let Some(ty) =
                (bare == "abs")
                    .then(|| plain_args(f))
                    .flatten()
                    .and_then(|a| match a.as_slice() {
                        [x] => int_width(x).and_then(checked_int_type),
                        _ => None,
                    })
            {
                // `abs` of a smallint or integer is of its type: `abs(-2147483648)` is 22003.
                f.name = ObjectName::from(vec![Ident::new("abs")]);
                *e = call(
                    crate::values::CAST_FUNCTION,
                    vec![e.clone(), string(ty), number(-1)],
                );
            } else if let Some((_, to)) = RENAMED_FUNCTIONS.iter().find(|(from, _)| *from == bare) {
                f.name = ObjectName::from(vec![Ident::new(*to)]);
            } else if bare == "random" {
                // Postgres random() is a float in [0, 1); SQLite's is a 64-bit integer (made
                // deterministic by the engine from the leader's seed). 53 of its bits over 2^53
                // give every double in [0, 1) on the grid, never 1.0.
                let parsed = Parser::new(&PostgreSqlDialect {})
                    .try_with_sql("((random() >> 11) & 9007199254740991) / 9007199254740992.0")
                    .and_then(|mut p| p.parse_expr());
                if let Ok(expr) = parsed {
                    *e = Expr::Nested(Box::new(expr));
                }
            } else if name != bare {
                f.name = ObjectName::from(vec![Ident::new(bare)]);
            }
        }
        _ => {}
    }
    Ok(())
}
