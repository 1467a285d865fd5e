//! BDAT upstream (RFC 3030): when the upstream's EHLO offered CHUNKING and
//! PIPELINING (and `upstream.chunking` is `auto`), the decoded message —
//! whether the client used DATA or BDAT — goes upstream as raw chunks
//! instead of dot-stuffed DATA, so no 354 round trip is paid.
//!
//! Non-last chunks (`BDAT <n>`) are written without waiting for their
//! replies; replies that have already arrived are consumed after each one,
//! and at most [`MAX_OWED`] are ever outstanding. The end is one
//! `BDAT <n> LAST`, sent only when the whole message passed the policy; a
//! refusal decided earlier drops the connection, so the upstream never
//! receives a LAST for that message. The client sees 250 only when every
//! chunk reply was 2xx and the LAST reply is 250.

use super::message::{Inbound, Refusal, Upstream};
use super::Session;
use crate::audit::MessageResult;
use crate::policy::Chunking;
use crate::smtp::reply::{local, Reply};

/// Chunk replies owed by the upstream before the next chunk waits for one.
const MAX_OWED: usize = 8;

impl Session {
    /// True when this message goes upstream as BDAT.
    pub(super) fn upstream_chunking(&self) -> bool {
        self.rt.policy.upstream.chunking == Chunking::Auto
            && self.upstream.as_ref().is_some_and(|c| {
                let caps = c.capabilities();
                caps.chunking && caps.pipelining
            })
    }

    /// Sends `msg.wire` as one non-last chunk and consumes the replies that
    /// have arrived; a failing reply fails the message and drops the
    /// connection (no further chunk, never a LAST).
    pub(super) async fn send_chunk(&mut self, msg: &mut Inbound) {
        let Some(conn) = self.upstream.as_mut() else {
            msg.upstream.refuse(Refusal::UpstreamLost);
            return;
        };
        let head = format!("BDAT {}\r\n", msg.wire.len());
        // From here the upstream holds part of this message: an abort must
        // drop the connection.
        let owed = match msg.upstream {
            Upstream::Chunks { owed, .. } => owed,
            _ => 0,
        };
        msg.upstream = Upstream::Chunks { open: true, owed };
        let sent = match conn.write(head.as_bytes()).await {
            Ok(()) => conn.write(&msg.wire).await,
            Err(e) => Err(e),
        };
        msg.wire.clear();
        if let Err(e) = sent {
            self.lose_upstream_mid_message(msg, &e);
            return;
        }
        msg.upstream = Upstream::Chunks {
            open: true,
            owed: owed + 1,
        };
        loop {
            let Some(conn) = self.upstream.as_mut() else {
                return;
            };
            let Upstream::Chunks { owed, .. } = msg.upstream else {
                return;
            };
            let got = if owed >= MAX_OWED {
                // Bounded: wait for the oldest reply before sending more.
                match conn.flush().await {
                    Ok(()) => conn.read_reply().await.map(Some),
                    Err(e) => Err(e),
                }
            } else {
                conn.try_read_reply().await
            };
            match got {
                Ok(None) => return,
                Ok(Some(reply)) => {
                    msg.upstream = Upstream::Chunks {
                        open: true,
                        owed: owed.saturating_sub(1),
                    };
                    if !(200..300).contains(&reply.code) {
                        self.upstream = None;
                        msg.upstream.refuse(Refusal::Upstream(reply));
                        return;
                    }
                }
                Err(e) => {
                    self.lose_upstream_mid_message(msg, &e);
                    return;
                }
            }
        }
    }

    /// The end of an accepted message: `BDAT <n> LAST` with the rest, then
    /// every owed reply in order. The client gets the first failing reply,
    /// or the LAST reply.
    pub(super) async fn finish_chunks(
        &mut self,
        mut owed: usize,
        wire: &[u8],
    ) -> (MessageResult, Reply) {
        let Some(conn) = self.upstream.as_mut() else {
            return (MessageResult::Failed, local::upstream_failed());
        };
        let head = format!("BDAT {} LAST\r\n", wire.len());
        let sent = match conn.write(head.as_bytes()).await {
            Ok(()) => match conn.write(wire).await {
                Ok(()) => conn.flush().await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            self.log_upstream_error(&e);
            self.upstream = None;
            return (MessageResult::Failed, local::upstream_failed());
        }
        loop {
            let Some(conn) = self.upstream.as_mut() else {
                return (MessageResult::Failed, local::upstream_failed());
            };
            let reply = match conn.read_reply().await {
                Ok(reply) => reply,
                Err(e) => {
                    self.log_upstream_error(&e);
                    self.upstream = None;
                    return (MessageResult::Failed, local::upstream_failed());
                }
            };
            if owed > 0 {
                owed -= 1;
                if !(200..300).contains(&reply.code) {
                    // A refused chunk: the transaction failed upstream.
                    self.upstream = None;
                    return (MessageResult::Failed, reply);
                }
                continue;
            }
            if reply.code == 250 {
                conn.set_clean(true);
                return (MessageResult::Relayed, reply);
            }
            // A refused LAST: the connection stays unclean, so the
            // transaction reset sends RSET (or drops it if RSET fails).
            return (MessageResult::Failed, reply);
        }
    }
}
