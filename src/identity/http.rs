//! The token endpoint client: one RFC 6749 form POST over verified TLS
//! (rustls; `ca_file` or the webpki roots), HTTP/1.1 with hyper's
//! connection-level client. Every step is bounded: connect and the whole
//! exchange by a timeout, the response body by size.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::IdentityError;

/// Largest token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Connect, TLS, request and response together.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

pub struct TokenEndpoint {
    url: String,
    host: String,
    port: u16,
    path: String,
    tls: TlsConnector,
    server_name: ServerName<'static>,
}

impl TokenEndpoint {
    pub fn new(
        url: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<TokenEndpoint, IdentityError> {
        let bad = |m: &str| IdentityError::Config(format!("token_url: {m}"));
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("must be https"));
        }
        let authority = uri.authority().ok_or_else(|| bad("missing host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(443);
        let server_name = ServerName::try_from(host.clone()).map_err(|_| bad("bad host"))?;
        let path = uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let config = crate::upstream::tls::client_config(ca_file)
            .map_err(|e| IdentityError::Config(format!("ca_file: {e}")))?;
        Ok(TokenEndpoint {
            url: url.to_string(),
            host,
            port,
            path,
            tls: TlsConnector::from(config),
            server_name,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// POSTs `form` (already encoded; holds a secret) and returns the status
    /// and the body.
    pub async fn post_form(&self, form: &str) -> Result<(StatusCode, Bytes), IdentityError> {
        tokio::time::timeout(EXCHANGE_TIMEOUT, self.exchange(form))
            .await
            .map_err(|_| IdentityError::Endpoint("timed out".into()))?
    }

    async fn exchange(&self, form: &str) -> Result<(StatusCode, Bytes), IdentityError> {
        let fail = |m: String| IdentityError::Endpoint(m);
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| fail(format!("connect: {}", e.kind())))?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| fail(format!("TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| fail(format!("HTTP: {e}")))?;
        let driver = tokio::spawn(conn);
        let host = if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.path.as_str())
            .header(hyper::header::HOST, host)
            .header(
                hyper::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("smtpbind/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::copy_from_slice(form.as_bytes())))
            .map_err(|e| fail(format!("request: {e}")))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| fail(format!("HTTP: {e}")))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|_| {
                    fail(format!(
                        "response larger than {MAX_RESPONSE_BYTES} bytes or cut short"
                    ))
                })?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        driver.abort();
        result
    }
}
