//! What a listener does with connections that hold a slot for nothing: silent ones, idle
//! keep-alive ones, quiet HTTP/2 ones, and more of them than `http.max_connections`.
//! Observed from outside, as a client sees it: the server closes the socket.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TestDb, TestServer, eventually};

const HEADER_READ: Duration = Duration::from_millis(400);
const IDLE: Duration = Duration::from_millis(600);
/// Far above both deadlines: a close that comes later than this did not come from them.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

async fn server(max_connections: usize) -> TestServer {
    server_idle_for(max_connections, IDLE).await
}

async fn server_idle_for(max_connections: usize, idle: Duration) -> TestServer {
    TestServer::start(&TestDb::sqlite(), |c| {
        c.http.header_read_timeout = HEADER_READ;
        c.http.idle_timeout = idle;
        c.http.max_connections = max_connections;
    })
    .await
}

/// Reads until the server closes the socket (EOF or reset); the bytes it sent meanwhile.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(CLOSED_WITHIN, read_all).await.expect("the server kept the connection open");
    seen
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let server = server(64).await;
    for addr in [server.public, server.internal, server.admin] {
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        assert!(until_closed(&mut silent).await.is_empty(), "a silent client got an answer");
        assert!(started.elapsed() >= HEADER_READ / 2, "closed before the deadline: {:?}", started.elapsed());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_closed() {
    let server = server(64).await;
    let mut slow = TcpStream::connect(server.public).await.unwrap();
    slow.write_all(b"POST /vtis/v1/tokenRequestors/1/cardEnrollment/notification HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    until_closed(&mut slow).await;
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let server = server(64).await;
    let mut client = TcpStream::connect(server.admin).await.unwrap();
    client.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = String::from_utf8(until_closed(&mut client).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn an_http2_connection_that_sends_only_its_preface_is_closed() {
    let server = server(64).await;
    let mut h2 = TcpStream::connect(server.public).await.unwrap();
    // The client connection preface and an empty SETTINGS frame, then nothing.
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await.unwrap();
    until_closed(&mut h2).await;
    server.stop().await;
}

#[tokio::test]
async fn an_http2_connection_that_goes_quiet_is_closed() {
    let server = server(64).await;
    let stream = TcpStream::connect(server.admin).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/healthz", server.admin)).body(Empty::new()).unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), StatusCode::OK);
    // The server sends GOAWAY once idle and closes; the client's connection then ends.
    tokio::time::timeout(CLOSED_WITHIN, connection).await.expect("the server kept the HTTP/2 connection open").unwrap().ok();
    server.stop().await;
}

#[tokio::test]
async fn past_max_connections_new_ones_are_shed_and_the_admin_listener_still_answers() {
    const MAX: usize = 8;
    // Held connections must not be closed as idle while the test fills the listener, however
    // slowly a loaded machine gets there.
    let server = server_idle_for(MAX, Duration::from_secs(60)).await;
    // Fill the public listener with connections that each had an answer (so they are open).
    let mut held = Vec::new();
    for _ in 0..MAX {
        let mut stream = TcpStream::connect(server.public).await.unwrap();
        stream.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        assert!(stream.read(&mut buf).await.unwrap() > 0, "a connection within the limit is served");
        held.push(stream);
    }
    // One more is closed at once, without an answer.
    let mut extra = TcpStream::connect(server.public).await.unwrap();
    let _ = extra.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(until_closed(&mut extra).await.is_empty(), "a connection past the limit was served");
    // The admin listener has slots of its own.
    let (status, body) = server.get_admin("/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
    // That the shedding is counted is asserted on a process of its own: metrics::a_shed_connection_is_counted.
    // Once one held connection goes, a new one is served again.
    drop(held.pop());
    let served = eventually(CLOSED_WITHIN, || async {
        let mut stream = TcpStream::connect(server.public).await.ok()?;
        stream.write_all(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n").await.ok()?;
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await.ok()?.ok()?;
        (n > 0).then_some(())
    })
    .await;
    assert!(served.is_some(), "a freed slot was not given to a new connection");
    drop(held);
    server.stop().await;
}
