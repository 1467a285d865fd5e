//! The `reconcile` fuzz target's properties (fuzz/fuzz_targets/reconcile.rs)
//! as proptest tests that run in CI, plus round trips through a reference:
//! exports written from a list of ids give back exactly those ids.
//! `PROPTEST_CASES` runs more.

use std::io::BufReader;

use proptest::prelude::*;

use smtpbind::reconcile::events::MAX_EVENT_ID;
use smtpbind::reconcile::{ParseError, Provider};
use smtpbind::smtp::header::MessageIdScan;

#[path = "support/proptest_runner.rs"]
mod proptest_runner;
use proptest_runner::config;

#[path = "support/reconcile_oracles.rs"]
mod reconcile_oracles;
use reconcile_oracles::{lines, Trickle};

type Parsed = (Vec<String>, Result<u64, ParseError>);

fn parse(p: Provider, input: &[u8], step: usize) -> Parsed {
    let mut ids = Vec::new();
    let mut r = BufReader::with_capacity(step.max(8), Trickle { data: input, step });
    let got = p.read_events(&mut r, &mut |k, _| ids.push(k.to_string()));
    (ids, got.map(|s| s.events))
}

const PROVIDERS: [Provider; 3] = [Provider::Sendgrid, Provider::Ses, Provider::M365];

/// Bytes built from the pieces the three formats are made of.
fn export_bytes() -> impl Strategy<Value = Vec<u8>> {
    const PIECES: &[&[u8]] = &[
        b"[",
        b"]",
        b"{",
        b"}",
        b",",
        b":",
        b"\"",
        b"\n",
        b"\r\n",
        b"\"sg_message_id\":\"ab.c\"",
        b"\"event\":\"processed\"",
        b"\"mail\":{\"messageId\":\"0100-x\"}",
        b"\"Message\":\"{\\\"mail\\\":{\\\"messageId\\\":\\\"m\\\"}}\"",
        b"MessageId,Status",
        b"\"<a@b>\"",
        b"Message-ID: <x@y>",
        b"#TYPE x",
        b"\xef\xbb\xbf",
        b"null",
        b"7",
        b"\\",
        b"\xff",
    ];
    let piece = proptest::sample::select(PIECES);
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

fn check(p: Provider, input: &[u8], step: usize) -> Result<(), TestCaseError> {
    let whole = parse(p, input, input.len().max(1));
    let trickled = parse(p, input, step);
    prop_assert_eq!(&whole, &trickled, "read size {}", step);
    if let Err(e) = &whole.1 {
        let lines = lines(input, p == Provider::M365);
        prop_assert!(e.line >= 1 && e.line <= lines, "{} of {} lines", e, lines);
        prop_assert!(
            !e.message.is_empty() && !e.message.contains('\n'),
            "{:?}",
            e
        );
    }
    for id in &whole.0 {
        prop_assert!(id.len() <= MAX_EVENT_ID);
        match p {
            Provider::Sendgrid => prop_assert!(!id.is_empty() && !id.contains('.'), "{:?}", id),
            Provider::Ses => prop_assert!(!id.is_empty()),
            Provider::M365 => prop_assert_eq!(id.trim(), id.as_str()),
        }
    }
    Ok(())
}

fn id_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,24}"
}

proptest! {
    #![proptest_config(config(3000))]

    /// Any bytes: no panic; the same answer whatever the read size; errors
    /// at a line of the input with a one-line message; ids bounded.
    #[test]
    fn parsers_on_any_bytes(input in export_bytes(), which in 0usize..3, step in 1usize..16) {
        check(PROVIDERS[which], &input, step)?;
    }

    /// The Message-ID scan gives the same id however the content is cut.
    #[test]
    fn message_id_scan_ignores_chunking(input in export_bytes(), step in 1usize..16) {
        let mut whole = MessageIdScan::new(4096);
        whole.push(&input);
        let mut split = MessageIdScan::new(4096);
        for c in input.chunks(step) {
            split.push(c);
        }
        prop_assert_eq!(whole.message_id(), split.message_id());
    }

    /// SendGrid: arrays (one per line or pretty-printed) and single events
    /// give back each sg_message_id's prefix, in order.
    #[test]
    fn sendgrid_round_trip(ids in proptest::collection::vec((id_text(), 0u8..3), 0..20), pretty: bool, step in 1usize..64) {
        let mut out = String::new();
        for chunk in ids.chunks(3) {
            let events: Vec<serde_json::Value> = chunk.iter().map(|(id, suffix)| {
                let sg = if *suffix == 0 { id.clone() } else { format!("{id}.filter{suffix}.0") };
                serde_json::json!({"event": "processed", "sg_message_id": sg, "email": "a@b"})
            }).collect();
            let text = if pretty { serde_json::to_string_pretty(&events) } else { serde_json::to_string(&events) };
            out.push_str(&text.expect("json"));
            out.push('\n');
        }
        let (got, res) = parse(Provider::Sendgrid, out.as_bytes(), step);
        prop_assert_eq!(res, Ok(ids.len() as u64));
        prop_assert_eq!(got, ids.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
    }

    /// SES: records by line and in SNS envelopes give back mail.messageId.
    #[test]
    fn ses_round_trip(ids in proptest::collection::vec((id_text(), any::<bool>()), 0..20), step in 1usize..64) {
        let mut out = String::new();
        for (id, sns) in &ids {
            let record = serde_json::json!({"eventType": "Send", "mail": {"messageId": id}, "send": {}});
            let line = if *sns {
                serde_json::json!({"Type": "Notification", "Message": record.to_string()})
            } else {
                record
            };
            out.push_str(&line.to_string());
            out.push('\n');
        }
        let (got, res) = parse(Provider::Ses, out.as_bytes(), step);
        prop_assert_eq!(res, Ok(ids.len() as u64));
        prop_assert_eq!(got, ids.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
    }

    /// M365: Export-Csv output (quoted fields, commas and quotes in the
    /// subject, an optional #TYPE line, CRLF) gives back the ids without brackets.
    #[test]
    fn m365_round_trip(rows in proptest::collection::vec((id_text(), "[a-z ,\"]{0,12}"), 0..20), typed: bool, step in 1usize..64) {
        let mut out = String::new();
        if typed {
            out.push_str("#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace\r\n");
        }
        out.push_str("\"Received\",\"Subject\",\"MessageId\",\"Status\"\r\n");
        for (id, subject) in &rows {
            out.push_str(&format!("\"2026-12-07\",\"{}\",\"<{id}@acme.example>\",\"Delivered\"\r\n", subject.replace('"', "\"\"")));
        }
        let mut got = Vec::new();
        let mut lines = Vec::new();
        let mut r = BufReader::with_capacity(step.max(8), Trickle { data: out.as_bytes(), step });
        let res = Provider::M365.read_events(&mut r, &mut |k, l| { got.push(k.to_string()); lines.push(l); });
        prop_assert_eq!(res.map(|s| s.events), Ok(rows.len() as u64));
        prop_assert_eq!(got, rows.iter().map(|(id, _)| format!("{id}@acme.example")).collect::<Vec<_>>());
        let first = if typed { 3 } else { 2 };
        prop_assert_eq!(lines, (0..rows.len() as u64).map(|i| Some(first + i)).collect::<Vec<_>>());
    }
}
