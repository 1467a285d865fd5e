//! The webhook's HTTPS server (hyper 1 over tokio-rustls): `/mutate`,
//! `/validate`, `/healthz`, `/readyz`, `/metrics` on one port.
//!
//! Bounds: a request body of at most [`MAX_BODY`] (400 past it, announced or
//! not), TLS handshake, request headers and body each within a timeout, and
//! at most [`MAX_CONNECTIONS`] connections. At capacity the oldest
//! connection that is not in the middle of a request (idle, handshaking or
//! still sending headers) is closed to make room, so held-open connections
//! never starve the kubelet's probes or the API server.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use super::review::{Endpoint, Webhook};
use crate::log;

/// Largest AdmissionReview body (the API server's own limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
pub const MAX_CONNECTIONS: usize = 512;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections may finish their request after shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Installs the webhook's Prometheus recorder (`None` if one is installed).
pub fn install_metrics() -> Option<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("smtpbind_webhook_request_duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .ok()?
        .install_recorder()
        .ok()?;
    metrics::describe_counter!(
        "smtpbind_webhook_requests_total",
        "Admission requests by endpoint and result (patched, unchanged, allowed, refused, bad_request)"
    );
    metrics::describe_histogram!(
        "smtpbind_webhook_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from the request's headers to its response, by endpoint"
    );
    metrics::describe_counter!(
        "smtpbind_webhook_certificate_reloads_total",
        "Serving certificate reloads by result"
    );
    metrics::gauge!("smtpbind_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Some(handle)
}

/// One connection as the capacity bound sees it.
#[derive(Debug, Default)]
struct Conn {
    /// Not inside a request: may be closed to make room.
    idle: AtomicBool,
    close: Notify,
}

#[derive(Debug, Default)]
struct Conns {
    live: Mutex<Vec<Weak<Conn>>>,
}

impl Conns {
    /// A slot for a new connection, closing the oldest idle one at capacity;
    /// `None` when every connection is inside a request.
    fn admit(&self) -> Option<Arc<Conn>> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|w| w.strong_count() > 0);
        if live.len() >= MAX_CONNECTIONS {
            let victim = live
                .iter()
                .position(|w| w.upgrade().is_some_and(|c| c.idle.load(Ordering::SeqCst)))?;
            if let Some(c) = live.remove(victim).upgrade() {
                c.close.notify_one();
            }
        }
        let conn = Arc::new(Conn {
            idle: AtomicBool::new(true),
            close: Notify::new(),
        });
        live.push(Arc::downgrade(&conn));
        Some(conn)
    }

    fn close_all(&self) {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        for c in live.iter().filter_map(Weak::upgrade) {
            c.close.notify_one();
        }
    }

    fn is_empty(&self) -> bool {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.iter().all(|w| w.strong_count() == 0)
    }
}

/// Marks a connection busy for as long as it lives.
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: &Arc<Conn>) -> Busy {
        conn.idle.store(false, Ordering::SeqCst);
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle.store(true, Ordering::SeqCst);
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub struct Shared {
    pub webhook: Webhook,
    pub metrics: Option<PrometheusHandle>,
    pub shutting_down: AtomicBool,
    /// The serving pair, for `smtpbind_webhook_certificate_expiry_seconds`.
    pub certs: Option<Arc<super::tls::Reloading>>,
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

fn text(status: StatusCode, body: String) -> Resp {
    respond(status, "text/plain; charset=utf-8", body)
}

fn bad_request(endpoint: Endpoint, reason: &str) -> Resp {
    metrics::counter!("smtpbind_webhook_requests_total", "endpoint" => endpoint.as_str(), "result" => "bad_request").increment(1);
    log::warn(
        "admission",
        json!({ "endpoint": endpoint.as_str(), "result": "bad_request", "reason": reason }),
    );
    text(StatusCode::BAD_REQUEST, format!("{reason}\n"))
}

impl Shared {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Resp, Infallible> {
        let endpoint = match req.uri().path() {
            "/mutate" => Endpoint::Mutate,
            "/validate" => Endpoint::Validate,
            path => return Ok(self.route_get(req.method(), path)),
        };
        if req.method() != Method::POST {
            return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "POST only\n".into()));
        }
        let started = Instant::now();
        let announced = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_BODY as u64) {
            return Ok(bad_request(endpoint, "body larger than 3 MiB"));
        }
        let body = match tokio::time::timeout(
            BODY_TIMEOUT,
            Limited::new(req.into_body(), MAX_BODY).collect(),
        )
        .await
        {
            Err(_) => return Ok(bad_request(endpoint, "body not received in time")),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Ok(bad_request(endpoint, "body larger than 3 MiB"))
            }
            Ok(Err(_)) => return Ok(bad_request(endpoint, "body could not be read")),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let resp = match self.webhook.review(endpoint, &body) {
            Ok(answer) => {
                metrics::counter!("smtpbind_webhook_requests_total", "endpoint" => endpoint.as_str(), "result" => answer.result).increment(1);
                respond(StatusCode::OK, "application/json", answer.body)
            }
            Err(e) => bad_request(endpoint, &e.0),
        };
        metrics::histogram!("smtpbind_webhook_request_duration_seconds", "endpoint" => endpoint.as_str())
            .record(started.elapsed().as_secs_f64());
        Ok(resp)
    }

    /// The probes and metrics (no I/O: testable directly).
    pub fn route_get(&self, method: &Method, path: &str) -> Resp {
        let readable = method == Method::GET || method == Method::HEAD;
        let (status, body) = match path {
            _ if !readable => (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
            "/healthz" => (StatusCode::OK, "ok\n"),
            "/readyz" if self.shutting_down.load(Ordering::SeqCst) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: shutting down\n",
            ),
            // The certificate is loaded before the port is bound.
            "/readyz" => (StatusCode::OK, "ready\n"),
            "/metrics" if self.metrics.is_none() => {
                (StatusCode::NOT_FOUND, "metrics not enabled\n")
            }
            "/metrics" => {
                let mut text = self
                    .metrics
                    .as_ref()
                    .map(|h| h.render())
                    .unwrap_or_default();
                if let Some(not_after) = self.certs.as_ref().and_then(|c| c.not_after()) {
                    let left =
                        crate::telemetry::seconds_until(std::time::SystemTime::now(), not_after);
                    text.push_str(
                        "# HELP smtpbind_webhook_certificate_expiry_seconds Seconds until the serving certificate in use expires (negative once expired)\n\
                         # TYPE smtpbind_webhook_certificate_expiry_seconds gauge\n",
                    );
                    text.push_str(&format!(
                        "smtpbind_webhook_certificate_expiry_seconds {left}\n"
                    ));
                }
                return respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text,
                );
            }
            _ => (StatusCode::NOT_FOUND, "not found\n"),
        };
        text(status, body.to_string())
    }
}

/// Serves until `shutdown` resolves and `lame_duck` has passed (answering
/// `/readyz` with 503 meanwhile), then lets requests in flight finish (up to 10 s).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()>,
    lame_duck: Duration,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let conns = Arc::new(Conns::default());
    tokio::pin!(shutdown);
    // After SIGTERM: not ready, but still answering for `lame_duck`, while
    // the endpoints controller takes the pod out of the Service (the API
    // server may still open connections to it meanwhile).
    let stop = tokio::time::sleep(Duration::MAX);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Some(conn) = conns.admit() else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, acceptor.clone(), shared.clone(), conn));
            }
            _ = &mut shutdown, if !shared.shutting_down.load(Ordering::SeqCst) => {
                shared.shutting_down.store(true, Ordering::SeqCst);
                log::info("shutdown", json!({ "message": "not ready; serving until the lame-duck period ends", "seconds": lame_duck.as_secs_f64() }));
                stop.as_mut().reset(tokio::time::Instant::now() + lame_duck);
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    conns.close_all();
    let deadline = Instant::now() + DRAIN;
    while !conns.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    conn: Arc<Conn>,
) {
    let tls = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => match r {
            Ok(Ok(tls)) => tls,
            _ => return,
        },
        _ = conn.close.notified() => return,
    };
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let busy = Busy::new(&service_conn);
        let shared = shared.clone();
        async move {
            let resp = shared.handle(req).await;
            drop(busy);
            resp
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        _ = conn.close.notified() => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, served).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bound at capacity, and its connections (all idle).
    fn full() -> (Conns, Vec<Arc<Conn>>) {
        let conns = Conns::default();
        let held = (0..MAX_CONNECTIONS)
            .map(|_| conns.admit().expect("below capacity"))
            .collect();
        (conns, held)
    }

    #[tokio::test]
    async fn at_capacity_the_oldest_idle_connection_makes_room() {
        let (conns, held) = full();
        // the first one is inside a request: not evictable
        let busy = Busy::new(&held[0]);
        let newcomer = conns.admit().expect("room made");
        assert!(newcomer.idle.load(Ordering::SeqCst));
        // the oldest idle one (the second) was told to close, the busy one was not
        let told = |c: &Arc<Conn>| {
            let notified = c.close.notified();
            tokio::pin!(notified);
            notified.as_mut().enable()
        };
        assert!(told(&held[1]));
        assert!(!told(&held[0]));
        drop(busy);
        assert!(held[0].idle.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn at_capacity_with_every_connection_busy_the_newcomer_waits_outside() {
        let (conns, held) = full();
        let _busy: Vec<Busy> = held.iter().map(Busy::new).collect();
        assert!(conns.admit().is_none());
        drop(held);
    }
}
