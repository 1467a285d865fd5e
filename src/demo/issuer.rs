//! A small OAuth 2.0 token endpoint standing in for Microsoft's and
//! Google's, for `smtpbind demo --xoauth2` and the tests: real HTTPS (a
//! generated CA), both grants of contract §9 — `client_credentials` with a
//! client id and secret, and `jwt_bearer` with an RS256 assertion whose
//! signature (against the service account's public key) and claims (`iss`,
//! `sub`, `aud` = this endpoint, `scope`, `iat`/`exp`) it verifies — issuing
//! short-lived random tokens. The capture upstream checks `AUTH XOAUTH2`
//! tokens against it ([`Tokens::validate`]). Test switches: [`Issuer::set_down`]
//! (answers 503) and [`Tokens::revoke_all`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::certs::Pki;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// What Gmail sends as the `334` challenge that refuses a token:
/// base64 of `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`.
pub const XOAUTH2_ERROR_CHALLENGE: &str =
    "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==";

/// A `client_credentials` client (Microsoft 365 app registration).
#[derive(Debug, Clone)]
pub struct OAuthClient {
    /// Provider account its tokens send as (the capture's account name).
    pub account: String,
    pub client_id: String,
    pub client_secret: String,
}

/// A `jwt_bearer` service account (Google), known by its public key.
#[derive(Debug, Clone)]
pub struct ServiceAccountClient {
    pub account: String,
    pub client_email: String,
    /// DER `RSAPublicKey`.
    pub public_key: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub listen: SocketAddr,
    /// `expires_in` of every token.
    pub token_lifetime: Duration,
    pub clients: Vec<OAuthClient>,
    pub service_accounts: Vec<ServiceAccountClient>,
}

/// What a token was issued for.
#[derive(Debug, Clone)]
pub struct Issued {
    pub account: String,
    /// jwt_bearer: the mailbox (`sub`) the token may send as.
    pub subject: Option<String>,
    expires: Instant,
}

#[derive(Default)]
struct Book {
    tokens: HashMap<String, Issued>,
    /// Every token and assertion ever seen (for the tests' secret scan).
    secrets: Vec<String>,
    grants: u64,
    refusals: u64,
    down: bool,
    /// How long each token request takes to answer (a slow endpoint).
    delay: std::time::Duration,
}

/// The issuer's token book, shared with the capture upstream.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Mutex<Book>>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokens(<redacted>)")
    }
}

impl Tokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live (issued, unexpired, not revoked) token's grant.
    pub fn validate(&self, token: &str) -> Option<Issued> {
        let book = self.lock();
        book.tokens
            .get(token)
            .filter(|i| Instant::now() < i.expires)
            .cloned()
    }

    /// An `AUTH XOAUTH2` response (`base64("user=" U "\x01auth=Bearer " T
    /// "\x01\x01")`) with a live token (for a jwt_bearer token, issued for
    /// `U`): the account and the user it sends as.
    pub fn check_xoauth2(&self, response: &str) -> Option<(String, String)> {
        use base64::engine::general_purpose::STANDARD;
        let raw = STANDARD.decode(response.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, auth) = text.strip_suffix("\x01\x01")?.split_once('\x01')?;
        let user = user.strip_prefix("user=")?;
        let issued = self.validate(auth.strip_prefix("auth=Bearer ")?)?;
        if issued.subject.as_deref().is_some_and(|s| s != user) {
            return None;
        }
        Some((issued.account, user.to_string()))
    }

    /// Invalidates every token issued so far (a provider-side revocation).
    pub fn revoke_all(&self) {
        self.lock().tokens.clear();
    }

    /// Tokens granted so far.
    pub fn grants(&self) -> u64 {
        self.lock().grants
    }

    /// Token requests refused (bad client, bad assertion, or down).
    pub fn refusals(&self) -> u64 {
        self.lock().refusals
    }

    /// Every token issued and assertion received: secrets that must never
    /// appear in any output.
    pub fn secrets(&self) -> Vec<String> {
        self.lock().secrets.clone()
    }
}

pub struct Issuer {
    pub addr: SocketAddr,
    /// The CA that verifies this endpoint (the sidecar's `oauth2.ca_file`).
    pub ca_pem: String,
    pub tokens: Tokens,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("{0}")]
    Cert(#[from] crate::certs::CertError),
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

impl Issuer {
    pub async fn start(config: IssuerConfig) -> Result<Issuer, IssuerError> {
        let pki = Pki::generate(
            "smtpbind test issuer CA",
            &["localhost".into(), "127.0.0.1".into()],
        )?;
        let acceptor = TlsAcceptor::from(pki.server_config()?);
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| IssuerError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| IssuerError::Bind(config.listen, e))?;
        let tokens = Tokens::default();
        let endpoint = Arc::new(Endpoint {
            url: format!("https://127.0.0.1:{}/token", addr.port()),
            config,
            tokens: tokens.clone(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, endpoint) = (acceptor.clone(), endpoint.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let endpoint = endpoint.clone();
                        async move { Ok::<_, Infallible>(endpoint.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(Issuer {
            addr,
            ca_pem: pki.ca_pem,
            tokens,
            task,
        })
    }

    /// The token endpoint's URL (`token_url`, also the assertions' `aud`).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/token", self.addr.port())
    }

    /// While down, every request gets `503 temporarily_unavailable`.
    pub fn set_down(&self, down: bool) {
        self.tokens.lock().down = down;
    }

    /// Every later token request is answered after `delay` (healthy but slow).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.tokens.lock().delay = delay;
    }
}

/// The DER `RSAPublicKey` of a PKCS#8 PEM RSA private key (to register a
/// service account from its key file's `private_key`).
pub fn rsa_public_key(pkcs8_pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pkcs8_pem.as_bytes()).ok()?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).ok()?;
    Some(
        ring::signature::KeyPair::public_key(&pair)
            .as_ref()
            .to_vec(),
    )
}

struct Endpoint {
    url: String,
    config: IssuerConfig,
    tokens: Tokens,
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

impl Endpoint {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != hyper::Method::POST || req.uri().path() != "/token" {
            return reply(StatusCode::NOT_FOUND, json!({ "error": "not_found" }));
        }
        let Ok(body) = Limited::new(req.into_body(), 64 * 1024).collect().await else {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({ "error": "invalid_request" }),
            );
        };
        let form: HashMap<String, String> = form_urlencoded::parse(&body.to_bytes())
            .into_owned()
            .collect();
        let delay = self.tokens.lock().delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.tokens.lock().down {
            self.tokens.lock().refusals += 1;
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "error": "temporarily_unavailable" }),
            );
        }
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let granted = match field("grant_type") {
            "client_credentials" => self.client_credentials(&form),
            JWT_BEARER => {
                self.tokens
                    .lock()
                    .secrets
                    .push(field("assertion").to_string());
                self.jwt_bearer(field("assertion"))
            }
            _ => Err("unsupported_grant_type"),
        };
        match granted {
            Ok(issued) => {
                let token = random_token();
                let mut book = self.tokens.lock();
                book.grants += 1;
                book.secrets.push(token.clone());
                book.tokens.insert(token.clone(), issued);
                reply(
                    StatusCode::OK,
                    json!({
                        "token_type": "Bearer",
                        "expires_in": self.config.token_lifetime.as_secs(),
                        "access_token": token,
                    }),
                )
            }
            Err(code) => {
                self.tokens.lock().refusals += 1;
                reply(StatusCode::BAD_REQUEST, json!({ "error": code }))
            }
        }
    }

    fn issued(&self, account: &str, subject: Option<String>) -> Issued {
        Issued {
            account: account.to_string(),
            subject,
            expires: Instant::now() + self.config.token_lifetime,
        }
    }

    fn client_credentials(&self, form: &HashMap<String, String>) -> Result<Issued, &'static str> {
        let get = |k: &str| form.get(k).map(String::as_str);
        let client = self
            .config
            .clients
            .iter()
            .find(|c| {
                get("client_id") == Some(c.client_id.as_str())
                    && get("client_secret") == Some(c.client_secret.as_str())
            })
            .ok_or("invalid_client")?;
        if get("scope").is_none_or(str::is_empty) {
            return Err("invalid_scope");
        }
        Ok(self.issued(&client.account, None))
    }

    fn jwt_bearer(&self, assertion: &str) -> Result<Issued, &'static str> {
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return Err("invalid_grant");
        };
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| "invalid_grant");
        let header: serde_json::Value =
            serde_json::from_slice(&decode(header)?).map_err(|_| "invalid_grant")?;
        if header["alg"] != "RS256" {
            return Err("invalid_grant");
        }
        let claims: serde_json::Value =
            serde_json::from_slice(&decode(claims)?).map_err(|_| "invalid_grant")?;
        let account = self
            .config
            .service_accounts
            .iter()
            .find(|a| claims["iss"] == a.client_email.as_str())
            .ok_or("invalid_client")?;
        let signed = &assertion[..assertion.len() - signature.len() - 1];
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &account.public_key)
            .verify(signed.as_bytes(), &decode(signature)?)
            .map_err(|_| "invalid_grant")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap_or(0),
            claims["exp"].as_u64().unwrap_or(0),
        );
        let subject = claims["sub"].as_str().filter(|s| !s.is_empty());
        let scope_ok = claims["scope"].as_str().is_some_and(|s| !s.is_empty());
        if claims["aud"] != self.url.as_str()
            || !scope_ok
            || exp <= now
            || iat > now + 60
            || exp.saturating_sub(iat) > 3600
        {
            return Err("invalid_grant");
        }
        let subject = subject.ok_or("invalid_grant")?.to_string();
        Ok(self.issued(&account.account, Some(subject)))
    }
}

fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 24];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    format!("tok.{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_challenge_is_gmails() {
        use base64::engine::general_purpose::STANDARD;
        let json = STANDARD.decode(XOAUTH2_ERROR_CHALLENGE).expect("base64");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(v["status"], "401");
    }

    #[test]
    fn xoauth2_responses() {
        let tokens = Tokens::default();
        let issued = |subject: Option<&str>| Issued {
            account: "acct".into(),
            subject: subject.map(str::to_string),
            expires: Instant::now() + Duration::from_secs(60),
        };
        tokens.lock().tokens.insert("t1".into(), issued(None));
        tokens
            .lock()
            .tokens
            .insert("t2".into(), issued(Some("a@x")));
        let payload = |u: &str, t: &str| crate::identity::xoauth2_payload(u, t).to_string();
        assert_eq!(
            tokens.check_xoauth2(&payload("b@x", "t1")),
            Some(("acct".into(), "b@x".into()))
        );
        assert!(tokens.check_xoauth2(&payload("a@x", "t2")).is_some());
        assert!(tokens.check_xoauth2(&payload("b@x", "t2")).is_none());
        assert!(tokens.check_xoauth2(&payload("b@x", "t3")).is_none());
        assert!(tokens.check_xoauth2("not base64!").is_none());
        tokens.revoke_all();
        assert!(tokens.check_xoauth2(&payload("b@x", "t1")).is_none());
    }
}
