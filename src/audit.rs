//! Audit events (contract §6): one per message, one per rejected session
//! step, one per credential or policy change. Every event carries the
//! session, the bound client identity (username only), the credential's
//! short pin and the upstream; message events add the sender domain, the
//! recipient count, the size and the upstream's final reply line (its queue id).

use serde_json::{json, Value};

use crate::log;

/// Who and where: the part every event of one session shares.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub session: String,
    pub peer: String,
    pub client_identity: Option<String>,
    pub credential: Option<String>,
    pub upstream: String,
}

impl SessionInfo {
    fn fields(&self) -> Value {
        json!({
            "session": self.session,
            "peer": self.peer,
            "client_identity": self.client_identity,
            "credential": self.credential,
            "upstream": self.upstream,
        })
    }
}

/// Why something was refused; also the `reason` label of
/// `smtpbind_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    IdentityMismatch,
    AuthRequired,
    SenderNotAllowed,
    HeaderFromMismatch,
    RecipientNotAllowed,
    TooManyRecipients,
    MessageTooLarge,
    BareLf,
    CredentialNotPinned,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::IdentityMismatch => "identity_mismatch",
            Reason::AuthRequired => "auth_required",
            Reason::SenderNotAllowed => "sender_not_allowed",
            Reason::HeaderFromMismatch => "header_from_mismatch",
            Reason::RecipientNotAllowed => "recipient_not_allowed",
            Reason::TooManyRecipients => "too_many_recipients",
            Reason::MessageTooLarge => "message_too_large",
            Reason::BareLf => "bare_lf",
            Reason::CredentialNotPinned => "credential_not_pinned",
        }
    }
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
        b.extend(e);
    }
    base
}

/// A refused step: counts `smtpbind_rejections_total{reason}` and logs it.
pub fn reject(info: &SessionInfo, reason: Reason, reply: &str, extra: Value) {
    metrics::counter!("smtpbind_rejections_total", "reason" => reason.as_str()).increment(1);
    let fields = merge(
        merge(
            info.fields(),
            json!({"reason": reason.as_str(), "reply": reply}),
        ),
        extra,
    );
    log::warn("reject", fields);
}

/// Outcome of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageResult {
    /// The upstream accepted it (250 passed to the client).
    Relayed,
    /// smtpbind refused it by policy; the upstream never received its end.
    Rejected,
    /// The upstream refused it, or broke before accepting it.
    Failed,
}

impl MessageResult {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageResult::Relayed => "relayed",
            MessageResult::Rejected => "rejected",
            MessageResult::Failed => "failed",
        }
    }
}

pub struct MessageEvent<'a> {
    pub result: MessageResult,
    pub sender_domain: &'a str,
    pub recipients: usize,
    pub bytes: u64,
    pub reply: &'a str,
    pub reason: Option<Reason>,
}

/// One event per message, and the message counters.
pub fn message(info: &SessionInfo, m: &MessageEvent<'_>) {
    metrics::counter!("smtpbind_messages_total", "result" => m.result.as_str()).increment(1);
    if m.result == MessageResult::Relayed {
        metrics::counter!("smtpbind_message_bytes_total").increment(m.bytes);
    }
    let level = match m.result {
        MessageResult::Relayed => log::Level::Info,
        _ => log::Level::Warn,
    };
    let fields = merge(
        info.fields(),
        json!({
            "result": m.result.as_str(),
            "sender_domain": m.sender_domain,
            "recipients": m.recipients,
            "bytes": m.bytes,
            "reply": m.reply,
            "reason": m.reason.map(Reason::as_str),
        }),
    );
    log::emit(level, "message", fields);
}
