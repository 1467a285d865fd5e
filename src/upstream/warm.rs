//! Opening upstream connections ahead of demand, and closing idle ones.
//!
//! A fresh sidecar (or one whose credential just rotated, or whose policy was
//! reloaded) has an empty pool, so its first message would pay the whole
//! upstream handshake: TCP, TLS, EHLO twice, AUTH — most of a message's time
//! against a provider tens of milliseconds away. Once the credential is
//! ready, `upstream.reuse.prewarm` authenticated connections are opened into
//! the pool. It also teaches the runtime what the upstream offers (SMTPUTF8)
//! before the first client's EHLO.
//!
//! A burst that starts after the idle timeout finds the pool empty again:
//! the first session of it that needs a connection also opens, in parallel,
//! enough for the sessions likely to follow — up to the recent peak of
//! connections in use at once (see [`super::pool::Pool::acquire`]). Sessions
//! of the burst that arrive meanwhile wait for those rather than opening
//! their own.
//!
//! Nothing is sent on an idle connection (no NOOP keep-alive a provider
//! could count as abuse): it is closed with QUIT once idle for
//! `upstream.reuse.idle_timeout` ([`reaper`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::json;

use super::pool::Acquired;
use super::{Connection, UpstreamError};
use crate::credential::Credential;
use crate::runtime::Runtime;

/// Opens `upstream.reuse.prewarm` connections with `cred` into `rt`'s pool
/// (none when reuse is off). Failures are logged and otherwise ignored:
/// sessions connect on demand as before.
pub async fn prewarm(rt: Arc<Runtime>, cred: Arc<Credential>) {
    if rt.refused().is_some() {
        return;
    }
    let n = rt.policy.upstream.reuse.prewarm;
    rt.pool.begin_warm(n);
    for _ in 0..n {
        open_ahead(&rt, &cred, "prewarm").await;
    }
}

/// Opens one connection ahead of demand into the pool (under the cap: none
/// when it is reached), and ends its warming count.
async fn open_ahead(rt: &Arc<Runtime>, cred: &Arc<Credential>, during: &'static str) {
    if rt.refused().is_some() {
        rt.pool.warm_done();
        return;
    }
    let Some(slot) = rt.pool.limiter().try_reserve(false) else {
        rt.pool.warm_done();
        return;
    };
    match rt.connector.connect(cred, slot).await {
        Ok(conn) => {
            rt.learn_upstream(conn.capabilities());
            metrics::counter!("smtpbind_upstream_prewarm_total", "result" => "ok").increment(1);
            let unwanted = rt.pool.checkin(conn);
            rt.pool.warm_done();
            if let Some(conn) = unwanted {
                // Not wanted (rotated meanwhile, or the pool is full).
                conn.quit().await;
            }
        }
        Err(e) => {
            rt.pool.warm_done();
            metrics::counter!("smtpbind_upstream_prewarm_total", "result" => "error").increment(1);
            rt.process.log.warn(
                "upstream_error",
                json!({ "during": during, "upstream": rt.policy.upstream.address, "error": e.to_string() }),
            );
        }
    }
}

/// A connection for a session: from the pool, or newly opened (starting
/// the burst warm-up when the pool was cold), or [`UpstreamError::Busy`]
/// when the cap stayed reached for `upstream.connect_timeout`.
pub async fn acquire(
    rt: &Arc<Runtime>,
    cred: &Arc<Credential>,
) -> Result<Connection, UpstreamError> {
    // Rule 7: a policy refused by the platform's pin never connects.
    if let Some(reason) = rt.refused() {
        return Err(UpstreamError::Unpinned(reason.to_string()));
    }
    let wait = rt.policy.upstream.connect_timeout;
    match rt.pool.acquire(cred.pin(), wait).await {
        Acquired::Pooled(conn) => Ok(conn),
        Acquired::Busy => Err(UpstreamError::Busy),
        Acquired::Open { slot, warm } => {
            for _ in 0..warm {
                let (rt, cred) = (rt.clone(), cred.clone());
                tokio::spawn(async move { open_ahead(&rt, &cred, "burst").await });
            }
            if warm > 0 {
                metrics::counter!("smtpbind_upstream_burst_warmups_total").increment(1);
            }
            // Boxed: the handshake's state (TCP, TLS, EHLO, AUTH) is
            // kilobytes, and inline it would be part of every session's
            // future (this is awaited from MAIL), idle sessions included.
            let conn = Box::pin(rt.connector.connect(cred, slot)).await?;
            rt.learn_upstream(conn.capabilities());
            Ok(conn)
        }
    }
}

/// Closes (QUIT) the idle connections of `rt`'s pool as they reach the idle
/// timeout; ends when the runtime is gone (replaced by a reload and its
/// last session ended).
pub async fn reaper(rt: Weak<Runtime>) {
    let period = match rt.upgrade() {
        Some(rt) => (rt.policy.upstream.reuse.idle_timeout / 4).max(Duration::from_millis(250)),
        None => return,
    };
    loop {
        tokio::time::sleep(period).await;
        let Some(rt) = rt.upgrade() else { return };
        for conn in rt.pool.expired() {
            tokio::spawn(conn.quit());
        }
    }
}
