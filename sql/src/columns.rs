//! Result column names and types as Postgres would report them, from the AST of a query's
//! projection. SQLite names an expression column after its text (`count(*)`, `1 + 1`) and
//! types it by value; Postgres names it after its function or `?column?` and types it from
//! the expression (`3 > 2` is `boolean`, printed `t`). Compare with Postgres'
//! `FigureColname` (parser/parse_target.c).

use sqlparser::ast::{
    BinaryOperator, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query,
    SelectItem, SetExpr, Statement, TableFactor, UnaryOperator, Value,
};

/// A Postgres type a result column can be described with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgType {
    /// `boolean`
    Bool,
    /// `smallint`
    Int2,
    /// `integer`
    Int4,
    /// `bigint`
    Int8,
    /// `real`
    Float4,
    /// `double precision`
    Float8,
    /// `numeric`
    Numeric,
    /// `text`
    Text,
    /// `varchar`
    Varchar,
    /// `char(n)` (`bpchar`)
    Bpchar,
    /// `bytea`
    Bytea,
    /// `date`
    Date,
    /// `timestamp without time zone`
    Timestamp,
    /// `timestamp with time zone`
    Timestamptz,
    /// `uuid`
    Uuid,
    /// `json`
    Json,
    /// `jsonb`
    Jsonb,
    /// `text[]`, an array in its text form (`{a,"b c"}`): `array_agg` of text
    TextArray,
    /// `boolean[]` (`array_agg` of booleans), stored as the text form of its 0/1 elements
    /// (`{1,0}`) and printed as PostgreSQL prints it (`{t,f}`)
    BoolArray,
    /// `integer[]`, in its text form (`{1,2}`)
    Int4Array,
    /// `bigint[]`, in its text form (`{1,2}`)
    Int8Array,
    /// `smallint[]`; this and the arrays below are stored in their text form, each element as
    /// its type prints it (`{1.50,NULL}`)
    Int2Array,
    /// `real[]`
    Float4Array,
    /// `double precision[]`
    Float8Array,
    /// `numeric[]` (its elements keep every digit: they are text)
    NumericArray,
    /// `varchar[]`
    VarcharArray,
    /// `char(n)[]` (`bpchar[]`)
    BpcharArray,
    /// `uuid[]`
    UuidArray,
    /// `date[]`
    DateArray,
    /// `timestamp[]`
    TimestampArray,
    /// `timestamptz[]`
    TimestamptzArray,
    /// `jsonb[]`
    JsonbArray,
}

/// What Postgres would call and type one result column; `None` where the node should use
/// what SQLite reports (a table column's name and declared type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnHint {
    /// Column name.
    pub name: Option<String>,
    /// Column type.
    pub pg_type: Option<PgType>,
    /// An aggregate of a table column (`sum(balance)`), whose type follows the column's: the
    /// aggregate and the column's place in the statement's column probe
    /// (`Translated::column_probe`), which the session describes to fill in `pg_type`.
    pub of_column: Option<(Aggregate, usize)>,
    /// The type modifier whose scale this column's `numeric` values are printed in, where the
    /// row description says -1: `sum`, `min` and `max` of a `numeric(p, s)` column keep their
    /// input's scale in PostgreSQL (`sum` of `10.00` and `32.50` is `42.50`), though the
    /// aggregate's result type has no modifier.
    pub numeric_typmod: Option<i32>,
}

/// An aggregate whose result type follows its argument's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `min`, `max`
    MinMax,
}

impl Aggregate {
    /// PostgreSQL's result type of the aggregate of a value of type `arg` (`pg_aggregate`):
    /// `sum` of `smallint`/`integer` is `bigint`, of `bigint` `numeric`; `avg` of an integer
    /// type or `numeric` is `numeric`, of a float `double precision`; `min`/`max` keep the type.
    pub fn result_type(self, arg: PgType) -> Option<PgType> {
        use PgType::*;
        Some(match (self, arg) {
            (Aggregate::Sum, Int2 | Int4) => Int8,
            (Aggregate::Sum, Int8 | Numeric) => Numeric,
            (Aggregate::Sum, Float4) => Float4,
            (Aggregate::Sum, Float8) => Float8,
            (Aggregate::Avg, Int2 | Int4 | Int8 | Numeric) => Numeric,
            (Aggregate::Avg, Float4 | Float8) => Float8,
            (Aggregate::MinMax, t) => t,
            _ => return None,
        })
    }

    /// Whether the aggregate's values keep the scale of a `numeric` argument (the largest
    /// scale of the values it adds or picks): `sum`, `min`, `max`; not `avg`, whose scale
    /// PostgreSQL chooses from the quotient.
    pub fn keeps_scale(self) -> bool {
        !matches!(self, Aggregate::Avg)
    }

    fn of_name(name: &str) -> Option<Aggregate> {
        match name {
            "sum" => Some(Aggregate::Sum),
            "avg" => Some(Aggregate::Avg),
            "min" | "max" => Some(Aggregate::MinMax),
            _ => None,
        }
    }
}

/// For a query whose result columns include aggregates of table columns (`SELECT
/// sum(abalance) FROM pgbench_accounts`): marks their hints ([`ColumnHint::of_column`]) and
/// returns the probe, a Postgres query of those columns over the same `FROM` (`SELECT
/// abalance FROM pgbench_accounts`), whose result columns' declared types are theirs.
pub(crate) fn aggregate_probe(stmt: &Statement, hints: &mut [ColumnHint]) -> Option<String> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if s.from.is_empty() || s.projection.len() != hints.len() {
        return None;
    }
    let mut columns = Vec::new();
    for (item, hint) in s.projection.iter().zip(hints.iter_mut()) {
        let Some(f) = item_function(item) else {
            continue;
        };
        let name = f.name.to_string().to_lowercase();
        let Some(aggregate) = Aggregate::of_name(&name) else {
            continue;
        };
        let FunctionArguments::List(list) = &f.args else {
            continue;
        };
        let [FunctionArg::Unnamed(FunctionArgExpr::Expr(
            arg @ (Expr::Identifier(_) | Expr::CompoundIdentifier(_)),
        ))] = list.args.as_slice()
        else {
            continue;
        };
        if hint.pg_type.is_none() && f.over.is_none() {
            hint.of_column = Some((aggregate, columns.len()));
            columns.push(arg.to_string());
        }
    }
    if columns.is_empty() {
        return None;
    }
    let from: Vec<String> = s.from.iter().map(|t| t.to_string()).collect();
    let with = q.with.as_ref().map(|w| format!("{w} ")).unwrap_or_default();
    Some(format!(
        "{with}SELECT {} FROM {}",
        columns.join(", "),
        from.join(", ")
    ))
}

/// The function call a select item is (`sum(x)`, `unnest(a) AS n`), if it is one.
pub(crate) fn item_function(item: &SelectItem) -> Option<&sqlparser::ast::Function> {
    match item {
        SelectItem::UnnamedExpr(Expr::Function(f))
        | SelectItem::ExprWithAlias {
            expr: Expr::Function(f),
            ..
        } => Some(f),
        _ => None,
    }
}

fn fold(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn type_of_data_type(dt: &DataType) -> Option<PgType> {
    pg_type_of_name(&dt.to_string())
}

/// The Postgres type of a type as declared (`integer`, `varchar(8)`, `BIGSERIAL`,
/// `timestamp(3) with time zone`): a column's declared type as SQLite keeps it, or a cast's.
/// `None` for types without a [`PgType`] (they are sent as `text`).
pub fn pg_type_of_name(name: &str) -> Option<PgType> {
    let s = name.to_ascii_lowercase();
    // An array type: `integer[]`, `varchar(20)[]`, `int[3]` (a size means nothing to
    // PostgreSQL), `_int4`.
    let t = s.trim();
    if let Some(element) = t.strip_suffix(']').and_then(|e| e.rsplit_once('[')) {
        return pg_type_of_name(element.0)?.array();
    }
    if let Some(element) = t.strip_prefix('_') {
        return pg_type_of_name(element)?.array();
    }
    let base = s.split('(').next().unwrap_or("").trim();
    Some(match base {
        "boolean" | "bool" => PgType::Bool,
        "smallint" | "int2" | "smallserial" | "serial2" => PgType::Int2,
        "int" | "integer" | "int4" | "serial" | "serial4" => PgType::Int4,
        "bigint" | "int8" | "bigserial" | "serial8" => PgType::Int8,
        "double precision" | "double" | "float8" | "float" => PgType::Float8,
        "real" | "float4" => PgType::Float4,
        "numeric" | "decimal" => PgType::Numeric,
        "varchar" | "character varying" => PgType::Varchar,
        "char" | "character" | "bpchar" => PgType::Bpchar,
        "bytea" | "blob" => PgType::Bytea,
        "text" => PgType::Text,
        "date" => PgType::Date,
        "timestamp" if s.contains("with time zone") && !s.contains("without") => {
            PgType::Timestamptz
        }
        "timestamp" | "timestamp without time zone" => PgType::Timestamp,
        "timestamptz" | "timestamp with time zone" => PgType::Timestamptz,
        "uuid" => PgType::Uuid,
        "json" => PgType::Json,
        "jsonb" => PgType::Jsonb,
        _ => return None,
    })
}

/// The type modifier Postgres reports for a declared type (`pg_attribute.atttypmod`, the
/// RowDescription's): `numeric(p, s)` is `((p << 16) | s) + 4`, `varchar(n)` and `char(n)` are
/// `n + 4`, `timestamp(p)` is `p`; -1 for a type declared without one, or one not given here.
pub fn pg_typmod_of_name(name: &str) -> i32 {
    // An array's modifier is its element type's (`varchar(20)[]`: 24).
    if let Some((element, _)) = name
        .trim()
        .strip_suffix(']')
        .and_then(|e| e.rsplit_once('['))
    {
        return pg_typmod_of_name(element);
    }
    let Some((_, args)) = name.split_once('(') else {
        // `char` alone is `char(1)`.
        return match pg_type_of_name(name) {
            Some(PgType::Bpchar) => 5,
            _ => -1,
        };
    };
    let args = args.split(')').next().unwrap_or("");
    let mut nums = args.split(',').map(|a| a.trim().parse::<i32>().ok());
    let (Some(Some(first)), second) = (nums.next(), nums.next()) else {
        return -1;
    };
    match (pg_type_of_name(name), second) {
        (Some(PgType::Numeric), None) => {
            crate::numeric::typmod(first.into(), 0).map_or(-1, |t| t as i32)
        }
        (Some(PgType::Numeric), Some(Some(scale))) => {
            crate::numeric::typmod(first.into(), scale.into()).map_or(-1, |t| t as i32)
        }
        (Some(PgType::Varchar | PgType::Bpchar), None) if first > 0 => first.saturating_add(4),
        (Some(PgType::Timestamp | PgType::Timestamptz), None) if (0..=6).contains(&first) => first,
        _ => -1,
    }
}

/// Postgres' internal name of a type, which names a column that is a cast of a literal.
fn type_colname(dt: &DataType) -> String {
    match type_of_data_type(dt) {
        // A cast to an array type is named after the element type (`'{1}'::int[]` is `int4`).
        Some(t) => t.element().unwrap_or(t).internal_name(),
        None => dt.to_string().to_lowercase(),
    }
}

pub(crate) fn figure_name(e: &Expr) -> Option<String> {
    Some(match e {
        Expr::Identifier(i) => fold(i),
        Expr::CompoundIdentifier(parts) => fold(parts.last()?),
        Expr::Function(f) => {
            let last = f.name.0.last()?.to_string();
            last.trim_matches('"').to_lowercase()
        }
        // `x::text` is called `x`; a cast literal is called after the type (`int4`).
        Expr::Cast {
            expr, data_type, ..
        } => match figure_name(expr) {
            Some(n) if is_named(expr) => n,
            _ => type_colname(data_type),
        },
        Expr::Case { .. } => "case".into(),
        Expr::Trim { trim_where, .. } => match trim_where {
            Some(sqlparser::ast::TrimWhereField::Leading) => "ltrim",
            Some(sqlparser::ast::TrimWhereField::Trailing) => "rtrim",
            _ => "btrim",
        }
        .into(),
        Expr::Position { .. } => "position".into(),
        Expr::Substring {
            shorthand: true, ..
        } => "substr".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Overlay { .. } => "overlay".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Nested(inner) => return figure_name(inner),
        Expr::Subquery(q) => return single_projection_name(q),
        // `a[1]` is called `a`; `(r).f` is called `f`.
        Expr::CompoundFieldAccess { root, access_chain } => match access_chain.last() {
            Some(sqlparser::ast::AccessExpr::Dot(Expr::Identifier(i))) => fold(i),
            _ => return figure_name(root),
        },
        Expr::Array(_) => "array".into(),
        _ => return None,
    })
}

fn is_named(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Array(_)
            | Expr::Identifier(_)
            | Expr::CompoundIdentifier(_)
            | Expr::Function(_)
            | Expr::Nested(_)
    )
}

fn single_projection_name(q: &Query) -> Option<String> {
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    match s.projection.as_slice() {
        [SelectItem::UnnamedExpr(e)] => figure_name(e),
        [SelectItem::ExprWithAlias { alias, .. }] => Some(fold(alias)),
        _ => None,
    }
}

fn number_type(n: &str) -> PgType {
    if n.contains(['.', 'e', 'E']) {
        PgType::Numeric
    } else if n.parse::<i32>().is_ok() {
        PgType::Int4
    } else if n.parse::<i64>().is_ok() {
        PgType::Int8
    } else {
        PgType::Numeric
    }
}

pub(crate) fn infer_type(e: &Expr) -> Option<PgType> {
    use BinaryOperator::*;
    Some(match e {
        Expr::BinaryOp { op, left, right } => match op {
            Eq
            | NotEq
            | Lt
            | Gt
            | LtEq
            | GtEq
            | And
            | Or
            | PGLikeMatch
            | PGNotLikeMatch
            | PGILikeMatch
            | PGNotILikeMatch
            | AtArrow
            | ArrowAt
            | Question
            | PGRegexMatch
            | PGRegexIMatch
            | PGRegexNotMatch
            | PGRegexNotIMatch
            | PGOverlap
            | PGCustomBinaryOperator(_) => PgType::Bool,
            StringConcat => match (infer_type(left), infer_type(right)) {
                (Some(PgType::Jsonb), _) | (_, Some(PgType::Jsonb)) => PgType::Jsonb,
                (Some(a), _) if a.element().is_some() => a,
                (_, Some(a)) if a.element().is_some() => a,
                _ => PgType::Text,
            },
            LongArrow | HashLongArrow => PgType::Text,
            Arrow | HashArrow => match infer_type(left)? {
                t @ (PgType::Json | PgType::Jsonb) => t,
                _ => return None,
            },
            Plus | Minus | Multiply | Divide | Modulo => {
                match (infer_type(left)?, infer_type(right)?) {
                    (PgType::Int4, PgType::Int4) => PgType::Int4,
                    (
                        PgType::Int2 | PgType::Int4 | PgType::Int8,
                        PgType::Int2 | PgType::Int4 | PgType::Int8,
                    ) => PgType::Int8,
                    _ => return None,
                }
            }
            _ => return None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        } => PgType::Bool,
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => infer_type(expr)?,
        Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotUnknown(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::InList { .. }
        | Expr::AnyOp { .. }
        | Expr::AllOp { .. }
        | Expr::InSubquery { .. }
        | Expr::Between { .. }
        | Expr::Like { .. }
        | Expr::ILike { .. }
        | Expr::Exists { .. } => PgType::Bool,
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => number_type(n),
            Value::SingleQuotedString(_)
            | Value::EscapedStringLiteral(_)
            | Value::DollarQuotedString(_) => PgType::Text,
            Value::Boolean(_) => PgType::Bool,
            Value::Null => PgType::Text,
            _ => return None,
        },
        Expr::Cast { data_type, .. } => type_of_data_type(data_type)?,
        Expr::Nested(inner) => infer_type(inner)?,
        // `ARRAY[1, 2]` is `integer[]`: an array of its elements' type (the first one typed).
        Expr::Array(a) => a.elem.iter().find_map(infer_type)?.array()?,
        Expr::Trim { .. } | Expr::Substring { .. } | Expr::Overlay { .. } => PgType::Text,
        Expr::Position { .. } => PgType::Int4,
        Expr::Function(f) => {
            let name = f.name.0.last()?.to_string().to_lowercase();
            match name.as_str() {
                "count" => PgType::Int8,
                // An array of its values' type (text, booleans, integers).
                "array_agg" => match &f.args {
                    FunctionArguments::List(l) => match l.args.as_slice() {
                        [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] => {
                            infer_type(arg)?.array()?
                        }
                        _ => return None,
                    },
                    _ => return None,
                },
                "length" | "char_length" | "character_length" | "strpos" | "position" => {
                    PgType::Int4
                }
                "array_length" | "array_position" | "cardinality" | "array_upper"
                | "array_lower" => PgType::Int4,
                // The array's type (of the argument that is the array).
                "array_append" | "array_cat" | "array_remove" | "array_prepend" => {
                    let FunctionArguments::List(l) = &f.args else {
                        return None;
                    };
                    let arrays = l.args.iter().filter_map(|a| match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => infer_type(x),
                        _ => None,
                    });
                    arrays.into_iter().find(|t| t.element().is_some())?
                }
                "upper" | "lower" | "concat" | "substr" | "replace" | "btrim" | "ltrim"
                | "rtrim" | "lpad" | "rpad" | "left" | "right" | "split_part" | "string_agg"
                | "md5" | "initcap" | "reverse" => PgType::Text,
                // Catalog functions that print definitions.
                "pg_get_indexdef"
                | "pg_get_expr"
                | "pg_get_constraintdef"
                | "pg_get_viewdef"
                | "format_type" => PgType::Text,
                "now" | "transaction_timestamp" | "statement_timestamp" | "clock_timestamp" => {
                    PgType::Timestamptz
                }
                "gen_random_uuid" => PgType::Uuid,
                "jsonb_build_object" | "jsonb_build_array" | "to_jsonb" | "jsonb_extract_path" => {
                    PgType::Jsonb
                }
                "json_build_object" | "json_build_array" | "to_json" | "json_extract_path" => {
                    PgType::Json
                }
                "json_typeof"
                | "jsonb_typeof"
                | "json_extract_path_text"
                | "jsonb_extract_path_text" => PgType::Text,
                "json_array_length" | "jsonb_array_length" => PgType::Int4,
                "bool_and" | "bool_or" | "every" | "starts_with" => PgType::Bool,
                "repeat" | "translate" | "chr" | "to_hex" => PgType::Text,
                "ascii" => PgType::Int4,
                "current_user" | "session_user" | "user" | "current_role" | "current_catalog"
                | "current_database" | "current_setting" | "current_schema" | "version"
                | "inet_server_addr" => PgType::Text,
                "pg_backend_pid" | "inet_server_port" => PgType::Int4,
                "has_table_privilege"
                | "has_sequence_privilege"
                | "has_schema_privilege"
                | "has_database_privilege"
                | "has_any_column_privilege"
                | "has_column_privilege" => PgType::Bool,
                "current_schemas" => PgType::TextArray,
                _ => return None,
            }
        }
        Expr::Case { conditions, .. } => {
            let first = conditions.first()?;
            infer_type(&first.result)?
        }
        // A scalar subquery is of its one result column's type.
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.as_slice() {
                [SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }] => {
                    infer_type(e)?
                }
                _ => return None,
            },
            _ => return None,
        },
        _ => return None,
    })
}

/// The type of a result expression that depends on the query's `FROM`: a column of a catalog
/// relation (the type the catalog declares), a column of a derived table (`d.c` of `FROM
/// (SELECT attnum = 0 AS c ...) AS d`: the type the derived table gives `c`), and `array_agg`
/// of either (with or without `ORDER BY`), as SQLAlchemy gathers an index's columns through two
/// derived tables.
/// The columns of the `generate_series(start, stop [, step])` calls in `select`'s `FROM`: the
/// relation's name (its alias, else `generate_series`), the column's (as `series.rs` names it)
/// and its type, PostgreSQL's for integer arguments: `integer`, or `bigint` when an argument
/// is one; `None` for arguments of another or unknown type.
fn series_columns(select: &sqlparser::ast::Select) -> Vec<(String, String, Option<PgType>)> {
    select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .filter_map(|r| {
            let (args, table, column) = crate::series::series_call(r)?;
            let mut widest = Some(PgType::Int4);
            for a in args {
                let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = a else {
                    return None;
                };
                widest = match (widest, infer_type(e)) {
                    (Some(w), Some(PgType::Int2 | PgType::Int4)) => Some(w),
                    (Some(_), Some(PgType::Int8)) => Some(PgType::Int8),
                    _ => None,
                };
            }
            let (table, column) = (fold(&table), fold(&column));
            Some((table, column, widest))
        })
        .collect()
}

fn scoped_type(
    select: &sqlparser::ast::Select,
    catalog: Option<&crate::catalog::CatalogSources>,
    e: &Expr,
) -> Option<PgType> {
    if let Some(t) = infer_type(e).or_else(|| catalog?.column_type(e)) {
        return Some(t);
    }
    let series = |table: Option<&Ident>, column: &Ident| {
        let column = fold(column);
        series_columns(select)
            .into_iter()
            .find(|(t, c, _)| *c == column && table.is_none_or(|table| *t == fold(table)))
            .and_then(|(_, _, ty)| ty)
    };
    match e {
        Expr::Identifier(i) => series(None, i),
        Expr::CompoundIdentifier(parts) => {
            let [table, column] = parts.as_slice() else {
                return None;
            };
            if let Some(t) = series(Some(table), column) {
                return Some(t);
            }
            let subquery = select
                .from
                .iter()
                .flat_map(|t| {
                    std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation))
                })
                .find_map(|r| match r {
                    TableFactor::Derived {
                        subquery,
                        alias: Some(a),
                        ..
                    } if a.name.value.eq_ignore_ascii_case(&table.value) => Some(subquery),
                    _ => None,
                })?;
            let column = column.value.to_ascii_lowercase();
            query_hints(subquery)
                .into_iter()
                .find(|h| h.name.as_deref() == Some(column.as_str()))?
                .pg_type
        }
        Expr::Function(f) if f.name.to_string().eq_ignore_ascii_case("array_agg") => {
            let FunctionArguments::List(l) = &f.args else {
                return None;
            };
            let [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] = l.args.as_slice() else {
                return None;
            };
            scoped_type(select, catalog, arg)?.array()
        }
        _ => None,
    }
}

/// The left-most `SELECT` of a query, whose projection names and types the columns of a
/// `UNION` (and of the recursive common table expression it defines); `None` for `VALUES`.
pub(crate) fn leftmost_select(q: &Query) -> Option<&sqlparser::ast::Select> {
    let mut body = q.body.as_ref();
    while let SetExpr::SetOperation { left, .. } = body {
        body = left.as_ref();
    }
    match body {
        SetExpr::Select(s) => Some(s),
        _ => None,
    }
}

/// The columns `SELECT *` reads from `select`'s one relation when it is a derived table or a
/// common table expression of `with` (the left-most branch of its query, as SQLite and
/// PostgreSQL type a `UNION`), each named (its alias's column list first) and typed; `None`
/// for anything else, or when a column's name is not known here.
fn star_columns(
    with: Option<&sqlparser::ast::With>,
    select: &sqlparser::ast::Select,
) -> Option<Vec<ColumnHint>> {
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let (query, alias_columns) = match &from.relation {
        TableFactor::Derived {
            subquery, alias, ..
        } => (
            subquery.as_ref(),
            alias.as_ref().map(|a| a.columns.as_slice()),
        ),
        TableFactor::Table {
            name, args: None, ..
        } if name.0.len() == 1 => {
            let bare = fold(name.0[0].as_ident()?);
            let cte = with?
                .cte_tables
                .iter()
                .find(|c| fold(&c.alias.name) == bare)?;
            (cte.query.as_ref(), Some(cte.alias.columns.as_slice()))
        }
        _ => return None,
    };
    let mut hints = query_hints(query);
    let inner = leftmost_select(query)?;
    if hints.len() != inner.projection.len() {
        return None;
    }
    // A plain column keeps its name.
    for (h, item) in hints.iter_mut().zip(&inner.projection) {
        if h.name.is_none() {
            h.name = match item {
                SelectItem::UnnamedExpr(Expr::Identifier(i)) => Some(fold(i)),
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                    Some(fold(parts.last()?))
                }
                _ => None,
            };
        }
    }
    match alias_columns {
        Some(columns) if !columns.is_empty() => {
            if columns.len() != hints.len() {
                return None;
            }
            for (h, c) in hints.iter_mut().zip(columns) {
                h.name = Some(fold(&c.name));
            }
        }
        _ => {}
    }
    hints.iter().all(|h| h.name.is_some()).then_some(hints)
}

/// Names and types of a query's result columns, one per projection item, or an empty list
/// when the projection has a wildcard (SQLite's names and declared types are right then).
pub(crate) fn projection_hints(stmt: &Statement) -> Vec<ColumnHint> {
    let items: &[SelectItem] = match stmt {
        Statement::Query(q) => return query_hints(q),
        // A write's RETURNING list is named and typed as a query's projection.
        Statement::Insert(i) => i.returning.as_deref().unwrap_or_default(),
        Statement::Update(u) => u.returning.as_deref().unwrap_or_default(),
        Statement::Delete(d) => d.returning.as_deref().unwrap_or_default(),
        _ => return Vec::new(),
    };
    item_hints(None, None, items)
}

/// [`projection_hints`] of a query: its left-most `SELECT`'s projection.
fn query_hints(q: &Query) -> Vec<ColumnHint> {
    match leftmost_select(q) {
        Some(s) => item_hints(Some(s), q.with.as_ref(), &s.projection),
        None => Vec::new(),
    }
}

/// The hints of projection `items`, of `select` (with the query's `with`) or of a `RETURNING`.
fn item_hints(
    select: Option<&sqlparser::ast::Select>,
    with: Option<&sqlparser::ast::With>,
    items: &[SelectItem],
) -> Vec<ColumnHint> {
    // A column of a catalog relation has the type the catalog declares (SQLite knows none).
    let catalog = select.and_then(crate::catalog::CatalogSources::of);
    let typed = |e: &Expr| match select {
        Some(s) => scoped_type(s, catalog.as_ref(), e),
        None => infer_type(e),
    };
    if let (Some(c), [SelectItem::Wildcard(_)]) = (&catalog, items) {
        return c
            .wildcard_types()
            .map(|cols| {
                cols.into_iter()
                    .map(|(name, t)| ColumnHint {
                        name: Some(name),
                        pg_type: Some(t),
                        of_column: None,
                        numeric_typmod: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
    // `SELECT * FROM generate_series(...)`: its one column.
    if let (Some(s), [SelectItem::Wildcard(_)]) = (select, items) {
        if let ([from], [(_, column, ty)]) = (s.from.as_slice(), series_columns(s).as_slice()) {
            if from.joins.is_empty() {
                return vec![ColumnHint {
                    name: Some(column.clone()),
                    pg_type: *ty,
                    of_column: None,
                    numeric_typmod: None,
                }];
            }
        }
    }
    let mut hints = Vec::with_capacity(items.len());
    for item in items {
        if let SelectItem::Wildcard(_) = item {
            // `*` of a derived table or a common table expression: its columns, named and
            // typed as its own projection (asyncpg's type introspection reads a recursive one).
            match select.and_then(|s| star_columns(with, s)) {
                Some(columns) => hints.extend(columns),
                None => return Vec::new(),
            }
            continue;
        }
        hints.push(match item {
            SelectItem::UnnamedExpr(e) => ColumnHint {
                name: match e {
                    // A plain column keeps the name SQLite reports (its declared spelling).
                    Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
                    _ => Some(figure_name(e).unwrap_or_else(|| "?column?".into())),
                },
                pg_type: typed(e),
                of_column: None,
                numeric_typmod: None,
            },
            SelectItem::ExprWithAlias { expr, alias } => ColumnHint {
                name: Some(fold(alias)),
                pg_type: typed(expr),
                of_column: None,
                numeric_typmod: None,
            },
            _ => return Vec::new(),
        });
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(sql: &str) -> Vec<Option<PgType>> {
        let stmt =
            sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::PostgreSqlDialect {}, sql)
                .unwrap()
                .remove(0);
        projection_hints(&stmt)
            .into_iter()
            .map(|h| h.pg_type)
            .collect()
    }

    /// SQLAlchemy's index reflection: arrays aggregated over a derived table, read through
    /// another one.
    #[test]
    fn derived_table_columns_and_their_arrays_are_typed() {
        let sql = "SELECT cols.elements, cols.is_expr, cols.opclass, cols.n, cols.unknown \
                   FROM pg_index LEFT JOIN (SELECT a.id, array_agg(a.element ORDER BY a.ord) \
                   AS elements, array_agg(a.is_expr) AS is_expr, array_agg(a.opclass) AS opclass, \
                   count(*) AS n, array_agg(a.x) AS unknown FROM (SELECT i.id, i.ord, \
                   CASE WHEN i.attnum = 0 THEN pg_get_indexdef(i.id, i.ord + 1, true) \
                   ELSE CAST(i.name AS TEXT) END AS element, i.attnum = 0 AS is_expr, \
                   CAST(i.opclass AS BIGINT) AS opclass, i.x FROM i) AS a GROUP BY a.id) AS cols \
                   ON true";
        assert_eq!(
            hints(sql),
            vec![
                Some(PgType::TextArray),
                Some(PgType::BoolArray),
                Some(PgType::Int8Array),
                Some(PgType::Int8),
                None,
            ]
        );
    }

    /// asyncpg's type introspection: `SELECT DISTINCT *, …` of a recursive common table
    /// expression with a column list, whose first branch reads a derived table.
    #[test]
    fn star_of_a_derived_table_or_a_common_table_expression_is_typed() {
        let names = |sql: &str| -> Vec<Option<String>> {
            let stmt = sqlparser::parser::Parser::parse_sql(
                &sqlparser::dialect::PostgreSqlDialect {},
                sql,
            )
            .unwrap()
            .remove(0);
            projection_hints(&stmt)
                .into_iter()
                .map(|h| h.name)
                .collect()
        };
        let sql = "WITH RECURSIVE r(e, d) AS (SELECT x.e, 0 FROM (SELECT length(n) AS e \
                   FROM t) AS x UNION ALL SELECT e, d + 1 FROM r WHERE d < 1) \
                   SELECT DISTINCT *, CAST(e AS text) AS s FROM r ORDER BY d DESC";
        assert_eq!(
            hints(sql),
            vec![Some(PgType::Int4), Some(PgType::Int4), Some(PgType::Text)]
        );
        assert_eq!(
            names(sql),
            vec![Some("e".into()), Some("d".into()), Some("s".into())]
        );
        assert_eq!(
            hints("SELECT * FROM (SELECT 1 AS a, true AS b) AS x"),
            vec![Some(PgType::Int4), Some(PgType::Bool)]
        );
        // A table's columns are SQLite's to name and type: no hints at all.
        assert!(hints("SELECT *, 1 AS one FROM t").is_empty());
        assert!(hints("SELECT * FROM (SELECT 1 AS a) AS x, t").is_empty());
    }
}
