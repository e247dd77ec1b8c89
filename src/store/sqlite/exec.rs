//! Running the store's statements on a rusqlite connection: parameters bound by their
//! `$n` names, rows read into [`Row`]s, plans run step by step. Every statement is prepared
//! once per connection and kept in rusqlite's statement cache.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Statement};

use crate::store::StoreError;
use crate::store::plan::{Applied, Expect, Output, Plan};
use crate::store::value::{Param, Row, Value};

/// Statements cached per connection: every statement of `store::sql` fits.
pub const STATEMENT_CACHE: usize = 128;

pub fn sqlite_err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

/// `$1` … `$64`, the names SQLite gives the parameters of a statement written with them.
fn parameter_name(index: usize) -> Option<&'static str> {
    const NAMES: [&str; 64] = [
        "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16", "$17", "$18", "$19", "$20",
        "$21", "$22", "$23", "$24", "$25", "$26", "$27", "$28", "$29", "$30", "$31", "$32", "$33", "$34", "$35", "$36", "$37", "$38",
        "$39", "$40", "$41", "$42", "$43", "$44", "$45", "$46", "$47", "$48", "$49", "$50", "$51", "$52", "$53", "$54", "$55", "$56",
        "$57", "$58", "$59", "$60", "$61", "$62", "$63", "$64",
    ];
    NAMES.get(index).copied()
}

/// Binds `params[i]` to the parameter named `$(i+1)`, wherever it appears in the text
/// (SQLite numbers named parameters by first appearance, so a position would not do).
pub fn bind(op: &'static str, statement: &mut Statement<'_>, params: &[Param]) -> Result<(), StoreError> {
    for (i, param) in params.iter().enumerate() {
        let name = parameter_name(i).ok_or(StoreError::Decode { column: i, expected: "a parameter within $1..$64" })?;
        let Some(index) = statement.parameter_index(name).map_err(sqlite_err(op))? else { continue };
        let value = match param {
            Param::Int(v) => v.map_or(ToSqlOutput::Owned(rusqlite::types::Value::Null), ToSqlOutput::from),
            Param::Text(v) => match v {
                Some(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
                None => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            },
            Param::IntList(ids) => ToSqlOutput::from(serde_json::Value::from(ids.clone()).to_string()),
        };
        statement.raw_bind_parameter(index, value).map_err(sqlite_err(op))?;
    }
    Ok(())
}

/// Runs a read (or `RETURNING`) statement and collects its rows.
pub fn query(conn: &Connection, op: &'static str, sql: &'static str, params: &[Param]) -> Result<Vec<Row>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(sqlite_err(op))?;
    bind(op, &mut statement, params)?;
    collect(op, &mut statement)
}

fn collect(op: &'static str, statement: &mut Statement<'_>) -> Result<Vec<Row>, StoreError> {
    let columns = statement.column_count();
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sqlite_err(op))? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i).map_err(sqlite_err(op))? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(v) => Value::Int(v),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Real(_) | ValueRef::Blob(_) => return Err(StoreError::Decode { column: i, expected: "an integer or text" }),
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}

/// Whether an error is a unique (or primary key) constraint that a row already holds.
pub fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Runs `plan`'s steps in order on `conn`, inside whatever transaction or savepoint the
/// caller opened. Stops at the first guard that fails (the caller rolls back).
pub fn run_plan(conn: &Connection, plan: &Plan) -> Result<Applied, StoreError> {
    let op = plan.op;
    let mut outputs = Vec::with_capacity(plan.steps.len());
    for (at, step) in plan.steps.iter().enumerate() {
        let mut statement = conn.prepare_cached(step.sql).map_err(sqlite_err(op))?;
        bind(op, &mut statement, &step.params)?;
        if step.expect == Expect::Rows {
            match collect(op, &mut statement) {
                Ok(rows) => outputs.push(Output::Rows(rows)),
                Err(StoreError::Sqlite { source, .. }) if is_unique_violation(&source) => return Ok(Applied::Conflict { at }),
                Err(e) => return Err(e),
            }
            continue;
        }
        match statement.raw_execute() {
            Ok(n) if step.expect == Expect::One && n != 1 => return Ok(Applied::Conflict { at }),
            Ok(n) => outputs.push(Output::Affected(n as u64)),
            Err(e) if is_unique_violation(&e) => return Ok(Applied::Conflict { at }),
            Err(e) => return Err(sqlite_err(op)(e)),
        }
    }
    Ok(Applied::Done(outputs))
}
