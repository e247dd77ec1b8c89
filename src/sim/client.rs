//! A minimal HTTP/1.1 client for loopback use by `visa send`, the tests and the load
//! tool: one request per call, plain or TLS (with an optional client certificate, as Visa
//! presents for mutual TLS).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// TLS settings for talking to our own public listener.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
}

impl ClientTls {
    /// Trusts `ca_pem`; presents `client` (certificate, key) when given.
    pub fn new(ca_pem: &Path, client: Option<(&Path, &Path)>) -> anyhow::Result<Self> {
        crate::http::tls::install_crypto_provider();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_pem)? {
            roots.add(cert?)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(crate::http::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
                builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
            }
        };
        Ok(Self { connector: TlsConnector::from(Arc::new(config)) })
    }
}

/// Sends one request to `authority` (host:port) and returns status and body.
pub async fn send(
    authority: &str,
    tls: Option<&ClientTls>,
    method: http::Method,
    path_and_query: &str,
    body: impl Into<Bytes>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    send_with(authority, tls, method, path_and_query, &[], body).await
}

/// [`send`] with extra request headers.
pub async fn send_with(
    authority: &str,
    tls: Option<&ClientTls>,
    method: http::Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let mut request = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into()))?;
    match tls {
        None => exchange(TokioIo::new(stream), request).await,
        Some(tls) => {
            let host = authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority);
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
            let stream = tls.connector.connect(name, stream).await?;
            exchange(TokioIo::new(stream), request).await
        }
    }
}

async fn exchange<I>(io: I, request: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
