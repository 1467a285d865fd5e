//! SendGrid Event Webhook payloads: JSON arrays of event objects (one per
//! POST; an export may hold many, or one event per line). Each delivery
//! and engagement event carries `sg_message_id`, whose part before the
//! first `.` is the id SendGrid's SMTP relay returned in its
//! `250 Ok: queued as <id>` (SendGrid's documentation: the Event Webhook
//! reference and "X-Message-ID"; the Message-ID glossary shows
//! `XBg2anf2TqCy6WXKQFhieQ.filter0905p1mdw1-4434-59E0C6FF-3.0`). A message
//! to n recipients has n `sg_message_id`s sharing that prefix.
//! Account events (no `sg_message_id`) name no message and are skipped.

use std::io::BufRead;

use serde::Deserialize;

use super::events::{bounded, for_each_json, EventStats, OnId, ParseError};

#[derive(Deserialize)]
struct Event {
    sg_message_id: Option<String>,
    event: Option<serde_json::Value>,
}

/// The join key of an `sg_message_id`: the id of the 250 reply.
pub fn key(sg_message_id: &str) -> &str {
    sg_message_id
        .split_once('.')
        .map_or(sg_message_id, |(prefix, _)| prefix)
}

/// Reads an export; `on_id` gets each event's key.
pub fn read(r: &mut dyn BufRead, on_id: &mut OnId<'_>) -> Result<EventStats, ParseError> {
    let mut stats = EventStats::default();
    for_each_json::<Event>(r, &mut |e| {
        stats.events += 1;
        match (e.sg_message_id, e.event) {
            (Some(id), _) => {
                bounded(&id, "sg_message_id")?;
                let k = key(&id);
                if k.is_empty() {
                    return Err("empty sg_message_id".into());
                }
                on_id(k, None);
            }
            (None, Some(_)) => stats.without_id += 1,
            (None, None) => {
                return Err("not a SendGrid event (neither `event` nor `sg_message_id`)".into())
            }
        }
        Ok(())
    })?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(input: &str) -> Result<(Vec<String>, EventStats), ParseError> {
        let mut out = Vec::new();
        let mut r = input.as_bytes();
        let stats = read(&mut r, &mut |k, _| out.push(k.to_string()))?;
        Ok((out, stats))
    }

    #[test]
    fn arrays_lines_and_the_prefix() {
        let input = r#"[{"event":"processed","sg_message_id":"XBg2anf2TqCy6WXKQFhieQ.filter0905p1mdw1-4434-59E0C6FF-3.0","email":"a@b"},
 {"event":"delivered","sg_message_id":"XBg2anf2TqCy6WXKQFhieQ.filter0905p1mdw1-4434-59E0C6FF-4.0"}]
[{"event":"processed","sg_message_id":"Ua9z9lSTSaqYBWJe_Xfc-Q.x.0"}]
{"event":"group_resubscribe","email":"a@b"}
{"event":"open","sg_message_id":"nodot"}"#;
        let (got, stats) = ids(input).expect("ok");
        assert_eq!(
            got,
            [
                "XBg2anf2TqCy6WXKQFhieQ",
                "XBg2anf2TqCy6WXKQFhieQ",
                "Ua9z9lSTSaqYBWJe_Xfc-Q",
                "nodot"
            ]
        );
        assert_eq!(stats.events, 5);
        assert_eq!(stats.without_id, 1);
        assert_eq!(ids("").expect("empty").0.len(), 0);
        assert_eq!(ids("[]\n").expect("empty array").0.len(), 0);
    }

    #[test]
    fn bad_input_has_a_position() {
        let e = ids("[{\"event\":\"processed\",\n\"sg_message_id\":\"a.b\"},\n{\"event\":")
            .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("EOF"), "{e}");
        let e = ids("[{\"event\":\"processed\"},\n 42]").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = ids("[{\"foo\":1}]").unwrap_err();
        assert!(e.message.contains("not a SendGrid event"), "{e}");
        let e = ids("\"text\"").unwrap_err();
        assert!(e.message.contains("array of events"), "{e}");
        let e = ids("[{\"sg_message_id\":\"\"}]").unwrap_err();
        assert!(e.message.contains("empty"), "{e}");
        let long = format!("[{{\"sg_message_id\":\"{}\"}}]", "a".repeat(2000));
        assert!(ids(&long).unwrap_err().message.contains("longer"));
    }
}
