//! Opening upstream connections ahead of demand.
//!
//! A fresh sidecar (or one whose credential just rotated, or whose policy was
//! reloaded) has an empty pool, so its first message would pay the whole
//! upstream handshake: TCP, TLS, EHLO twice, AUTH — most of a message's time
//! against a provider tens of milliseconds away. Once the credential is
//! ready, one authenticated connection is opened into the pool. It also
//! teaches the runtime what the upstream offers (SMTPUTF8) before the first
//! client's EHLO. Nothing is sent on an idle connection (no NOOP keep-alive
//! a provider could count as abuse); it simply ages out of the pool after
//! `upstream.reuse.idle_timeout`.

use std::sync::Arc;

use serde_json::json;

use crate::credential::Credential;
use crate::runtime::Runtime;

/// Opens `upstream.reuse.prewarm` connections with `cred` into `rt`'s pool
/// (none when reuse is off). Failures are logged and otherwise ignored:
/// sessions connect on demand as before.
pub async fn prewarm(rt: Arc<Runtime>, cred: Arc<Credential>) {
    for _ in 0..rt.policy.upstream.reuse.prewarm {
        match rt.connector.connect(&cred).await {
            Ok(conn) => {
                rt.learn_upstream(conn.capabilities());
                metrics::counter!("smtpbind_upstream_prewarm_total", "result" => "ok").increment(1);
                if let Some(conn) = rt.pool.checkin(conn) {
                    // Not wanted (rotated meanwhile, or the pool is full).
                    conn.quit().await;
                }
            }
            Err(e) => {
                metrics::counter!("smtpbind_upstream_prewarm_total", "result" => "error")
                    .increment(1);
                crate::log::warn(
                    "upstream_error",
                    json!({ "during": "prewarm", "upstream": rt.policy.upstream.address, "error": e.to_string() }),
                );
                return;
            }
        }
    }
}
