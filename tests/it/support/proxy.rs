//! A TCP proxy in front of the test PostgreSQL that a test can cut and restore: the
//! database becomes unreachable for the service while it runs, and comes back.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::postgres::PgConnectOptions;

use super::db::TestDb;

pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Proxy {
    /// A proxy in front of `db`'s server, and `db`'s schema reached through it (the
    /// returned database owns nothing: `db` still drops the schema).
    pub async fn before(db: &TestDb) -> (Self, TestDb) {
        let options = PgConnectOptions::from_str(&db.url).unwrap();
        let proxy = Self::start(format!("{}:{}", options.get_host(), options.get_port())).await;
        let schema = db.schema().expect("a PostgreSQL test database");
        let url = format!(
            "postgres://{}@{}/{}?options[search_path]={schema}",
            options.get_username(),
            proxy.addr,
            options.get_database().unwrap_or("postgres")
        );
        (proxy, TestDb::at(url, "postgres"))
    }

    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let mut cut_rx = cut2.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Self { addr, up, cut }
    }

    /// Cuts every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
