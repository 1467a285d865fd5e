//! OAuth 2.0 access tokens for `AUTH XOAUTH2` (contract §9): fetched from
//! the token endpoint, held in memory only, refreshed ahead of expiry by a
//! timer of their own (single flight: one request however many sessions
//! wait), retried with backoff while the endpoint fails.
//!
//! Times: a token fetched at `t` with lifetime `L` is refreshed at
//! `t + L - min(refresh_before, L/2)` and used for new upstream AUTHs and
//! new messages only until `t + L - min(L/10, 30s)` (the request's own
//! start counts as `t`, so clock skew and latency shorten, never lengthen,
//! its use). Past that, without a new token, the credential is not usable:
//! `/readyz` says why and sessions get `421 4.3.0`.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::http::TokenEndpoint;
use super::jwt::ServiceAccount;
use super::{IdentityError, Secret};
use crate::policy::OAuth2Policy;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The timer also wakes this often to keep the expiry gauge current.
const GAUGE_TICK: Duration = Duration::from_secs(1);
/// Largest accepted access token (an XOAUTH2 line must stay under 12 KiB).
const MAX_TOKEN_BYTES: usize = 8192;
/// Longest accepted lifetime, and the one assumed without `expires_in`.
const MAX_LIFETIME: u64 = 24 * 3600;
const DEFAULT_LIFETIME: u64 = 3600;

/// How the token is obtained: the mounted Secret decides the material.
pub enum Grant {
    /// Microsoft 365: `username` is the client id, `password` the secret.
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
    /// Google: `password` is the service account's JSON key.
    JwtBearer(Box<ServiceAccount>),
}

/// A token in hand. `generation` tells tokens apart without comparing them.
#[derive(Clone)]
pub struct Token {
    pub value: Secret,
    pub generation: u64,
    usable_until: Instant,
}

struct State {
    token: Option<Token>,
    refresh_at: Option<Instant>,
    /// Why the last fetch failed (cleared by a success).
    error: Option<String>,
    retry_at: Option<Instant>,
    backoff: Duration,
    generation: u64,
    /// The generation an upstream refused: kept (it still proves the
    /// endpoint answers, so readiness holds) but never handed out again.
    refused: Option<u64>,
    /// Bumped whenever the source is left without a usable token: upstream
    /// connections authenticated before such a gap are not reused after it.
    epoch: u64,
}

pub struct TokenSource {
    endpoint: TokenEndpoint,
    grant: Grant,
    scope: String,
    user: String,
    refresh_before: Duration,
    state: Mutex<State>,
    flight: tokio::sync::Mutex<()>,
    /// Where the refresh lines go (the process's context once shared).
    log: crate::log::Context,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: Option<String>,
}

impl TokenSource {
    pub fn new(policy: &OAuth2Policy, grant: Grant) -> Result<TokenSource, IdentityError> {
        Ok(TokenSource {
            endpoint: TokenEndpoint::new(&policy.token_url, policy.ca_file.as_deref())?,
            grant,
            scope: policy.scope.clone(),
            user: policy.user.clone(),
            refresh_before: policy.refresh_before,
            state: Mutex::new(State {
                token: None,
                refresh_at: None,
                error: None,
                retry_at: None,
                backoff: FIRST_BACKOFF,
                generation: 0,
                refused: None,
                epoch: 0,
            }),
            flight: tokio::sync::Mutex::new(()),
            log: crate::log::Context::default(),
        })
    }

    /// The source writing its lines through `log`.
    pub fn with_log(mut self, log: crate::log::Context) -> TokenSource {
        self.log = log;
        self
    }

    /// Starts the proactive refresh timer (when inside a runtime). The
    /// timer holds only a weak reference: it ends with the credential.
    pub fn start(self) -> Arc<TokenSource> {
        let source = Arc::new(self);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(refresh_timer(Arc::downgrade(&source)));
        }
        source
    }

    /// The mailbox: XOAUTH2 `user=`.
    pub fn user(&self) -> &str {
        &self.user
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token in hand if it may still be used (and no upstream refused it).
    pub fn current(&self) -> Option<Token> {
        let now = Instant::now();
        let state = self.lock();
        state
            .token
            .as_ref()
            .filter(|t| now < t.usable_until && state.refused != Some(t.generation))
            .cloned()
    }

    /// `Ok` while a usable token is held, or while the one an upstream
    /// refused is being replaced by an endpoint that has not failed (a
    /// provider's refusal is not an outage: sessions wait for the single
    /// refresh); else the one-line reason.
    pub fn usable(&self) -> Result<(), String> {
        if self.current().is_some() {
            return Ok(());
        }
        let now = Instant::now();
        let state = self.lock();
        let replacing = state.error.is_none()
            && state
                .token
                .as_ref()
                .is_some_and(|t| now < t.usable_until && state.refused == Some(t.generation));
        if replacing {
            return Ok(());
        }
        Err(match &state.error {
            Some(e) => format!("no valid OAuth2 token: {e}"),
            None => "no valid OAuth2 token yet (fetching)".to_string(),
        })
    }

    pub fn epoch(&self) -> u64 {
        let now = Instant::now();
        let mut state = self.lock();
        state.mark_gap(now);
        state.epoch
    }

    /// A usable token: the one in hand, or one fetched now (single flight;
    /// while the endpoint is in backoff, its last error at once).
    pub async fn token(&self) -> Result<Token, IdentityError> {
        if let Some(t) = self.current() {
            return Ok(t);
        }
        let _flight = self.flight.lock().await;
        if let Some(t) = self.current() {
            return Ok(t);
        }
        self.fetch_unless_backing_off().await
    }

    /// The upstream refused token `rejected`: a newer token if another
    /// session already got one, else a fresh fetch. The refused token is
    /// marked at once (before the flight lock: sessions arriving during the
    /// refresh wait for the new token instead of sending the refused one)
    /// and kept until its replacement arrives, so readiness does not flap.
    pub async fn refresh_rejected(&self, rejected: u64) -> Result<Token, IdentityError> {
        self.mark_refused(rejected);
        let _flight = self.flight.lock().await;
        self.mark_refused(rejected);
        if let Some(t) = self.current() {
            return Ok(t);
        }
        self.fetch_unless_backing_off().await
    }

    fn mark_refused(&self, rejected: u64) {
        let mut state = self.lock();
        if state
            .token
            .as_ref()
            .is_some_and(|t| t.generation == rejected)
        {
            state.refused = Some(rejected);
            state.refresh_at = None;
        }
    }

    /// Called by the timer: fetches when the refresh time (or the retry
    /// time after a failure) has come.
    async fn refresh_if_due(&self) {
        let _flight = self.flight.lock().await;
        let now = Instant::now();
        let due = {
            let state = self.lock();
            state.refresh_at.is_none_or(|at| now >= at) && state.retry_at.is_none_or(|at| now >= at)
        };
        if due {
            let _ = self.fetch().await;
        }
    }

    /// When the timer should next look.
    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let state = self.lock();
        let mut wake = now + GAUGE_TICK;
        for at in [
            state.refresh_at,
            state.retry_at,
            state.token.as_ref().map(|t| t.usable_until),
        ]
        .into_iter()
        .flatten()
        {
            wake = wake.min(at.max(now));
        }
        wake
    }

    fn update_gauge(&self) {
        let left = self
            .current()
            .map(|t| {
                t.usable_until
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
            })
            .unwrap_or(0.0);
        metrics::gauge!("smtpbind_oauth_token_expiry_seconds").set(left);
    }

    async fn fetch_unless_backing_off(&self) -> Result<Token, IdentityError> {
        let backing_off = {
            let state = self.lock();
            match (&state.error, state.retry_at) {
                (Some(e), Some(at)) if Instant::now() < at => Some(e.clone()),
                _ => None,
            }
        };
        match backing_off {
            Some(e) => Err(IdentityError::Endpoint(e)),
            None => self.fetch().await,
        }
    }

    /// One request to the token endpoint (the caller holds the flight lock).
    async fn fetch(&self) -> Result<Token, IdentityError> {
        let started = Instant::now();
        let result = self.request().await;
        let mut state = self.lock();
        match result {
            Ok((value, lifetime)) => {
                let lifetime = Duration::from_secs(lifetime);
                let early = self.refresh_before.min(lifetime / 2);
                let margin = (lifetime / 10).min(Duration::from_secs(30));
                state.generation += 1;
                let token = Token {
                    value,
                    generation: state.generation,
                    usable_until: started + lifetime - margin,
                };
                state.token = Some(token.clone());
                state.refresh_at = Some(started + lifetime - early);
                state.error = None;
                state.retry_at = None;
                state.backoff = FIRST_BACKOFF;
                drop(state);
                metrics::counter!("smtpbind_oauth_token_refreshes_total", "result" => "ok")
                    .increment(1);
                self.log.info(
                    "oauth2_token",
                    serde_json::json!({ "result": "ok", "expires_in": lifetime.as_secs(), "token_url": self.endpoint.url() }),
                );
                self.update_gauge();
                Ok(token)
            }
            Err(e) => {
                let backoff = state.backoff;
                state.retry_at = Some(Instant::now() + backoff);
                state.backoff = (backoff * 2).min(MAX_BACKOFF);
                state.error = Some(format!(
                    "token endpoint: {e} (retrying in {}ms)",
                    backoff.as_millis()
                ));
                drop(state);
                metrics::counter!("smtpbind_oauth_token_refreshes_total", "result" => "error")
                    .increment(1);
                self.log.error(
                    "oauth2_token",
                    serde_json::json!({ "result": "error", "error": e.to_string(), "retry_in_ms": u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX), "token_url": self.endpoint.url() }),
                );
                self.update_gauge();
                Err(e)
            }
        }
    }

    /// The RFC 6749 form of this grant (holds the secret or the assertion).
    fn form(&self) -> Result<Zeroizing<String>, IdentityError> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        match &self.grant {
            Grant::ClientCredentials {
                client_id,
                client_secret,
            } => {
                form.append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", client_id)
                    .append_pair("client_secret", client_secret.expose())
                    .append_pair("scope", &self.scope);
            }
            Grant::JwtBearer(account) => {
                let assertion = account.assertion(&self.user, self.endpoint.url(), &self.scope)?;
                form.append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                    .append_pair("assertion", assertion.expose());
            }
        }
        Ok(Zeroizing::new(form.finish()))
    }

    /// Posts the form, reads the token and its lifetime.
    async fn request(&self) -> Result<(Secret, u64), IdentityError> {
        let form = self.form()?;
        let (status, body) = self.endpoint.post_form(&form).await?;
        if !status.is_success() {
            // Only the OAuth error code is kept: descriptions are free text.
            let code = serde_json::from_slice::<ErrorResponse>(&body)
                .ok()
                .and_then(|e| e.error)
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .unwrap_or_else(|| "no OAuth error code".into());
            return Err(IdentityError::Endpoint(format!(
                "HTTP {}: {code}",
                status.as_u16()
            )));
        }
        let bad = |m: &str| IdentityError::Endpoint(format!("bad token response: {m}"));
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| bad("not JSON"))?;
        let value = Secret::new(parsed.access_token.ok_or_else(|| bad("no access_token"))?);
        if value.expose().is_empty()
            || value.expose().len() > MAX_TOKEN_BYTES
            || !value.expose().bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad("access_token is empty, too long or not printable"));
        }
        if let Some(kind) = &parsed.token_type {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(bad("token_type is not Bearer"));
            }
        }
        let lifetime = match &parsed.expires_in {
            None => DEFAULT_LIFETIME,
            Some(serde_json::Value::Number(n)) => n.as_u64().ok_or_else(|| bad("expires_in"))?,
            Some(serde_json::Value::String(s)) => s.parse().map_err(|_| bad("expires_in"))?,
            Some(_) => return Err(bad("expires_in")),
        };
        if lifetime == 0 {
            return Err(bad("expires_in is 0"));
        }
        Ok((value, lifetime.min(MAX_LIFETIME)))
    }
}

impl State {
    /// Drops a token past its use and records the gap (see `epoch`).
    fn mark_gap(&mut self, now: Instant) {
        if self.token.as_ref().is_some_and(|t| now >= t.usable_until) {
            self.token = None;
            self.epoch += 1;
        }
    }
}

/// The proactive refresh: fetches the first token, then each next one
/// ahead of expiry, whether or not mail flows.
async fn refresh_timer(source: Weak<TokenSource>) {
    loop {
        let wake = match source.upgrade() {
            Some(s) => {
                s.update_gauge();
                s.next_wake()
            }
            None => return,
        };
        tokio::time::sleep_until(wake).await;
        let Some(s) = source.upgrade() else { return };
        let _ = s.epoch();
        s.refresh_if_due().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::issuer::{Issuer, IssuerConfig, OAuthClient};
    use crate::policy::OAuth2Flow;

    struct Setup {
        issuer: Issuer,
        source: Arc<TokenSource>,
        _ca: tempfile::NamedTempFile,
    }

    /// A token source (no timer) against the built-in issuer.
    async fn setup(lifetime: Duration, secret: &str) -> Setup {
        let issuer = Issuer::start(IssuerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            token_lifetime: lifetime,
            clients: vec![OAuthClient {
                account: "acct".into(),
                client_id: "client".into(),
                client_secret: "the-client-secret".into(),
            }],
            service_accounts: Vec::new(),
        })
        .await
        .expect("issuer");
        let ca = tempfile::NamedTempFile::new().expect("tmp");
        std::fs::write(ca.path(), &issuer.ca_pem).expect("ca");
        let policy = OAuth2Policy {
            flow: OAuth2Flow::ClientCredentials,
            token_url: issuer.url(),
            scope: "https://outlook.office365.com/.default".into(),
            user: "billing@acme.example".into(),
            ca_file: Some(ca.path().to_path_buf()),
            refresh_before: Duration::from_secs(300),
        };
        let grant = Grant::ClientCredentials {
            client_id: "client".into(),
            client_secret: Secret::new(secret.into()),
        };
        let source = Arc::new(TokenSource::new(&policy, grant).expect("source"));
        Setup {
            issuer,
            source,
            _ca: ca,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_request_however_many_sessions_wait() {
        let t = setup(Duration::from_secs(60), "the-client-secret").await;
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let s = t.source.clone();
                tokio::spawn(async move { s.token().await.map(|t| t.generation) })
            })
            .collect();
        for w in waiters {
            assert_eq!(w.await.expect("task").expect("token"), 1);
        }
        assert_eq!(t.issuer.tokens.grants(), 1);
        // A refusal seen by many sessions at once: one new token for all.
        let retries: Vec<_> = (0..20)
            .map(|_| {
                let s = t.source.clone();
                tokio::spawn(async move { s.refresh_rejected(1).await.map(|t| t.generation) })
            })
            .collect();
        for r in retries {
            assert_eq!(r.await.expect("task").expect("token"), 2);
        }
        assert_eq!(t.issuer.tokens.grants(), 2);
        assert!(t.source.usable().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refresh_ahead_margin_and_backoff() {
        let t = setup(Duration::from_secs(4), "the-client-secret").await;
        let before = Instant::now();
        t.source.token().await.expect("token");
        let took = before.elapsed();
        {
            let state = t.source.lock();
            let refresh_in = state.refresh_at.expect("refresh_at") - before;
            let usable = state.token.as_ref().expect("token").usable_until - before;
            // refresh_before 300 s is clamped to half the 4 s lifetime; use
            // stops a tenth of the lifetime early, counted from the request.
            let (refresh, until) = (Duration::from_secs(2), Duration::from_millis(3600));
            assert!(
                refresh_in >= refresh && refresh_in <= refresh + took,
                "{refresh_in:?}"
            );
            assert!(usable >= until && usable <= until + took, "{usable:?}");
        }
        // Endpoint down: the failure is kept, retried only after the backoff.
        t.issuer.set_down(true);
        let _flight = t.source.flight.lock().await;
        let e = t.source.fetch().await.err().expect("down");
        drop(_flight);
        assert!(
            e.to_string().contains("HTTP 503: temporarily_unavailable"),
            "{e}"
        );
        let refusals = t.issuer.tokens.refusals();
        let e = t
            .source
            .refresh_rejected(1)
            .await
            .err()
            .expect("backing off");
        assert!(e.to_string().contains("retrying in 500ms"), "{e}");
        assert_eq!(
            t.issuer.tokens.refusals(),
            refusals,
            "no request while backing off"
        );
        assert!(t.source.usable().is_err());
    }

    /// Issue 19: a provider's refusal is not an outage. While the one
    /// refresh after it is under way the source stays usable (readiness)
    /// but never hands out the refused token; a failing endpoint ends that.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_token_keeps_readiness_until_its_refresh_ends() {
        let t = setup(Duration::from_secs(60), "the-client-secret").await;
        let first = t.source.token().await.expect("token");
        t.issuer.set_delay(Duration::from_millis(500));
        let refresh = {
            let s = t.source.clone();
            tokio::spawn(async move { s.refresh_rejected(first.generation).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(t.source.usable().is_ok(), "readiness flapped on a refusal");
        assert!(t.source.current().is_none(), "the refused token handed out");
        // A session needing a token now waits for the refresh.
        let waiting = t.source.token().await.expect("token after the refresh");
        assert_eq!(waiting.generation, 2);
        assert_eq!(refresh.await.expect("task").expect("refresh").generation, 2);
        assert_eq!(t.issuer.tokens.grants(), 2);
        // The endpoint failing the refresh after a refusal: not usable.
        t.issuer.set_delay(Duration::ZERO);
        t.issuer.set_down(true);
        assert!(t.source.refresh_rejected(2).await.is_err());
        assert!(t.source.usable().is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_client_is_named_by_code_never_by_secret() {
        let t = setup(Duration::from_secs(60), "a-wrong-secret").await;
        let e = t.source.token().await.err().expect("refused").to_string();
        assert!(e.contains("HTTP 400: invalid_client"), "{e}");
        let reason = t.source.usable().expect_err("not usable");
        for text in [e, reason] {
            assert!(!text.contains("a-wrong-secret"), "{text}");
        }
    }
}
