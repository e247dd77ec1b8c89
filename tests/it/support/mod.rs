//! What the tests share: real databases ([`db`]), the real service in process on loopback
//! ([`server`]) or as the real binary in a child process ([`binary`]), an HTTP client that
//! shows response headers ([`http`]), the internal API's client ([`api`]), cards, kits,
//! profiles and Visa notifications ([`cards`]), a dump of every table for "nothing was
//! written" and "this value is nowhere" ([`dump`]), the outbox seen from a second
//! connection ([`outbox`]), a proxy that cuts PostgreSQL away ([`proxy`]), and the one way
//! to wait for something ([`wait`]), and a headless browser ([`webdriver`]).

pub mod api;
pub mod binary;
pub mod cards;
pub mod db;
pub mod dump;
pub mod http;
pub mod outbox;
pub mod proxy;
pub mod server;
pub mod wait;
pub mod webdriver;

use std::path::{Path, PathBuf};

pub use db::{Blocker, TestDb, amqp_url};
pub use server::TestServer;
pub use wait::{eventually, until};

/// Repository root (for `keys/`, `fixtures/`, `deploy/`, `src/`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the development keys in a temporary directory, so that a test may add and
/// remove key files.
pub fn dev_keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join("keys"), dir.path());
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs an async test body against SQLite and, when enabled, PostgreSQL:
/// `db_test!(name, |db: TestDb| async move { ... });` makes `name::sqlite` and `name::postgres`.
/// The database is dropped (a PostgreSQL schema with it) when the body ends.
#[macro_export]
macro_rules! db_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::support::TestDb::sqlite()).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::support::TestDb::postgres().await {
                    ($body)(db).await;
                }
            }
        }
    };
}
