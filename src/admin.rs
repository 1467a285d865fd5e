//! The admin endpoint (hyper 1.x): a small path router.
//!
//! - `GET /healthz`: 200 while the process runs.
//! - `GET /readyz`: 200 only when the policy is loaded, the credential
//!   matches a pin and the listener is bound; otherwise 503 with a one-line
//!   reason — and 503 from the moment shutdown starts.
//! - `GET /metrics`: Prometheus text.
//!
//! Anything else is 404 (405 for other methods). Requests are bounded: only
//! HTTP/1.1 GETs without a body are served, headers are read within 5 s, a
//! connection lives at most 60 s, and at most 64 are open: at capacity the
//! oldest is closed to make room, so held connections never starve probes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::credential::CredentialState;

/// Open admin connections at most; past it the oldest is closed.
pub const MAX_CONNECTIONS: usize = 64;

/// The readiness latch: released when every condition holds.
#[derive(Debug, Default)]
pub struct Readiness {
    listener_bound: AtomicBool,
    shutting_down: AtomicBool,
}

impl Readiness {
    pub fn set_listener_bound(&self) {
        self.listener_bound.store(true, Ordering::SeqCst);
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// `Ok(())` when ready, else the one-line reason.
    pub fn check(&self, credential: &CredentialState) -> Result<(), String> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        if !self.listener_bound.load(Ordering::SeqCst) {
            return Err("listener not bound".into());
        }
        if let Some(reason) = crate::log::congested() {
            return Err(reason);
        }
        match credential {
            // XOAUTH2: ready only while a usable token is held (§9).
            CredentialState::Ready(c) => c.usable().map_err(|r| format!("credential: {r}")),
            // Rule 7: the policy, not the credential, is what is wrong.
            CredentialState::NotReady(crate::audit::Reason::UpstreamNotPinned, text) => {
                Err(text.clone())
            }
            CredentialState::NotReady(reason, text) => {
                Err(format!("credential: {} ({text})", reason.as_str()))
            }
        }
    }
}

/// The wait after a failed accept: 10 ms doubling to 1 s, reset by a
/// success. Logged at the first failure and then once per 64.
#[derive(Debug, Default)]
struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.saturating_sub(1).min(7);
        Duration::from_millis(10u64 << shift).min(Duration::from_secs(1))
    }

    fn should_log(&self) -> bool {
        self.failures % 64 == 1
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// How the admin endpoint reads the credential state in force: from the
/// one published snapshot (`app`), or a test's channel.
pub type CredentialView = Arc<dyn Fn() -> CredentialState + Send + Sync>;

#[derive(Clone)]
pub struct Admin {
    pub readiness: Arc<Readiness>,
    /// The credential state of the snapshot in force (read per request).
    pub credentials: CredentialView,
    pub metrics: Option<PrometheusHandle>,
    /// The info series (§12), rendered from the state in force at each scrape.
    pub info: Arc<crate::telemetry::Info>,
    /// TLS toward the mailer, for its certificate's expiry gauge.
    pub client_tls: Option<Arc<crate::client_tls::ClientTls>>,
    /// The process's log context.
    pub log: crate::log::Context,
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

impl Admin {
    /// Routes one request (no I/O: testable directly).
    pub fn route(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".into(),
            );
        }
        match path {
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => {
                let state = (self.credentials)();
                match self.readiness.check(&state) {
                    Ok(()) => text(StatusCode::OK, "ready\n".into()),
                    Err(reason) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {reason}\n"),
                    ),
                }
            }
            "/metrics" => match &self.metrics {
                Some(handle) => {
                    let credential = (self.credentials)();
                    let pin = credential.ready().map(|c| c.pin());
                    let info = self.info.render(crate::telemetry::Scrape {
                        credential: pin.as_ref(),
                        credential_judged: !matches!(
                            credential,
                            CredentialState::NotReady(crate::audit::Reason::UpstreamNotPinned, _)
                        ),
                        ready: self.readiness.check(&credential).is_ok(),
                        client_tls_not_after: self.client_tls.as_ref().and_then(|t| t.not_after()),
                        now: std::time::SystemTime::now(),
                    });
                    let mut resp = text(StatusCode::OK, handle.render() + &info);
                    resp.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(
                            "text/plain; version=0.0.4; charset=utf-8",
                        ),
                    );
                    resp
                }
                None => text(StatusCode::NOT_FOUND, "metrics not enabled\n".into()),
            },
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }

    async fn handle(self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        Ok(self.route(req.method(), req.uri().path()))
    }

    /// Serves until `shutdown` resolves.
    ///
    /// At most [`MAX_CONNECTIONS`] connections are open; when a new one
    /// arrives at capacity the oldest is closed to make room, so idle or
    /// slow clients holding connections can never starve the kubelet's
    /// probes (each probe is a new, short connection).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        // Oldest first; an entry whose receiver is gone is a finished connection.
        let mut open: VecDeque<oneshot::Sender<()>> = VecDeque::with_capacity(MAX_CONNECTIONS);
        let mut backoff = AcceptBackoff::default();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => {
                            backoff.reset();
                            stream
                        }
                        Err(e) => {
                            // Out of descriptors (EMFILE, ENFILE) or memory:
                            // the pending connection stays queued, so
                            // retrying at once would spin. Close the oldest
                            // connection to free a descriptor for the
                            // probes, then wait (10 ms doubling to 1 s).
                            open.retain(|evict| !evict.is_closed());
                            if let Some(oldest) = open.pop_front() {
                                let _ = oldest.send(());
                                metrics::counter!("smtpbind_admin_evicted_connections_total").increment(1);
                            }
                            metrics::counter!("smtpbind_admin_accept_errors_total").increment(1);
                            let wait = backoff.next();
                            if backoff.should_log() {
                                self.log.warn("admin_accept_error", serde_json::json!({
                                    "error": e.to_string(),
                                    "retry_in_ms": u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                                }));
                            }
                            tokio::select! {
                                () = tokio::time::sleep(wait) => {}
                                _ = &mut shutdown => return,
                            }
                            continue;
                        }
                    };
                    open.retain(|evict| !evict.is_closed());
                    if open.len() >= MAX_CONNECTIONS {
                        if let Some(oldest) = open.pop_front() {
                            let _ = oldest.send(());
                            metrics::counter!("smtpbind_admin_evicted_connections_total").increment(1);
                        }
                    }
                    let (evict, evicted) = oneshot::channel();
                    open.push_back(evict);
                    let admin = self.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| admin.clone().handle(req));
                        let conn = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(5))
                            .max_buf_size(16 * 1024)
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = tokio::time::timeout(Duration::from_secs(60), conn) => {}
                            _ = evicted => {}
                        }
                    });
                }
                _ = &mut shutdown => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Credential;
    use tokio::sync::watch;

    fn admin(state: CredentialState) -> (Admin, watch::Sender<CredentialState>) {
        let (tx, rx) = watch::channel(state);
        (
            Admin {
                readiness: Arc::new(Readiness::default()),
                credentials: Arc::new(move || rx.borrow().clone()),
                metrics: None,
                info: Arc::new(crate::telemetry::Info::new("t")),
                client_tls: None,
                log: crate::log::Context::default(),
            },
            tx,
        )
    }

    #[test]
    fn readiness_latch() {
        let (a, tx) = admin(CredentialState::NotReady(
            crate::audit::Reason::CredentialNotPinned,
            "mounted password sha256:abc matches none".into(),
        ));
        assert_eq!(a.route(&Method::GET, "/healthz").status(), StatusCode::OK);
        assert_eq!(
            a.route(&Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        a.readiness.set_listener_bound();
        assert_eq!(
            a.route(&Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let _ = tx.send(CredentialState::Ready(Arc::new(Credential::from_parts(
            "u", "p",
        ))));
        assert_eq!(a.route(&Method::GET, "/readyz").status(), StatusCode::OK);
        a.readiness.set_shutting_down();
        assert_eq!(
            a.route(&Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(a.route(&Method::GET, "/healthz").status(), StatusCode::OK);
    }

    #[test]
    fn accept_backoff_grows_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let waits: Vec<u64> = (0..10)
            .map(|_| u64::try_from(b.next().as_millis()).unwrap_or(0))
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(10));
        assert!(b.should_log());
    }

    #[test]
    fn unknown_paths_and_methods() {
        let (a, _tx) = admin(CredentialState::NotReady(
            crate::audit::Reason::CredentialMissing,
            "x".into(),
        ));
        assert_eq!(a.route(&Method::GET, "/").status(), StatusCode::NOT_FOUND);
        assert_eq!(
            a.route(&Method::POST, "/healthz").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
