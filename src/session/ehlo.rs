//! EHLO and HELO: a fresh start, and what smtpbind offers the client.

use super::{Flow, Mail, Session, Stage};
use crate::policy::ClientAuth;
use crate::smtp::reply::Reply;

impl Session {
    pub(super) async fn ehlo(&mut self, extended: bool) -> Flow {
        self.reset_transaction().await;
        if matches!(self.stage, Stage::Connected) {
            self.stage = if self.rt.policy.client.auth == ClientAuth::None {
                Stage::Bound(Mail::Idle)
            } else {
                Stage::Greeted
            };
        }
        self.smtputf8_offered = false;
        let name = self.rt.policy.upstream.ehlo_name.clone();
        if !extended {
            self.reply(Reply::new(250, name));
            return Flow::Continue;
        }
        let mut lines = vec![
            name,
            "PIPELINING".to_string(),
            format!("SIZE {}", self.rt.policy.limits.max_message_bytes),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
        ];
        // Offered only once an upstream connection showed it is offered
        // there too: SMTPUTF8 must hold end to end (RFC 6531 §3.4).
        self.smtputf8_offered = self.rt.upstream_offers_smtputf8();
        if self.smtputf8_offered {
            lines.push("SMTPUTF8".to_string());
        }
        if self.offers_starttls() {
            lines.push("STARTTLS".to_string());
        }
        // Under `starttls: require` AUTH is not offered before TLS.
        if self.rt.policy.client.auth == ClientAuth::Required && !self.tls_first() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        lines.push("HELP".to_string());
        self.reply(Reply { code: 250, lines });
        Flow::Continue
    }
}
