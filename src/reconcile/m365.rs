//! Microsoft 365 message trace, as CSV: `Get-MessageTraceV2` /
//! `Get-MessageTrace | Export-Csv` (column `MessageId`: "the Message-ID
//! header field of the message", Microsoft Graph's exchangeMessageTrace
//! and the Reporting web service's MessageTrace report) or the admin
//! center's downloadable summary report (column `message_id`). One row per
//! recipient; joined on the Message-ID header (brackets ignored), which is
//! also what Microsoft 365's `250 2.0.0 OK <id> [Hostname=…]` names.
//!
//! A first line `#TYPE …` (Windows PowerShell's Export-Csv) and a UTF-8
//! BOM are accepted. A row without a MessageId (the report allows null)
//! cannot be joined: its key is empty and it counts as unbound.

use std::io::{BufRead, Read};

use super::events::{EventStats, OnId, ParseError, MAX_EVENT_ID};

/// A column named MessageId, message_id or "Message ID" (any case).
fn is_message_id_column(name: &str) -> bool {
    let folded: String = name
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ' ')
        .flat_map(char::to_lowercase)
        .collect();
    folded == "messageid"
}

/// The join key of a Message-ID: without spaces and angle brackets.
pub fn key(message_id: &str) -> &str {
    let t = message_id.trim();
    t.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(t)
        .trim()
}

/// The line of a record: the header's line plus its record number (csv's
/// own line count is off by one on CRLF files; trace rows are one line —
/// a lone CR ends a row too, as the csv reader has it, and counts as one).
fn csv_error(e: &csv::Error, header_line: u64) -> ParseError {
    let line = e
        .position()
        .map_or(header_line, |p| p.record() + header_line);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("a row of {len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8".to_string(),
        csv::ErrorKind::Io(io) => format!("read error: {io}"),
        _ => e.to_string(),
    };
    ParseError {
        line,
        column: 0,
        message,
    }
}

fn no_column(line: u64, found: &[String]) -> ParseError {
    ParseError {
        line,
        column: 0,
        message: format!(
            "no MessageId column (a message trace CSV has MessageId or message_id; found: {})",
            if found.is_empty() {
                "nothing".to_string()
            } else {
                found.join(", ")
            }
        ),
    }
}

/// Reads a trace; `on_id` gets each row's key and line.
pub fn read(r: &mut dyn BufRead, on_id: &mut OnId<'_>) -> Result<EventStats, ParseError> {
    // Windows PowerShell's Export-Csv writes `#TYPE <type name>` first, and
    // a BOM with -Encoding UTF8: the first line (and, after a #TYPE line,
    // the header line) is read whole (bounded), stripped of BOMs — so that
    // the csv reader never sees one, whatever its reads — and given back.
    let read_line = |r: &mut dyn BufRead, line: u64| -> Result<Vec<u8>, ParseError> {
        let mut buf = Vec::new();
        r.take(64 * 1024)
            .read_until(b'\n', &mut buf)
            .map_err(|e| ParseError {
                line,
                column: 0,
                message: format!("read error: {e}"),
            })?;
        let mut start = 0;
        while buf[start..].starts_with(b"\xef\xbb\xbf") {
            start += 3;
        }
        buf.drain(..start);
        Ok(buf)
    };
    let mut first = read_line(&mut *r, 1)?;
    if first.is_empty() {
        // Export-Csv given no rows writes an empty file: no messages.
        return Ok(EventStats::default());
    }
    let offset = if first.starts_with(b"#TYPE") {
        if !first.ends_with(b"\n") {
            return Err(no_column(1, &[]));
        }
        first = read_line(&mut *r, 2)?;
        1
    } else {
        0
    };
    let mut reader = csv::ReaderBuilder::new().from_reader(std::io::Cursor::new(first).chain(r));
    let header_line = 1 + offset;
    let headers = reader
        .headers()
        .map_err(|e| csv_error(&e, header_line))?
        .clone();
    let Some(column) = headers.iter().position(is_message_id_column) else {
        let found: Vec<String> = headers
            .iter()
            .take(20)
            .map(|h| h.escape_debug().to_string())
            .collect();
        return Err(no_column(header_line, &found));
    };
    let mut stats = EventStats::default();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(stats),
            Err(e) => return Err(csv_error(&e, header_line)),
        }
        stats.events += 1;
        let line = record.position().map_or(0, |p| p.record() + header_line);
        let raw = record.get(column).unwrap_or("");
        if raw.len() > MAX_EVENT_ID {
            return Err(ParseError {
                line,
                column: 0,
                message: format!("MessageId longer than {MAX_EVENT_ID} bytes"),
            });
        }
        on_id(key(raw), Some(line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(input: &str) -> Result<Vec<(String, Option<u64>)>, ParseError> {
        let mut out = Vec::new();
        let mut r = input.as_bytes();
        read(&mut r, &mut |k, l| out.push((k.to_string(), l)))?;
        Ok(out)
    }

    #[test]
    fn export_csv_and_the_summary_report() {
        let input = "\u{feff}#TYPE Deserialized.Microsoft.Exchange.Management.FfoReporting.MessageTrace\r\n\
\"Received\",\"SenderAddress\",\"RecipientAddress\",\"Subject\",\"Status\",\"MessageId\",\"MessageTraceId\"\r\n\
\"2026-12-07 01:00:00\",\"a@acme.example\",\"c@example.net\",\"hi, there\",\"Delivered\",\"<m1@acme.example>\",\"ae0a\"\r\n\
\"2026-12-07 01:00:01\",\"a@acme.example\",\"d@example.net\",\"x\",\"Failed\",\"\",\"ae0b\"\r\n";
        assert_eq!(
            ids(input).expect("ok"),
            [
                ("m1@acme.example".to_string(), Some(3)),
                (String::new(), Some(4))
            ]
        );
        let report = "origin_timestamp_utc,sender_address,message_id,network_message_id\n\
2026-12-07T01:00:00Z,a@acme.example,<m2@acme.example>,1341ac7b\n";
        assert_eq!(ids(report).expect("ok")[0].0, "m2@acme.example");
        // PowerShell 7's Export-Csv: no #TYPE line; a BOM from -Encoding utf8BOM.
        let bom = "\u{feff}\"MessageId\",\"Status\"\n\"<m3@acme.example>\",\"Delivered\"\n";
        assert_eq!(
            ids(bom).expect("ok"),
            [("m3@acme.example".to_string(), Some(2))]
        );
    }

    #[test]
    fn bad_input_has_a_line() {
        let e = ids("Received,Subject\n1,2\n").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.message.contains("no MessageId column"), "{e}");
        assert!(e.message.contains("Received, Subject"), "{e}");
        let e = ids("MessageId,Status\n<a@b>,ok\n<c@d>\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("1 fields"), "{e}");
        assert_eq!(ids("").expect("an empty export"), []);
        let e = ids("#TYPE x").unwrap_err();
        assert!(e.message.contains("no MessageId column"), "{e}");
        // A lone CR ends a row (the csv reader's rule): rows, not LF lines.
        let mut r: &[u8] = b"MessageId\n<a@b>\r<c@d>\r\n\xff\n";
        let e = read(&mut r, &mut |_, _| {}).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let mut bad = b"MessageId\n<a@b>\n".to_vec();
        bad.extend_from_slice(b"\xff\xfe\n");
        let mut r: &[u8] = &bad;
        let e = read(&mut r, &mut |_, _| {}).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }
}
