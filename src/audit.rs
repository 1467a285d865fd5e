//! Audit events (contract §6): one per message, one per rejected session
//! step, one per credential or policy change. Every event carries the
//! session, the bound client identity (username only), the credential's
//! short pin and the upstream; message events add the sender domain, the
//! recipient count, the size and the upstream's final reply line (its queue id).

use serde::Serialize;
use serde_json::Value;

use crate::log;

/// Who and where: the part every event of one session shares (its fields
/// serialize in this order, `null` when unknown).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionInfo {
    pub session: String,
    pub peer: String,
    pub client_identity: Option<String>,
    pub credential: Option<String>,
    pub upstream: String,
    /// The server name the mailer asked for over TLS (contract §11).
    pub client_sni: Option<String>,
    /// Where this session's events are written (the process's context).
    #[serde(skip)]
    pub log: log::Context,
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
    /// NUL in the content, or a header line that is not a header field.
    MalformedContent,
    CredentialNotPinned,
    /// The Secret's `username` or `password` file is not there.
    CredentialMissing,
    /// It is there but cannot be read (permissions, I/O).
    CredentialUnreadable,
    /// It was read but is empty, too large, not UTF-8, or (jwt_bearer) not
    /// a service account key.
    CredentialUnparsable,
    /// Rule 7: the policy names an upstream (or CA, token URL, plain text)
    /// the platform did not pin, so no credential is used at all.
    UpstreamNotPinned,
    /// XOAUTH2: the credential is pinned but no usable token is held (§9).
    TokenUnavailable,
    /// `upstream.max_connections` reached for the whole wait.
    UpstreamBusy,
    /// stdout takes no more: no transaction starts without its audit line.
    LogStalled,
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
            Reason::MalformedContent => "malformed_content",
            Reason::CredentialNotPinned => "credential_not_pinned",
            Reason::CredentialMissing => "credential_missing",
            Reason::UpstreamNotPinned => "upstream_not_pinned",
            Reason::CredentialUnreadable => "credential_unreadable",
            Reason::CredentialUnparsable => "credential_unparsable",
            Reason::TokenUnavailable => "token_unavailable",
            Reason::UpstreamBusy => "upstream_busy",
            Reason::LogStalled => "log_stalled",
        }
    }
}

/// In events, a reason or result is its metric label (one spelling).
impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for MessageResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The fields of a `reject` event.
#[derive(Serialize)]
struct RejectFields<'a> {
    #[serde(flatten)]
    info: &'a SessionInfo,
    reason: Reason,
    reply: &'a str,
    /// More detail (an object), e.g. the refused sender's domain.
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, Value>,
}

/// `extra`'s entries without the keys a reject event already has.
fn reject_extra(extra: Value) -> serde_json::Map<String, Value> {
    let mut extra = match extra {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    for key in [
        "session",
        "peer",
        "client_identity",
        "credential",
        "upstream",
        "client_sni",
        "reason",
        "reply",
    ] {
        extra.shift_remove(key);
    }
    extra
}

/// A refused step: counts `smtpbind_rejections_total{reason}` and logs it.
/// `extra`'s entries (an object; anything else adds nothing) follow the
/// common fields; they do not replace them.
pub fn reject(info: &SessionInfo, reason: Reason, reply: &str, extra: Value) {
    metrics::counter!("smtpbind_rejections_total", "reason" => reason.as_str()).increment(1);
    let extra = reject_extra(extra);
    let fields = RejectFields {
        info,
        reason,
        reply,
        extra: &extra,
    };
    info.log.emit_with(log::Level::Warn, "reject", &fields);
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

#[derive(Serialize)]
pub struct MessageEvent<'a> {
    pub result: MessageResult,
    pub sender_domain: &'a str,
    pub recipients: usize,
    pub bytes: u64,
    pub reply: &'a str,
    /// The id in the upstream's final 250 reply (`queued as …`, SES's
    /// message id, Microsoft 365's `<…>`): what the provider's activity
    /// names this message by (§13). None unless relayed with one.
    pub upstream_id: Option<&'a str>,
    /// The message's `Message-ID` header, as written (bounded, see
    /// `smtp::header::MessageIdScan`).
    pub message_id: Option<&'a str>,
    pub reason: Option<Reason>,
}

/// The fields of a `message` event.
#[derive(Serialize)]
struct MessageFields<'a> {
    #[serde(flatten)]
    info: &'a SessionInfo,
    #[serde(flatten)]
    message: &'a MessageEvent<'a>,
}

impl log::Fields for SessionInfo {
    fn write_fields(&self, out: &mut Vec<u8>) {
        log::push_str_field(out, "session", Some(&self.session));
        log::push_str_field(out, "peer", Some(&self.peer));
        log::push_str_field(out, "client_identity", self.client_identity.as_deref());
        log::push_str_field(out, "credential", self.credential.as_deref());
        log::push_str_field(out, "upstream", Some(&self.upstream));
        log::push_str_field(out, "client_sni", self.client_sni.as_deref());
    }
}

impl log::Fields for MessageFields<'_> {
    fn write_fields(&self, out: &mut Vec<u8>) {
        self.info.write_fields(out);
        let m = self.message;
        log::push_str_field(out, "result", Some(m.result.as_str()));
        log::push_str_field(out, "sender_domain", Some(m.sender_domain));
        log::push_field(out, "recipients", &m.recipients);
        log::push_field(out, "bytes", &m.bytes);
        log::push_str_field(out, "reply", Some(m.reply));
        log::push_str_field(out, "upstream_id", m.upstream_id);
        log::push_str_field(out, "message_id", m.message_id);
        log::push_str_field(out, "reason", m.reason.map(Reason::as_str));
    }
}

/// The per-message counters, looked up in the recorder once (a lookup by
/// name and labels per message was ~6% of the user-space instructions per
/// message, callgrind). The recorder is installed before any session.
struct MessageCounters {
    relayed: metrics::Counter,
    rejected: metrics::Counter,
    failed: metrics::Counter,
    bytes: metrics::Counter,
}

fn message_counters() -> &'static MessageCounters {
    static COUNTERS: std::sync::OnceLock<MessageCounters> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(|| {
        let by_result =
            |r: MessageResult| metrics::counter!("smtpbind_messages_total", "result" => r.as_str());
        MessageCounters {
            relayed: by_result(MessageResult::Relayed),
            rejected: by_result(MessageResult::Rejected),
            failed: by_result(MessageResult::Failed),
            bytes: metrics::counter!("smtpbind_message_bytes_total"),
        }
    })
}

/// One event per message, and the message counters.
pub fn message(info: &SessionInfo, m: &MessageEvent<'_>) {
    let counters = message_counters();
    let by_result = match m.result {
        MessageResult::Relayed => &counters.relayed,
        MessageResult::Rejected => &counters.rejected,
        MessageResult::Failed => &counters.failed,
    };
    by_result.increment(1);
    if m.result == MessageResult::Relayed {
        counters.bytes.increment(m.bytes);
    }
    let level = match m.result {
        MessageResult::Relayed => log::Level::Info,
        _ => log::Level::Warn,
    };
    info.log
        .emit_fields(level, "message", &MessageFields { info, message: m });
}

#[cfg(test)]
mod tests {
    use super::*;

    const REASONS: [Reason; 17] = [
        Reason::IdentityMismatch,
        Reason::AuthRequired,
        Reason::SenderNotAllowed,
        Reason::HeaderFromMismatch,
        Reason::RecipientNotAllowed,
        Reason::TooManyRecipients,
        Reason::MessageTooLarge,
        Reason::BareLf,
        Reason::MalformedContent,
        Reason::CredentialNotPinned,
        Reason::CredentialMissing,
        Reason::CredentialUnreadable,
        Reason::CredentialUnparsable,
        Reason::UpstreamNotPinned,
        Reason::TokenUnavailable,
        Reason::UpstreamBusy,
        Reason::LogStalled,
    ];

    fn info() -> SessionInfo {
        SessionInfo {
            session: "s-1".into(),
            peer: "127.0.0.1:5555".into(),
            client_identity: Some("apikey".into()),
            credential: None,
            upstream: "smtp.example:587".into(),
            client_sni: None,
            log: log::Context::default(),
        }
    }

    #[test]
    fn the_json_name_of_a_reason_is_its_metric_label() {
        for r in REASONS {
            assert_eq!(serde_json::to_value(r).expect("json"), r.as_str());
        }
        for m in [
            MessageResult::Relayed,
            MessageResult::Rejected,
            MessageResult::Failed,
        ] {
            assert_eq!(serde_json::to_value(m).expect("json"), m.as_str());
        }
    }

    #[test]
    fn a_message_line_has_every_field_in_order() {
        let m = MessageEvent {
            result: MessageResult::Failed,
            sender_domain: "acme.example",
            recipients: 2,
            bytes: 1234,
            reply: "451 4.3.0 \"busy\"",
            upstream_id: None,
            message_id: Some("<m1@acme.example>"),
            reason: Some(Reason::BareLf),
        };
        let i = info();
        let l = log::line_with(
            log::Level::Warn,
            "message",
            &MessageFields {
                info: &i,
                message: &m,
            },
        );
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&l)
            .expect("one JSON object")
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "ts",
                "level",
                "event",
                "session",
                "peer",
                "client_identity",
                "credential",
                "upstream",
                "client_sni",
                "result",
                "sender_domain",
                "recipients",
                "bytes",
                "reply",
                "upstream_id",
                "message_id",
                "reason"
            ]
        );
        let v: Value = serde_json::from_str(&l).expect("json");
        assert_eq!(v["event"], "message");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["credential"], Value::Null);
        assert_eq!(v["client_sni"], Value::Null);
        assert_eq!(v["bytes"], 1234);
        assert_eq!(v["reply"], "451 4.3.0 \"busy\"");
        assert_eq!(v["reason"], "bare_lf");
        assert_eq!(v["upstream_id"], Value::Null);
        assert_eq!(v["message_id"], "<m1@acme.example>");
    }

    /// The hand-written message line is the serde-derived one, byte for
    /// byte (the timestamp aside), for awkward values too.
    #[test]
    fn the_message_line_is_the_serde_line() {
        let odd = "q\"b\\s\u{1}\n\t\u{7f}é\u{2028}😀";
        let infos = [
            info(),
            SessionInfo {
                session: odd.into(),
                peer: String::new(),
                client_identity: None,
                credential: Some(odd.into()),
                upstream: odd.into(),
                client_sni: Some("mail.example".into()),
                log: log::Context::default(),
            },
        ];
        for i in &infos {
            for (result, reason) in [
                (MessageResult::Relayed, None),
                (MessageResult::Rejected, Some(Reason::HeaderFromMismatch)),
                (MessageResult::Failed, Some(Reason::MalformedContent)),
            ] {
                for reply in [
                    "250 2.0.0 Ok: queued as 4Xy",
                    odd,
                    "",
                    "\u{1f}",
                    "a\\",
                    "é\u{7f}\u{2028}",
                ] {
                    let m = MessageEvent {
                        result,
                        sender_domain: odd,
                        recipients: usize::MAX,
                        bytes: u64::MAX,
                        reply,
                        upstream_id: Some(odd),
                        message_id: (reply.is_empty()).then_some(odd),
                        reason,
                    };
                    let fields = MessageFields {
                        info: i,
                        message: &m,
                    };
                    let fast = log::line_of(log::Level::Info, "message", &fields);
                    let serde = log::line_with(log::Level::Info, "message", &fields);
                    let after_ts = |l: &str| l[l.find("\"level\"").expect("level")..].to_string();
                    assert_eq!(after_ts(&fast), after_ts(&serde));
                    serde_json::from_str::<Value>(&fast).expect("one JSON object");
                }
            }
        }
    }

    #[test]
    fn reject_details_follow_and_never_replace_the_common_fields() {
        let i = info();
        let extra = reject_extra(
            serde_json::json!({"sender_domain": "x.example", "session": "forged", "reason": "forged"}),
        );
        let l = log::line_with(
            log::Level::Warn,
            "reject",
            &RejectFields {
                info: &i,
                reason: Reason::SenderNotAllowed,
                reply: "550 5.7.1 no",
                extra: &extra,
            },
        );
        let v: Value = serde_json::from_str(&l).expect("json");
        assert_eq!(v["session"], "s-1");
        assert_eq!(v["reason"], "sender_not_allowed");
        assert_eq!(v["sender_domain"], "x.example");
    }
}
