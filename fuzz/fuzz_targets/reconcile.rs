//! The three provider export parsers of `smtpbind reconcile` (SendGrid
//! Event Webhook JSON, SES event records, Microsoft 365 trace CSV), and the
//! Message-ID scan whose output they are joined with.
//!
//! Input: one byte (provider = b % 3, read size = b / 3 + 1), then the
//! export's bytes.
//!
//! * a parser never panics, on any bytes;
//! * read through a reader that returns at most `read size` bytes a call
//!   (as a pipe or a gzip stream does), it gives the same ids and the same
//!   error as over the whole buffer;
//! * an error is at line >= 1, within the input's lines (for CSV, rows: a
//!   lone CR ends one too), with a one-line message;
//! * every id is at most `MAX_EVENT_ID` bytes; SendGrid and SES ids are
//!   non-empty, a SendGrid id has no `.` (it is `sg_message_id`'s prefix),
//!   an M365 id has no surrounding spaces;
//! * `MessageIdScan` gives the same id whatever the chunking, and an id is
//!   printable ASCII of at most `MAX_ID` bytes.
#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use smtpbind::reconcile::events::MAX_EVENT_ID;
use smtpbind::reconcile::{ParseError, Provider};
use smtpbind::smtp::header::MessageIdScan;

#[path = "../../tests/support/reconcile_oracles.rs"]
mod reconcile_oracles;
use reconcile_oracles::{lines, Trickle};

fn parse(p: Provider, r: &mut dyn std::io::BufRead) -> (Vec<String>, Result<u64, ParseError>) {
    let mut ids = Vec::new();
    let got = p.read_events(r, &mut |k, _| ids.push(k.to_string()));
    (ids, got.map(|s| s.events))
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, input)) = data.split_first() else {
        return;
    };
    let provider = [Provider::Sendgrid, Provider::Ses, Provider::M365][usize::from(sel % 3)];
    let step = usize::from(sel / 3) + 1;

    let mut whole: &[u8] = input;
    let (ids, got) = parse(provider, &mut whole);
    let mut trickle = BufReader::with_capacity(step.max(8), Trickle { data: input, step });
    let (ids2, got2) = parse(provider, &mut trickle);
    assert_eq!(ids, ids2, "ids depend on the read size");
    assert_eq!(got, got2, "result depends on the read size");

    if let Err(e) = &got {
        let lines = lines(input, provider == Provider::M365);
        assert!(
            e.line >= 1 && e.line <= lines,
            "line {} of {lines}: {e}",
            e.line
        );
        assert!(!e.message.is_empty() && !e.message.contains('\n'), "{e:?}");
    }
    for id in &ids {
        assert!(id.len() <= MAX_EVENT_ID);
        match provider {
            Provider::Sendgrid => assert!(!id.is_empty() && !id.contains('.'), "{id:?}"),
            Provider::Ses => assert!(!id.is_empty()),
            Provider::M365 => assert_eq!(id.trim(), id),
        }
    }

    // The Message-ID scan: chunking does not matter.
    let mut one = MessageIdScan::new(64 * 1024);
    one.push(input);
    let mut split = MessageIdScan::new(64 * 1024);
    for chunk in input.chunks(step) {
        split.push(chunk);
    }
    assert_eq!(one.message_id(), split.message_id());
    if let Some(id) = one.message_id() {
        assert!(id.len() <= smtpbind::smtp::header::MAX_MESSAGE_ID);
        assert!(id.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{id:?}");
    }
});
