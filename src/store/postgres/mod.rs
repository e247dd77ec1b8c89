//! PostgreSQL: for several replicas on one database, through a sqlx pool. Plans run in a
//! READ COMMITTED transaction each; their guards (`… WHERE status = $expected`) take the
//! rows' locks, so two replicas deciding about the same customer at once are serialised
//! by the database, and the later one finds its guard broken and reads again. The unique
//! indexes (card fingerprint, envelope digest, webhook id, idempotency key) keep two
//! replicas from recording the same thing twice.

pub mod attempts;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Column, Postgres as Pg, Row as _, TypeInfo};

use crate::store::batch::GroupCommit;
use crate::store::plan::{Applied, Expect, Output, Plan};
use crate::store::value::{Param, Row, Value};
use crate::store::{StoreError, db_err};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone)]
pub struct Postgres {
    pool: PgPool,
    /// Visa's notifications, batched (see `store::batch`).
    pub(crate) attempts: GroupCommit,
}

impl Postgres {
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Url(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(db_err("connect"))?;
        MIGRATOR.run(&pool).await?;
        // A few writers, so that one batch is being built while another waits for its
        // commit to reach the disk; each still commits many notifications at once.
        let writers = (max_connections / 4).clamp(1, 4) as usize;
        let attempts = GroupCommit::spawn(attempts::Attempts(pool.clone()), writers, 1);
        Ok(Self { pool, attempts })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn query(&self, op: &'static str, sql: &'static str, params: &[Param]) -> Result<Vec<Row>, StoreError> {
        let rows = bind(sqlx::query(sql), params).fetch_all(&self.pool).await.map_err(db_err(op))?;
        rows.iter().map(read_row).collect()
    }

    /// Several reads in one `REPEATABLE READ` snapshot.
    pub async fn query_together(&self, op: &'static str, statements: &[(&'static str, Vec<Param>)]) -> Result<Vec<Vec<Row>>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(db_err(op))?;
        let mut out = Vec::with_capacity(statements.len());
        for (sql, params) in statements {
            let rows = bind(sqlx::query(*sql), params).fetch_all(&mut *tx).await.map_err(db_err(op))?;
            out.push(rows.iter().map(read_row).collect::<Result<Vec<_>, _>>()?);
        }
        tx.commit().await.map_err(db_err(op))?;
        Ok(out)
    }

    /// Runs the plan in one transaction; a broken guard rolls it back.
    pub async fn apply(&self, plan: Plan) -> Result<Applied, StoreError> {
        let op = plan.op;
        let mut tx = self.pool.begin().await.map_err(db_err(op))?;
        let mut outputs = Vec::with_capacity(plan.steps.len());
        for (at, step) in plan.steps.iter().enumerate() {
            let query = bind(sqlx::query(step.sql), &step.params);
            let output = match step.expect {
                Expect::Rows => match query.fetch_all(&mut *tx).await {
                    Ok(rows) => Ok(Output::Rows(rows.iter().map(read_row).collect::<Result<_, _>>()?)),
                    Err(e) => Err(e),
                },
                Expect::Any | Expect::One => query.execute(&mut *tx).await.map(|done| Output::Affected(done.rows_affected())),
            };
            match output {
                Ok(Output::Affected(n)) if step.expect == Expect::One && n != 1 => return Ok(Applied::Conflict { at }),
                Ok(output) => outputs.push(output),
                // The transaction is aborted; dropping it rolls it back.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(Applied::Conflict { at }),
                Err(e) => return Err(db_err(op)(e)),
            }
        }
        tx.commit().await.map_err(db_err(op))?;
        Ok(Applied::Done(outputs))
    }
}

fn bind<'q>(mut query: Query<'q, Pg, PgArguments>, params: &[Param]) -> Query<'q, Pg, PgArguments> {
    for param in params {
        query = match param {
            Param::Int(v) => query.bind(*v),
            Param::Text(v) => query.bind(v.clone()),
            Param::IntList(ids) => query.bind(ids.clone()),
        };
    }
    query
}

fn read_row(row: &PgRow) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let decode = |e| StoreError::Database { op: "read a row", source: e };
        let value = match column.type_info().name() {
            "INT8" => row.try_get::<Option<i64>, _>(i).map_err(decode)?.map(Value::Int),
            "INT4" => row.try_get::<Option<i32>, _>(i).map_err(decode)?.map(|v| Value::Int(v.into())),
            "INT2" => row.try_get::<Option<i16>, _>(i).map_err(decode)?.map(|v| Value::Int(v.into())),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => row.try_get::<Option<String>, _>(i).map_err(decode)?.map(Value::Text),
            _ => return Err(StoreError::Decode { column: i, expected: "an integer or text column" }),
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}
