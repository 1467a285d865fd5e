//! The listener: accepts clients, bounds them with a semaphore permit each
//! (`max_sessions`; past it a client gets `421` and is closed), and gives
//! every session one snapshot of the runtime (policy, connector, pool;
//! see [`crate::runtime`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client_tls::ClientTls;
use crate::runtime::{Channels, Phase};
use crate::session::{Entry, Session};
use crate::smtp::reply::local;

static SESSION_SEQ: AtomicU64 = AtomicU64::new(0);

fn session_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    // A per-process random prefix (RandomState is seeded from the OS) plus a counter.
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        u32::try_from(h.finish() >> 32).unwrap_or(0)
    });
    format!(
        "{prefix:08x}-{:06}",
        SESSION_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A bound listening socket; `implicit`: TLS from the first byte (SMTPS).
pub struct Listener {
    pub socket: TcpListener,
    pub implicit: bool,
}

/// Binds the plain listener and the implicit-TLS one when configured.
/// `ipv6_twin`: a listener on `127.0.0.1:P` gets a twin on `[::1]:P` (where
/// transparent mode's ip6tables REDIRECT lands); without IPv6 that is a
/// warning, not an error.
pub async fn bind(
    plain: SocketAddr,
    implicit: Option<SocketAddr>,
    ipv6_twin: bool,
    log: &crate::log::Context,
) -> Result<Vec<Listener>, crate::Error> {
    let mut listeners = Vec::new();
    for (addr, implicit) in std::iter::once((plain, false)).chain(implicit.map(|a| (a, true))) {
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|error| crate::Error::Bind {
                addr: addr.to_string(),
                error,
            })?;
        let local = socket
            .local_addr()
            .map_err(|e| crate::Error::Runtime(e.to_string()))?;
        listeners.push(Listener { socket, implicit });
        if ipv6_twin && local.ip() == std::net::Ipv4Addr::LOCALHOST {
            let twin = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, local.port()));
            match TcpListener::bind(twin).await {
                Ok(socket) => listeners.push(Listener { socket, implicit }),
                Err(e) => log.warn(
                    "listen_ipv6",
                    serde_json::json!({ "addr": twin.to_string(), "error": e.to_string() }),
                ),
            }
        }
    }
    Ok(listeners)
}

/// What the listeners are bound to, for the `listening` event.
pub fn addresses(listeners: &[Listener]) -> Vec<serde_json::Value> {
    listeners
        .iter()
        .filter_map(|l| {
            let addr = l.socket.local_addr().ok()?;
            Some(serde_json::json!({ "listen": addr.to_string(), "tls": if l.implicit { "implicit" } else { "plain" } }))
        })
        .collect()
}

/// The next connection on any of `listeners`, and whether it is implicit TLS.
async fn accept(listeners: &[Listener]) -> (std::io::Result<(TcpStream, SocketAddr)>, bool) {
    std::future::poll_fn(|cx| {
        for l in listeners {
            if let std::task::Poll::Ready(r) = l.socket.poll_accept(cx) {
                return std::task::Poll::Ready((r, l.implicit));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Accepts sessions on every listener (one `max_sessions` budget for all)
/// until the phase leaves `Running`, then waits for the open sessions (they
/// close themselves per the drain rules), at most `drain` plus a grace second.
pub async fn serve(
    listeners: Vec<Listener>,
    tls: Option<Arc<ClientTls>>,
    channels: Channels,
    drain: Duration,
) {
    let mut phase = channels.phase.clone();
    let max_sessions = channels.runtime.borrow().policy.limits.max_sessions;
    let permits = Arc::new(Semaphore::new(max_sessions));
    let mut sessions = JoinSet::new();
    let active = metrics::gauge!("smtpbind_active_sessions");
    loop {
        tokio::select! {
            (accepted, implicit) = accept(&listeners) => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        let log = channels.runtime.borrow().process.log.clone();
                        log.warn("accept_error", serde_json::json!({ "error": e.to_string() }));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    sessions.spawn(async move {
                        let mut stream = stream;
                        let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, &local::too_many_sessions().to_bytes()).await;
                        metrics::counter!("smtpbind_sessions_total", "result" => "rejected").increment(1);
                    });
                    continue;
                };
                let rt = channels.runtime.borrow().clone();
                let session = Session::new(
                    stream,
                    peer.to_string(),
                    rt,
                    channels.runtime.clone(),
                    channels.phase.clone(),
                    session_id(),
                    Entry { tls: tls.clone(), implicit },
                );
                let active = active.clone();
                sessions.spawn(async move {
                    active.increment(1.0);
                    session.run().await;
                    active.decrement(1.0);
                    drop(permit);
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() != Phase::Running {
                    break;
                }
            }
        }
    }
    drop(listeners);
    let wait_all = async { while sessions.join_next().await.is_some() {} };
    if tokio::time::timeout(drain + Duration::from_secs(2), wait_all)
        .await
        .is_err()
    {
        sessions.abort_all();
    }
}
