//! A plain HTTP/1.1 client for loopback (and TLS, for the listeners that have it), one
//! connection per request, that shows what a client sees: status, headers and the body's
//! exact bytes.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The M2P envelope's error code, or "".
    pub fn code(&self) -> String {
        self.json()["exception"]["errorCode"].as_str().unwrap_or_default().to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `addr` over TLS, trusting only `ca_pem`, checking the server's
/// certificate for `server_name`.
pub async fn request_tls(
    addr: SocketAddr,
    server_name: &str,
    ca_pem: &std::path::Path,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<Reply> {
    use rustls_pki_types::pem::PemObject;
    ctp_issuer::http::tls::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca_pem)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(ctp_issuer::http::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())?;
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, stream).await?;
    exchange(TokioIo::new(stream), addr, method, path, headers, body.into()).await
}

/// Sends one request to `addr`.
pub async fn request(addr: SocketAddr, method: Method, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    try_request(addr, method, path, headers, body).await.unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// [`request`], with a connection or protocol failure as an error instead of a panic.
pub async fn try_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<Reply> {
    let stream = TcpStream::connect(addr).await?;
    exchange(TokioIo::new(stream), addr, method, path, headers, body.into()).await
}

async fn exchange<I>(io: I, addr: SocketAddr, method: Method, path: &str, headers: &[(&str, &str)], body: Bytes) -> anyhow::Result<Reply>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let mut builder = Request::builder().method(method).uri(path).header(header::HOST, addr.to_string());
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(body))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply { status: parts.status, headers: parts.headers, body })
}
