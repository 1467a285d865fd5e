//! STARTTLS toward the mailer (RFC 3207, contract §11) and the handshake
//! of the implicit-TLS listener.
//!
//! After `220` the session restarts: the bytes the client sent after
//! `STARTTLS` in plain text are discarded, never executed (the server side
//! of CVE-2011-0411); the transaction, the EHLO and the AUTH binding are
//! forgotten, so the client must EHLO (and AUTH) again over TLS. The
//! handshake is bounded by `command_timeout`; a client that sends anything
//! but a ClientHello, or never finishes, ends the session.

use serde_json::json;

use super::{Flow, Outcome, Session, Stage};
use crate::client_tls::ClientStream;
use crate::smtp::line::LineBuffer;
use crate::smtp::reply::local;

impl Session {
    /// STARTTLS is advertised (and accepted) now.
    pub(super) fn offers_starttls(&self) -> bool {
        !self.io.is_tls() && self.entry.tls.as_ref().is_some_and(|t| t.offers_starttls())
    }

    /// `starttls: require` and no TLS yet: most commands get `530 5.7.0`.
    pub(super) fn tls_first(&self) -> bool {
        !self.io.is_tls()
            && self
                .entry
                .tls
                .as_ref()
                .is_some_and(|t| t.requires_starttls())
    }

    pub(super) async fn starttls(&mut self) -> Flow {
        if self.io.is_tls() {
            return self.bad_command(local::tls_already_active());
        }
        if !self.offers_starttls() {
            return self.bad_command(local::starttls_not_offered());
        }
        if !self.greeted() {
            return self.bad_command(local::need_ehlo());
        }
        if self.stage.tx().is_some() {
            return self.bad_command(local::starttls_in_transaction());
        }
        self.reply(local::starttls_ready());
        if self.flush().await.is_err() {
            return Flow::End(Outcome::Error);
        }
        // Whatever followed STARTTLS in plain text is dropped unread.
        self.inbuf = LineBuffer::new();
        if let Err(outcome) = self.handshake().await {
            return Flow::End(outcome);
        }
        // Nothing learnt before TLS counts.
        self.reset_transaction().await;
        self.stage = Stage::Connected;
        self.smtputf8_offered = false;
        self.info.client_identity = None;
        Flow::Continue
    }

    /// The TLS handshake on the client socket, bounded by `command_timeout`.
    pub(super) async fn handshake(&mut self) -> Result<(), Outcome> {
        let (Some(tls), Some(tcp)) = (self.entry.tls.clone(), self.io.take_plain()) else {
            return Err(Outcome::Error);
        };
        let timeout = self.rt.policy.limits.command_timeout;
        let (outcome, error) = match tokio::time::timeout(timeout, tls.acceptor().accept(tcp)).await
        {
            Ok(Ok(stream)) => {
                self.io = ClientStream::Tls(Box::new(stream));
                self.info.client_sni = self.io.sni();
                return Ok(());
            }
            Ok(Err(e)) => (Outcome::Error, e.to_string()),
            Err(_) => (
                Outcome::Timeout,
                "handshake not finished within command_timeout".into(),
            ),
        };
        self.info.log.warn(
            "client_tls_handshake",
            json!({ "session": self.info.session, "peer": self.info.peer, "error": error }),
        );
        Err(outcome)
    }
}
