//! A write transaction as data: the statements it runs, in order, each with what it must
//! find. Operations build a [`Plan`]; each database has one executor that runs any plan in
//! one transaction (PostgreSQL) or one savepoint of the writer's batch (SQLite,
//! `store::sqlite::writer`).
//!
//! Why data and not code: the rules that decide what to write live in the domain, which
//! reads first and then asks for changes guarded by what it read ("this customer is still
//! ACTIVE", "this request is still IN_PROGRESS"). A guard that no longer holds is a
//! [`Applied::Conflict`]: the whole plan is rolled back and the caller reads again. So no
//! transaction is held open across a decision, the same plan runs on both databases, and
//! SQLite's single writer can take plans from everyone.

use super::value::{Param, Row};

/// What a statement must find for the plan to go on. Whatever it expects, a statement that
/// breaks a unique constraint is a conflict at its step, not an error: something else holds
/// that key (a card number another kit holds, an envelope recorded by another replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any number of rows affected.
    Any,
    /// Exactly one row affected; otherwise the plan is a conflict at this step.
    One,
    /// A query (`SELECT`, or a write with `RETURNING`): its rows are returned.
    Rows,
}

/// One statement of a plan.
#[derive(Debug, Clone)]
pub struct Step {
    pub sql: &'static str,
    pub params: Vec<Param>,
    pub expect: Expect,
}

/// The statements of one write transaction. `op` names it in errors and logs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub op: &'static str,
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn new(op: &'static str) -> Self {
        Self { op, steps: Vec::new() }
    }

    /// Adds a statement; returns its index, by which its output and conflicts are known.
    pub fn step(&mut self, sql: &'static str, params: Vec<Param>, expect: Expect) -> usize {
        self.steps.push(Step { sql, params, expect });
        self.steps.len() - 1
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Affected(u64),
    Rows(Vec<Row>),
}

/// What running a plan did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Every step ran and the transaction committed; one output per step.
    Done(Vec<Output>),
    /// Step `at` did not find what it expected: nothing of the plan was written.
    Conflict { at: usize },
}

impl Applied {
    /// The rows step `at` returned (empty if it returned none or was not a query).
    pub fn rows(&self, at: usize) -> &[Row] {
        match self {
            Applied::Done(outputs) => match outputs.get(at) {
                Some(Output::Rows(rows)) => rows,
                _ => &[],
            },
            Applied::Conflict { .. } => &[],
        }
    }

    /// Rows affected by step `at` (0 if it was a query or the plan conflicted).
    pub fn affected(&self, at: usize) -> u64 {
        match self {
            Applied::Done(outputs) => match outputs.get(at) {
                Some(Output::Affected(n)) => *n,
                _ => 0,
            },
            Applied::Conflict { .. } => 0,
        }
    }
}
