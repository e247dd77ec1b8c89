//! What goes into a statement and what comes out of one, the same for both databases, so
//! that every operation is written once: [`Param`]s bound to `$1 … $n`, and [`Row`]s of
//! [`Value`]s read back by position.
//!
//! Both are deliberately small: the schema uses only 64-bit integers and text (times are
//! epoch milliseconds, statuses their names, JSON documents text).

use std::fmt;

use super::StoreError;

/// A value bound to a parameter. Typed even when null, because PostgreSQL must know every
/// parameter's type. `Debug` shows the type only: a parameter may hold personal data.
#[derive(Clone, PartialEq, Eq)]
pub enum Param {
    Int(Option<i64>),
    Text(Option<String>),
    /// A list of ids: an array in PostgreSQL, JSON text (for `json_each`) in SQLite. Only
    /// the statements that [`super::sql::Dialect`] branches take one.
    IntList(Vec<i64>),
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Int(v) => write!(f, "Int({})", if v.is_some() { "…" } else { "null" }),
            Param::Text(v) => write!(f, "Text({})", if v.is_some() { "…" } else { "null" }),
            Param::IntList(v) => write!(f, "IntList({} ids)", v.len()),
        }
    }
}

impl From<Vec<i64>> for Param {
    fn from(v: Vec<i64>) -> Self {
        Param::IntList(v)
    }
}

impl From<i64> for Param {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<Option<i64>> for Param {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

impl From<&str> for Param {
    fn from(v: &str) -> Self {
        Param::Text(Some(v.to_owned()))
    }
}

impl From<String> for Param {
    fn from(v: String) -> Self {
        Param::Text(Some(v))
    }
}

impl From<&String> for Param {
    fn from(v: &String) -> Self {
        Param::Text(Some(v.clone()))
    }
}

impl From<Option<&str>> for Param {
    fn from(v: Option<&str>) -> Self {
        Param::Text(v.map(str::to_owned))
    }
}

impl From<Option<String>> for Param {
    fn from(v: Option<String>) -> Self {
        Param::Text(v)
    }
}

impl From<&Option<String>> for Param {
    fn from(v: &Option<String>) -> Self {
        Param::Text(v.clone())
    }
}

/// Parameters from a list of values of mixed types: `params![tenant, entity_id, now]`.
macro_rules! params {
    ($($value:expr),* $(,)?) => { vec![$($crate::store::value::Param::from($value)),*] };
}
pub(crate) use params;

/// A value read from a column.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// One row of a result, its columns in the order the query names them.
#[derive(Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Row({} columns)", self.0.len())
    }
}

impl Row {
    fn column(&self, i: usize) -> Result<&Value, StoreError> {
        self.0.get(i).ok_or(StoreError::Decode { column: i, expected: "a column" })
    }

    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or(StoreError::Decode { column: i, expected: "text, not null" })
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.column(i)? {
            Value::Null => Ok(None),
            Value::Text(t) => Ok(Some(t.clone())),
            Value::Int(_) => Err(StoreError::Decode { column: i, expected: "text" }),
        }
    }

    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.ok_or(StoreError::Decode { column: i, expected: "an integer, not null" })
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.column(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            Value::Text(_) => Err(StoreError::Decode { column: i, expected: "an integer" }),
        }
    }

    /// A status column: its text parsed by `parse`.
    pub fn parsed<T>(&self, i: usize, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, StoreError> {
        let text = self.text(i)?;
        parse(&text).ok_or(StoreError::Decode { column: i, expected: "a known status or name" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_do_not_print_their_values() {
        let p: Vec<Param> = params!["4111111111111111", Some("jane@example.com"), 7i64, None::<String>];
        let text = format!("{p:?}");
        assert_eq!(text, "[Text(…), Text(…), Int(…), Text(null)]");
    }

    #[test]
    fn rows_read_by_position_with_clear_errors() {
        let row = Row(vec![Value::Text("a".into()), Value::Null, Value::Int(3)]);
        assert_eq!(row.text(0).unwrap(), "a");
        assert_eq!(row.opt_text(1).unwrap(), None);
        assert_eq!(row.int(2).unwrap(), 3);
        assert!(row.text(1).is_err(), "null is not text");
        assert!(row.int(0).is_err(), "text is not an integer");
        assert!(row.text(9).is_err(), "no such column");
    }
}
