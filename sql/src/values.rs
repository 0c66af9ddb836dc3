//! Postgres' value errors in translated SQL. SQLite answers `1 / 0` with NULL, casts `'abc'`
//! to the integer 0, and stores any value in any column; Postgres raises 22012, 22P02, 22003,
//! 22001, 22008. The translator writes `/` and `%` as calls of [`DIV_FUNCTION`] and
//! [`MOD_FUNCTION`], casts to the types below as [`CAST_FUNCTION`], and gives every column of
//! these types a `CHECK` calling [`VALID_FUNCTION`], which raises the error Postgres raises
//! when a stored value is not of the column's type. The engine provides the functions
//! (`engine/src/values.rs`) on every connection; their names are reserved (`_sqlkeeper`).

use sqlparser::ast::{
    CharacterLength, CheckConstraint, ColumnDef, ColumnOption, ColumnOptionDef, DataType, Expr,
    Ident,
};

use crate::rewrite::{call, number, string};

/// `a / b`: Postgres' division by zero (22012) and overflow (22003).
pub const DIV_FUNCTION: &str = "_sqlkeeper_div";
/// `a % b` and `mod(a, b)`: Postgres' division by zero (22012).
pub const MOD_FUNCTION: &str = "_sqlkeeper_mod";
/// `a + b`, `a - b`, `a * b`: Postgres' overflow (22003) where SQLite turns an integer overflow
/// into a float and a float overflow into an infinity.
pub const ADD_FUNCTION: &str = "_sqlkeeper_add";
/// See [`ADD_FUNCTION`].
pub const SUB_FUNCTION: &str = "_sqlkeeper_sub";
/// See [`ADD_FUNCTION`].
pub const MUL_FUNCTION: &str = "_sqlkeeper_mul";
/// `CAST(v AS t)`: `_sqlkeeper_cast(v, 't', typmod)`, the value of type `t` or Postgres' error.
pub const CAST_FUNCTION: &str = "_sqlkeeper_cast";
/// A column's `CHECK (_sqlkeeper_valid(c, 't', typmod))`: true, or Postgres' error for a value
/// that is not of type `t`.
pub const VALID_FUNCTION: &str = "_sqlkeeper_valid";
/// `- x` of an operand that is neither a constant nor of an integer type: SQLite's minus reads
/// text as a number's prefix, so the NaN a float keeps as the text `'NaN'`
/// (`numeric::NAN_TEXT`) would become 0; this keeps it NaN (and `-0.0` negative zero).
pub const NEG_FUNCTION: &str = "_sqlkeeper_neg";
/// `sum(x)` and `avg(x)` as `_sqlkeeper_nan_or(sum(x), max((x IS NOT NULL) + (x IS 'NaN')))`:
/// NaN when a NaN was summed (SQLite's `sum` reads the text `'NaN'` a float NaN is kept as,
/// `numeric::NAN_TEXT`, as zero), and when values were summed but the sum is NULL (SQLite's
/// for a NaN result, `Infinity + -Infinity`), as in PostgreSQL.
pub const NAN_OR_FUNCTION: &str = "_sqlkeeper_nan_or";
/// `_sqlkeeper_single(count(*) OVER (), v)` in a scalar subquery's projection: `v`, or Postgres'
/// 21000 when the subquery returns more than one row (SQLite would take the first).
pub const SINGLE_ROW_FUNCTION: &str = "_sqlkeeper_single";
/// The first value of an integer `generate_series(start, stop, step)`, or NULL if it has none
/// (`series.rs`).
pub const SERIES_FIRST_FUNCTION: &str = "_sqlkeeper_series_first";
/// The value after `v` in an integer `generate_series`, or NULL where the series ends.
pub const SERIES_NEXT_FUNCTION: &str = "_sqlkeeper_series_next";

/// The engine's name of a Postgres type whose values it checks, with its typmod (the length
/// of `varchar(n)` and `char(n)`, else -1).
pub(crate) fn checked_type(dt: &DataType) -> Option<(&'static str, i64)> {
    let length = |l: &Option<CharacterLength>| match l {
        Some(CharacterLength::IntegerLength { length, .. }) => Some(*length as i64),
        _ => None,
    };
    Some(match dt {
        DataType::SmallInt(_) | DataType::Int2(_) => ("int2", -1),
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) => ("int4", -1),
        DataType::BigInt(_) | DataType::Int8(_) => ("int8", -1),
        DataType::Real | DataType::Float4 => ("float4", -1),
        DataType::DoublePrecision | DataType::Double(_) | DataType::Float8 | DataType::Float64 => {
            ("float8", -1)
        }
        // `float(p)`: single precision up to 24 binary digits, as in PostgreSQL.
        DataType::Float(info) => match info {
            sqlparser::ast::ExactNumberInfo::Precision(p)
            | sqlparser::ast::ExactNumberInfo::PrecisionAndScale(p, _)
                if *p <= 24 =>
            {
                ("float4", -1)
            }
            _ => ("float8", -1),
        },
        DataType::Varchar(l) | DataType::CharacterVarying(l) | DataType::CharVarying(l) => {
            ("varchar", length(l)?)
        }
        // `char` alone is `char(1)`.
        DataType::Char(l) | DataType::Character(l) => ("bpchar", length(l).unwrap_or(1)),
        DataType::Numeric(info) | DataType::Decimal(info) | DataType::Dec(info) => {
            ("numeric", numeric_typmod(info))
        }
        DataType::Uuid => ("uuid", -1),
        DataType::JSON => ("json", -1),
        DataType::JSONB => ("jsonb", -1),
        DataType::Date => ("date", -1),
        DataType::Timestamp(
            _,
            sqlparser::ast::TimezoneInfo::WithTimeZone | sqlparser::ast::TimezoneInfo::Tz,
        ) => ("timestamptz", -1),
        DataType::Timestamp(_, _) => ("timestamp", -1),
        DataType::Array(def) => {
            let (element, typmod) = match array_element_type(def)? {
                DataType::Text | DataType::String(_) => ("text", -1),
                DataType::Boolean | DataType::Bool => ("bool", -1),
                other => checked_type(other)?,
            };
            (array_type_name(element)?, typmod)
        }
        DataType::Custom(name, _) => match name.to_string().to_ascii_lowercase().as_str() {
            "int2" => ("int2", -1),
            "int4" => ("int4", -1),
            "int8" => ("int8", -1),
            "timestamptz" => ("timestamptz", -1),
            _ => return None,
        },
        _ => return None,
    })
}

/// The element type of a one-dimensional array type (`int[]`, `int[3]`, `int ARRAY`).
pub(crate) fn array_element_type(def: &sqlparser::ast::ArrayElemTypeDef) -> Option<&DataType> {
    use sqlparser::ast::ArrayElemTypeDef as A;
    match def {
        A::SquareBracket(t, _) | A::Qualified(t, _) if !matches!(**t, DataType::Array(_)) => {
            Some(t)
        }
        _ => None,
    }
}

/// The engine's name of the array type of an element type it checks (`int4` → `int4[]`):
/// the arrays a column can have here.
fn array_type_name(element: &str) -> Option<&'static str> {
    Some(match element {
        "bool" => "bool[]",
        "int2" => "int2[]",
        "int4" => "int4[]",
        "int8" => "int8[]",
        "float4" => "float4[]",
        "float8" => "float8[]",
        "numeric" => "numeric[]",
        "text" => "text[]",
        "varchar" => "varchar[]",
        "bpchar" => "bpchar[]",
        "uuid" => "uuid[]",
        "date" => "date[]",
        "timestamp" => "timestamp[]",
        "timestamptz" => "timestamptz[]",
        "jsonb" => "jsonb[]",
        _ => return None,
    })
}

/// Refuses (0A000) a column of an array type whose values this node cannot keep as
/// PostgreSQL does: several dimensions, or an element type without an array here
/// (`json[]`, `bytea[]`, arrays of enums).
pub(crate) fn check_array_columns(stmt: &sqlparser::ast::Statement) -> Result<(), crate::SqlError> {
    let columns: Vec<&ColumnDef> = match stmt {
        sqlparser::ast::Statement::CreateTable(ct) => ct.columns.iter().collect(),
        sqlparser::ast::Statement::AlterTable(at) => at
            .operations
            .iter()
            .filter_map(|op| match op {
                sqlparser::ast::AlterTableOperation::AddColumn { column_def, .. } => {
                    Some(column_def)
                }
                _ => None,
            })
            .collect(),
        _ => return Ok(()),
    };
    for c in columns {
        if matches!(c.data_type, DataType::Array(_)) && checked_type(&c.data_type).is_none() {
            return Err(crate::SqlError::unsupported(format!(
                "type {} (column \"{}\")",
                c.data_type.to_string().to_lowercase(),
                c.name.value
            )));
        }
    }
    Ok(())
}

/// The type modifier of `numeric(p)` and `numeric(p, s)`, -1 for `numeric` alone or a
/// precision or scale PostgreSQL refuses (not checked here).
fn numeric_typmod(info: &sqlparser::ast::ExactNumberInfo) -> i64 {
    use sqlparser::ast::ExactNumberInfo as I;
    let typmod = match *info {
        I::Precision(p) => crate::numeric::typmod(p as i64, 0),
        I::PrecisionAndScale(p, s) => crate::numeric::typmod(p as i64, s),
        I::None => None,
    };
    typmod.unwrap_or(-1)
}

/// Gives every column that `stmt` creates or adds the check of its type. Run after the
/// expression rewrites, which refuse `_sqlkeeper` functions (clients may not call them).
pub(crate) fn add_column_checks(stmt: &mut sqlparser::ast::Statement) {
    match stmt {
        sqlparser::ast::Statement::CreateTable(ct) => ct.columns.iter_mut().for_each(column_check),
        sqlparser::ast::Statement::AlterTable(at) => {
            for op in &mut at.operations {
                if let sqlparser::ast::AlterTableOperation::AddColumn { column_def, .. } = op {
                    column_check(column_def);
                }
            }
        }
        _ => {}
    }
}

/// Gives `col` the check of its type, in place of the one it had (a column whose type
/// changed keeps no check of its old type).
pub(crate) fn column_check(col: &mut ColumnDef) {
    col.options.retain(|o| !is_value_check(&o.option));
    if let Some((ty, typmod)) = checked_type(&col.data_type) {
        let column = Expr::Identifier(Ident::with_quote('"', col.name.value.clone()));
        col.options.push(ColumnOptionDef {
            name: None,
            option: ColumnOption::Check(CheckConstraint {
                name: None,
                expr: Box::new(call(
                    VALID_FUNCTION,
                    vec![column, string(ty), number(typmod)],
                )),
                no_inherit: false,
                enforced: None,
            }),
        });
    }
}

fn is_value_check(o: &ColumnOption) -> bool {
    match o {
        ColumnOption::Check(c) => match &*c.expr {
            Expr::Function(f) => f.name.to_string().eq_ignore_ascii_case(VALID_FUNCTION),
            _ => false,
        },
        _ => false,
    }
}

/// `CAST(expr AS dt)` as a call of the engine's cast, for the types it checks.
pub(crate) fn cast_call(expr: &Expr, dt: &DataType) -> Option<Expr> {
    let (ty, typmod) = checked_type(dt)?;
    Some(call(
        CAST_FUNCTION,
        vec![expr.clone(), string(ty), number(typmod)],
    ))
}
