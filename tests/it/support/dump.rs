//! Every row of every table of a test database, read over a connection of its own (not
//! through the store under test), as text: for "this refusal wrote nothing" (compare two
//! dumps) and "this value is stored nowhere" (search one).
//!
//! SQLite values are read with `quote()`, so a BLOB shows as `X'…'` hex; PostgreSQL values
//! are cast to text, so a `bytea` shows as `\x…` hex. Either way raw bytes are findable as
//! hex.

use std::collections::BTreeMap;

use sqlx::Connection;

use super::db::TestDb;

/// Table name → its rows (each a list of column values, `None` for NULL), sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    pub tables: BTreeMap<String, Vec<Vec<Option<String>>>>,
}

/// Migration bookkeeping, not the service's data.
const SKIPPED: &[&str] = &["_sqlx_migrations", "sqlite_sequence"];

impl Dump {
    pub async fn of(db: &TestDb) -> Self {
        let mut tables = BTreeMap::new();
        if db.kind == "sqlite" {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let names: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetch_all(&mut c).await.unwrap();
            for (table,) in names.into_iter().filter(|(t,)| !SKIPPED.contains(&t.as_str()) && !t.starts_with("sqlite_")) {
                let columns: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')")))
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
                let select = columns.iter().map(|(col,)| format!("quote(\"{col}\")")).collect::<Vec<_>>().join(", ");
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {select} FROM \"{table}\""))).fetch_all(&mut c).await.unwrap();
                tables.insert(table, rows_as_text(&rows, columns.len()));
            }
            c.close().await.ok();
        } else {
            let schema = db.schema().expect("a PostgreSQL test database owns its schema");
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
            )
            .bind(schema)
            .fetch_all(&mut c)
            .await
            .unwrap();
            let mut by_table: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (table, column) in columns {
                by_table.entry(table).or_default().push(column);
            }
            for (table, columns) in by_table.into_iter().filter(|(t, _)| !SKIPPED.contains(&t.as_str())) {
                let select = columns.iter().map(|col| format!("\"{col}\"::text")).collect::<Vec<_>>().join(", ");
                let sql = format!("SELECT {select} FROM \"{schema}\".\"{table}\"");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&mut c).await.unwrap();
                tables.insert(table, rows_as_text(&rows, columns.len()));
            }
            c.close().await.ok();
        }
        assert!(tables.len() >= 8, "the dump found only {:?}: the scan is broken", tables.keys());
        Self { tables }
    }

    /// The rows of `table`.
    pub fn rows(&self, table: &str) -> &[Vec<Option<String>>] {
        self.tables.get(table).map(Vec::as_slice).unwrap_or_else(|| panic!("no table {table} in {:?}", self.tables.keys()))
    }

    /// Only these tables (to compare what a request may touch, leaving out what runs on its
    /// own, such as the idempotency keys' own bookkeeping).
    pub fn only(&self, tables: &[&str]) -> Self {
        Self { tables: tables.iter().map(|t| (t.to_string(), self.rows(t).to_vec())).collect() }
    }

    /// Every `(table, value)` in which `needle` occurs.
    pub fn find(&self, needle: &str) -> Vec<(String, String)> {
        self.values().filter(|(_, v)| v.contains(needle)).map(|(t, v)| (t.to_owned(), v.to_owned())).collect()
    }

    /// Every non-NULL value, with its table.
    pub fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.tables.iter().flat_map(|(t, rows)| rows.iter().flatten().flatten().map(move |v| (t.as_str(), v.as_str())))
    }
}

fn rows_as_text<R>(rows: &[R], width: usize) -> Vec<Vec<Option<String>>>
where
    R: sqlx::Row,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    let mut out: Vec<Vec<Option<String>>> = rows.iter().map(|row| (0..width).map(|i| row.try_get(i).unwrap()).collect()).collect();
    out.sort();
    out
}
