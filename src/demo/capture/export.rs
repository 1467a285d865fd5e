//! The capture upstream playing a real provider for `smtpbind reconcile`
//! (contract §13): its final 250 reply takes that provider's shape, and its
//! per-account activity is written in that provider's export shape, with
//! ids that match the reply — as the provider's own records would:
//!
//! ```text
//! sendgrid  250 Ok: queued as <22 chars>     DIR/<account>.sendgrid.json  one Event Webhook POST body
//!                                            (a JSON array, a `processed` event per recipient) per line
//! ses       250 Ok <SES message id>          DIR/<account>.ses.jsonl      one `Send` event record per line
//! m365      250 2.0.0 OK <Message-ID> […]    DIR/<account>.m365.csv       Get-MessageTrace | Export-Csv:
//!                                            a row per recipient
//! ```
//!
//! For Microsoft 365 the id is the message's Message-ID header, or one the
//! capture assigns when the message has none (as Exchange Online does).

use std::io::Write;
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::smtp::header::MessageIdScan;

/// Which provider the capture plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportShape {
    Sendgrid,
    Ses,
    M365,
}

impl ExportShape {
    pub fn parse(s: &str) -> Option<ExportShape> {
        match s {
            "sendgrid" => Some(ExportShape::Sendgrid),
            "ses" => Some(ExportShape::Ses),
            "m365" => Some(ExportShape::M365),
            _ => None,
        }
    }

    /// The export file of `account` in `dir`.
    pub fn file(self, dir: &Path, account: &str) -> std::path::PathBuf {
        dir.join(match self {
            ExportShape::Sendgrid => format!("{account}.sendgrid.json"),
            ExportShape::Ses => format!("{account}.ses.jsonl"),
            ExportShape::M365 => format!("{account}.m365.csv"),
        })
    }
}

/// What the export of one message needs.
pub(super) struct Accepted<'a> {
    pub seq: u64,
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
    pub data: &'a [u8],
}

/// The message's Message-ID header as written, if any.
pub(super) fn message_id_of(data: &[u8]) -> Option<String> {
    let mut scan = MessageIdScan::new(128 * 1024);
    scan.push(data);
    scan.message_id().map(str::to_string)
}

fn digest(seq: u64, salt: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_be_bytes(),
    );
    h.finalize().into()
}

/// The provider's id for an accepted message, and the full 250 reply line.
pub(super) fn accept(shape: ExportShape, m: &Accepted<'_>) -> (String, String) {
    match shape {
        ExportShape::Sendgrid => {
            use base64::Engine;
            let d = digest(m.seq, "sendgrid");
            let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..16]);
            let reply = format!("250 Ok: queued as {id}\r\n");
            (id, reply)
        }
        ExportShape::Ses => {
            let h = hex::encode(digest(m.seq, "ses"));
            let id = format!(
                "0100{}-{}-{}-{}-{}-{}-000000",
                &h[0..12],
                &h[12..20],
                &h[20..24],
                &h[24..28],
                &h[28..32],
                &h[32..44]
            );
            let reply = format!("250 Ok {id}\r\n");
            (id, reply)
        }
        ExportShape::M365 => {
            let id = message_id_of(m.data).unwrap_or_else(|| {
                let h = hex::encode(&digest(m.seq, "m365")[..16]);
                format!("<{h}@CAPTURE01.prod.outlook.example>")
            });
            let reply = format!("250 2.0.0 OK {id} [Hostname=CAPTURE01.PROD.OUTLOOK.EXAMPLE]\r\n");
            (id, reply)
        }
    }
}

fn subject_of(data: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse_headers(data)
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default()
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The export record(s) of one message, as the file's bytes (one write).
pub(super) fn record(shape: ExportShape, account: &str, id: &str, m: &Accepted<'_>) -> Vec<u8> {
    let now = std::time::SystemTime::now();
    let unix = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rfc3339 = humantime::format_rfc3339_millis(now).to_string();
    let message_id = message_id_of(m.data);
    match shape {
        ExportShape::Sendgrid => {
            let events: Vec<_> = m
                .rcpt_to
                .iter()
                .enumerate()
                .map(|(n, rcpt)| {
                    json!({
                        "email": rcpt, "timestamp": unix, "smtp-id": message_id,
                        "event": "processed", "category": [],
                        "sg_event_id": hex::encode(&digest(m.seq + n as u64, "event")[..16]),
                        "sg_message_id": format!("{id}.filterdrecv-capture-{}-{n}.0", m.seq),
                    })
                })
                .collect();
            let mut line = serde_json::Value::Array(events).to_string().into_bytes();
            line.push(b'\n');
            line
        }
        ExportShape::Ses => {
            let mut line = json!({
                "eventType": "Send",
                "mail": {
                    "timestamp": rfc3339, "source": m.mail_from,
                    "sendingAccountId": account, "messageId": id,
                    "destination": m.rcpt_to, "headersTruncated": false,
                    "commonHeaders": { "messageId": message_id, "subject": subject_of(m.data) },
                },
                "send": {},
            })
            .to_string()
            .into_bytes();
            line.push(b'\n');
            line
        }
        ExportShape::M365 => {
            let mut out = String::new();
            for rcpt in m.rcpt_to {
                let fields = [
                    rfc3339.as_str(),
                    m.mail_from,
                    rcpt,
                    &subject_of(m.data),
                    "Delivered",
                    "",
                    "127.0.0.1",
                    &m.data.len().to_string(),
                    id,
                    &hex::encode(&digest(m.seq, "trace")[..16]),
                ];
                let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                out.push_str(&row.join(","));
                out.push_str("\r\n");
            }
            out.into_bytes()
        }
    }
}

/// The CSV header the M365 export starts with.
pub(super) const M365_HEADER: &str = "\"Received\",\"SenderAddress\",\"RecipientAddress\",\"Subject\",\"Status\",\"ToIP\",\"FromIP\",\"Size\",\"MessageId\",\"MessageTraceId\"\r\n";

/// Appends `bytes` to the export file (the M365 header first when new).
/// Called under the capture's record lock: one writer at a time.
pub(super) fn append(shape: ExportShape, dir: &Path, account: &str, bytes: &[u8]) {
    let path = shape.file(dir, account);
    let fresh = std::fs::metadata(&path).map_or(true, |m| m.len() == 0);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        let mut all = Vec::with_capacity(bytes.len() + M365_HEADER.len());
        if fresh && shape == ExportShape::M365 {
            all.extend_from_slice(M365_HEADER.as_bytes());
        }
        all.extend_from_slice(bytes);
        let _ = f.write_all(&all);
    }
}
