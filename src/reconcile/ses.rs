//! Amazon SES event records (event publishing to Firehose / S3: one JSON
//! record per line; to SNS: the record is the notification's `Message`
//! string, which is unwrapped). Every record has a `mail` object whose
//! `messageId` is "a unique ID that Amazon SES assigned to the message …
//! returned to you when you sent the message" (SES Developer Guide,
//! "Contents of event data that Amazon SES publishes to Firehose"): over
//! SMTP, the id of `250 Ok <id>`. (`mail.commonHeaders.messageId` is the
//! message's own Message-ID, not used.)

use std::io::BufRead;

use serde::Deserialize;

use super::events::{bounded, for_each_json, EventStats, OnId, ParseError};

#[derive(Deserialize)]
struct Record {
    mail: Option<Mail>,
    /// An SNS notification envelope: the record as a JSON string.
    #[serde(rename = "Message")]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Mail {
    #[serde(rename = "messageId")]
    message_id: Option<String>,
}

/// The record's `mail.messageId` (unwrapping an SNS envelope once).
fn message_id(record: Record) -> Result<String, String> {
    match (record.mail, record.message) {
        (
            Some(Mail {
                message_id: Some(id),
            }),
            _,
        ) => Ok(id),
        (Some(_), _) => Err("SES event record without mail.messageId".into()),
        (None, Some(inner)) => {
            // The inner error's own position (within the string) is left
            // out: serde_json would take it for the file's.
            let inner: Record = serde_json::from_str(&inner).map_err(|e| {
                format!(
                    "SNS Message is not an SES event record: {}",
                    ParseError::json(&e).message
                )
            })?;
            match inner.mail {
                Some(Mail {
                    message_id: Some(id),
                }) => Ok(id),
                _ => Err("SNS Message is not an SES event record (no mail.messageId)".into()),
            }
        }
        (None, None) => Err("not an SES event record (no `mail` object)".into()),
    }
}

/// Reads an export; `on_id` gets each record's `mail.messageId`.
pub fn read(r: &mut dyn BufRead, on_id: &mut OnId<'_>) -> Result<EventStats, ParseError> {
    let mut stats = EventStats::default();
    for_each_json::<Record>(r, &mut |record| {
        stats.events += 1;
        let id = message_id(record)?;
        bounded(&id, "mail.messageId")?;
        if id.is_empty() {
            return Err("empty mail.messageId".into());
        }
        on_id(&id, None);
        Ok(())
    })?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(input: &str) -> Result<Vec<String>, ParseError> {
        let mut out = Vec::new();
        let mut r = input.as_bytes();
        read(&mut r, &mut |k, _| out.push(k.to_string()))?;
        Ok(out)
    }

    #[test]
    fn records_by_line_in_arrays_and_in_sns_envelopes() {
        let input = r#"{"eventType":"Send","mail":{"messageId":"0100-a-000000","commonHeaders":{"messageId":"<x@y>"}},"send":{}}
{"eventType":"Delivery","mail":{"messageId":"0100-a-000000"}}
[{"eventType":"Bounce","mail":{"messageId":"0100-b-000000"}}]
{"Type":"Notification","Message":"{\"eventType\":\"Send\",\"mail\":{\"messageId\":\"0100-c-000000\"}}"}"#;
        assert_eq!(
            ids(input).expect("ok"),
            [
                "0100-a-000000",
                "0100-a-000000",
                "0100-b-000000",
                "0100-c-000000"
            ]
        );
    }

    #[test]
    fn bad_input_has_a_position() {
        let e = ids("{\"mail\":{\"messageId\":\"a\"}}\n{\"mail\":{\"messageId\":").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = ids("\n\n{\"eventType\":\"Send\"}").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("no `mail`"), "{e}");
        let e = ids("{\"mail\":{}}").unwrap_err();
        assert!(e.message.contains("without mail.messageId"), "{e}");
        let e = ids("{\"Message\":\"nope\"}").unwrap_err();
        assert!(e.message.contains("SNS Message"), "{e}");
        // Found by the fuzz target: the inner string's position must not
        // become the file's (line 2 of a one-line file).
        let e = ids("[[null,\"[[\\n,0\"]]").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(!e.message.contains(" at line "), "{e}");
        let e = ids("{\"mail\":{\"messageId\":7}}").unwrap_err();
        assert!(e.message.contains("invalid type"), "{e}");
    }
}
