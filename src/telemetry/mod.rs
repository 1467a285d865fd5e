//! Prometheus metrics (contract §5). Every series carries `tenant` (a
//! global label), names start with `smtpbind_`. Counters are incremented at
//! the exact point of the outcome, in the module that decides it.

mod info;

pub use info::{seconds_until, Info, Scrape};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Connect-time buckets: 1 ms to 10 s.
const CONNECT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global recorder. Returns `None` if one is already installed
/// (a second `run` in the same process, as in unit tests).
pub fn install(tenant: &str) -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .add_global_label("tenant", tenant)
        .set_buckets_for_metric(
            Matcher::Full("smtpbind_upstream_connect_seconds".into()),
            CONNECT_BUCKETS,
        )
        .ok()?;
    let handle = builder.install_recorder().ok()?;
    describe();
    metrics::gauge!("smtpbind_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Some(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "smtpbind_sessions_total",
        "Client sessions by how they ended"
    );
    describe_counter!(
        "smtpbind_messages_total",
        "Messages by outcome: relayed (upstream 250), rejected (by policy), failed (upstream refused or broke)"
    );
    describe_counter!(
        "smtpbind_rejections_total",
        "Refused session steps by reason"
    );
    describe_counter!(
        "smtpbind_upstream_auth_failures_total",
        "Upstream AUTH attempts with the mounted credential that failed"
    );
    describe_histogram!(
        "smtpbind_upstream_connect_seconds",
        Unit::Seconds,
        "Time to a ready upstream connection: TCP, TLS, EHLO, AUTH"
    );
    describe_counter!(
        "smtpbind_message_bytes_total",
        Unit::Bytes,
        "Bytes of relayed messages"
    );
    describe_gauge!("smtpbind_active_sessions", "Client sessions open now");
    describe_counter!(
        "smtpbind_credential_reloads_total",
        "Credential (re)loads by result"
    );
    describe_counter!("smtpbind_policy_reloads_total", "Policy reloads by result");
    describe_counter!(
        "smtpbind_upstream_reuse_total",
        "Upstream connections taken from the idle pool"
    );
    describe_gauge!(
        "smtpbind_upstream_connections",
        "Upstream connections open now: being opened, in use, idle in the pool"
    );
    describe_counter!(
        "smtpbind_upstream_waits_total",
        "Sessions that waited for an upstream connection, by result: pooled | opened | timeout"
    );
    describe_counter!(
        "smtpbind_upstream_replays_total",
        "Envelopes replayed on a new upstream connection: the pooled one died under them"
    );
    describe_counter!(
        "smtpbind_upstream_burst_warmups_total",
        "Cold bursts that opened upstream connections ahead of demand"
    );
    describe_counter!(
        "smtpbind_admin_evicted_connections_total",
        "Admin connections closed to make room for a new one (at 64)"
    );
    describe_counter!(
        "smtpbind_oauth_token_refreshes_total",
        "OAuth2 token fetches (the first counts) by result: ok | error"
    );
    describe_gauge!(
        "smtpbind_oauth_token_expiry_seconds",
        Unit::Seconds,
        "Seconds the OAuth2 token in hand may still be used; 0 without one"
    );
    describe_counter!(
        "smtpbind_rate_limited_total",
        "MAILs over limits.rate: delayed (waited, went on) | refused (451 4.7.0)"
    );
    describe_gauge!("smtpbind_build_info", "Build information");
}
