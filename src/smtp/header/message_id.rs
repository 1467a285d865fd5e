//! The message's `Message-ID` (RFC 5322 §3.6.4), read while the content
//! streams by: only the header section is looked at (up to its empty line,
//! at most a byte limit), a line at a time, and only the first Message-ID
//! field is kept (a message with two is a mailer's bug; the first is what
//! most receivers show). Memory: one line (≤ [`MAX_LINE`]) plus the field's
//! value (≤ [`MAX_VALUE`]), in one buffer a session reuses.
//!
//! The id is kept as written, angle brackets included (`<a@b>`): the form
//! Microsoft 365's message trace and its 250 reply use. A value without
//! brackets is kept as its first word. A value with bytes outside printable
//! ASCII, or longer than [`MAX_ID`], gives no id.

use memchr::memchr;

/// A header line longer than this (RFC 5322's 998 + CRLF) is skipped.
pub const MAX_LINE: usize = 1000;
/// The Message-ID field's value, folded lines included.
pub const MAX_VALUE: usize = 2 * MAX_LINE;
/// Longest id reported.
pub const MAX_ID: usize = 250;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading header fields; no Message-ID yet.
    Fields,
    /// Inside the Message-ID field (its continuation lines may follow).
    InMessageId,
    /// Finished: `buf[..value_len]` is the value (empty: none found).
    Done,
}

/// Feeds on decoded message content; [`MessageIdScan::message_id`] at the end.
#[derive(Debug, Clone)]
pub struct MessageIdScan {
    /// `[..value_len]`: the Message-ID value so far; after it, the current line.
    buf: Vec<u8>,
    value_len: usize,
    state: State,
    /// Content bytes looked at (bounded by `limit`).
    scanned: usize,
    limit: usize,
    /// The current line passed [`MAX_LINE`]: its excess was dropped.
    overlong: bool,
}

impl MessageIdScan {
    /// A scan that stops after `limit` bytes of header section, buffering
    /// into `buf` (cleared; a buffer kept from an earlier message).
    pub fn with_buffer(limit: usize, mut buf: Vec<u8>) -> Self {
        buf.clear();
        MessageIdScan {
            buf,
            value_len: 0,
            state: State::Fields,
            scanned: 0,
            limit,
            overlong: false,
        }
    }

    pub fn new(limit: usize) -> Self {
        Self::with_buffer(limit, Vec::new())
    }

    /// The buffer, for the next message.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// True once the header section (or the Message-ID field) is over.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// More decoded content (any split: lines may straddle calls).
    pub fn push(&mut self, mut data: &[u8]) {
        while self.state != State::Done && !data.is_empty() {
            if self.scanned >= self.limit {
                // Past the bound: a value still being read may be cut.
                self.give_up();
                return;
            }
            let room = self.limit - self.scanned;
            let take = data.len().min(room);
            let (part, rest) = data.split_at(take);
            match memchr(b'\n', part) {
                Some(i) => {
                    self.append(&part[..=i]);
                    self.scanned += i + 1;
                    self.end_line();
                    data = &data[i + 1..];
                }
                None => {
                    self.append(part);
                    self.scanned += part.len();
                    data = rest;
                }
            }
        }
    }

    /// The id (as written, e.g. `<a@b.example>`), when the section had one.
    /// Meant for the end of the message: a field still open is taken as it is.
    pub fn message_id(&self) -> Option<&str> {
        let value = match self.state {
            State::Fields => {
                // The message ended on a line with no line end.
                let line = &self.buf[self.value_len..];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = memchr(b':', line)?;
                let name = trim_wsp_end(&line[..colon]);
                if self.overlong || !name.eq_ignore_ascii_case(b"message-id") {
                    return None;
                }
                &line[colon + 1..]
            }
            State::InMessageId => {
                // The message ended inside the field (no line end yet): the
                // complete lines so far and the partial one, minus a CR.
                let v = &self.buf[..];
                v.strip_suffix(b"\r").unwrap_or(v)
            }
            State::Done => &self.buf[..self.value_len],
        };
        parse_id(value)
    }

    fn append(&mut self, bytes: &[u8]) {
        let line_len = self.buf.len() - self.value_len;
        let room = MAX_LINE.saturating_sub(line_len);
        if bytes.len() > room {
            self.overlong = true;
        }
        self.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn give_up(&mut self) {
        self.buf.clear();
        self.value_len = 0;
        self.state = State::Done;
    }

    /// Finish keeping the value found (the field is complete).
    fn keep_value(&mut self) {
        self.buf.truncate(self.value_len);
        self.state = State::Done;
    }

    /// A complete line is in `buf[value_len..]`.
    fn end_line(&mut self) {
        let start = self.value_len;
        let mut end = self.buf.len();
        if self.buf[start..end].ends_with(b"\n") {
            end -= 1;
        }
        if self.buf[start..end].ends_with(b"\r") {
            end -= 1;
        }
        let line = &self.buf[start..end];
        let continuation = matches!(line.first(), Some(b' ') | Some(b'\t'));
        match self.state {
            State::InMessageId if continuation => {
                if self.overlong || end > MAX_VALUE {
                    self.give_up();
                    return;
                }
                // The folded line joins the value (its leading WSP separates).
                self.buf.truncate(end);
                self.value_len = end;
            }
            State::InMessageId => {
                self.keep_value();
                return;
            }
            State::Fields if line.is_empty() => {
                self.give_up();
                return;
            }
            State::Fields if continuation => {}
            State::Fields => match memchr(b':', line) {
                Some(colon) => {
                    let name = trim_wsp_end(&line[..colon]);
                    if !self.overlong && name.eq_ignore_ascii_case(b"message-id") {
                        self.buf.truncate(end);
                        self.buf.drain(start..start + colon + 1);
                        self.value_len = self.buf.len();
                        self.state = State::InMessageId;
                        self.overlong = false;
                        return;
                    }
                }
                // Not a header field: the section is over (or is not one).
                None => {
                    self.give_up();
                    return;
                }
            },
            State::Done => return,
        }
        self.buf.truncate(self.value_len);
        self.overlong = false;
    }
}

fn trim_wsp_end(mut s: &[u8]) -> &[u8] {
    while let Some((&last, rest)) = s.split_last() {
        if last == b' ' || last == b'\t' {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// The msg-id in a field value: `<…>` from the first `<` to the next `>`,
/// else the first word; printable ASCII only, at most [`MAX_ID`] bytes.
pub fn parse_id(value: &[u8]) -> Option<&str> {
    let id = match memchr(b'<', value) {
        Some(lt) => {
            let gt = memchr(b'>', &value[lt..])?;
            &value[lt..=lt + gt]
        }
        None => value
            .split(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .find(|w| !w.is_empty())?,
    };
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id.iter().all(|b| (0x21..=0x7e).contains(b))
        && id != b"<>";
    if !ok {
        return None;
    }
    std::str::from_utf8(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in(content: &[u8], split: usize) -> Option<String> {
        let mut s = MessageIdScan::new(128 * 1024);
        for chunk in content.chunks(split.max(1)) {
            s.push(chunk);
        }
        s.message_id().map(str::to_string)
    }

    fn scan(content: &[u8]) -> Option<String> {
        let whole = scan_in(content, content.len());
        for split in [1, 2, 3, 7, 64] {
            assert_eq!(scan_in(content, split), whole, "split {split}");
        }
        whole
    }

    #[test]
    fn the_message_id_field_any_case_anywhere_in_the_section() {
        let m =
            b"From: a@acme.example\r\nMessage-ID: <x1@acme.example>\r\nSubject: s\r\n\r\nbody\r\n";
        assert_eq!(scan(m).as_deref(), Some("<x1@acme.example>"));
        let m = b"message-id:<x2@h>\r\n\r\n";
        assert_eq!(scan(m).as_deref(), Some("<x2@h>"));
        let m = b"MESSAGE-ID  :   <x3@h>  (comment)\r\n\r\n";
        assert_eq!(scan(m).as_deref(), Some("<x3@h>"));
    }

    #[test]
    fn folded_bare_lf_and_without_brackets() {
        let m = b"Subject: s\r\nMessage-Id:\r\n <folded@h>\r\nTo: b\r\n\r\n";
        assert_eq!(scan(m).as_deref(), Some("<folded@h>"));
        let m = b"Message-Id: <lf@h>\nTo: b\n\n";
        assert_eq!(scan(m).as_deref(), Some("<lf@h>"));
        let m = b"Message-Id: bare@h\r\n\r\n";
        assert_eq!(scan(m).as_deref(), Some("bare@h"));
    }

    #[test]
    fn only_the_header_section_and_only_the_first_field() {
        let m = b"Subject: s\r\n\r\nMessage-ID: <in-body@h>\r\n";
        assert_eq!(scan(m), None);
        let m = b"Message-ID: <first@h>\r\nMessage-ID: <second@h>\r\n\r\n";
        assert_eq!(scan(m).as_deref(), Some("<first@h>"));
        // A field named like it is not it.
        let m = b"X-Message-ID: <x@h>\r\nResent-Message-ID: <r@h>\r\n\r\n";
        assert_eq!(scan(m), None);
        // A line that is not a field ends the section.
        let m = b"Subject: s\r\nnot a field\r\nMessage-ID: <after@h>\r\n\r\n";
        assert_eq!(scan(m), None);
    }

    #[test]
    fn a_message_that_ends_inside_the_field() {
        assert_eq!(scan(b"Message-ID: <end@h>").as_deref(), Some("<end@h>"));
        assert_eq!(scan(b"Message-ID: <end@h>\r").as_deref(), Some("<end@h>"));
        assert_eq!(scan(b"Message-ID: <end@h>\r\n").as_deref(), Some("<end@h>"));
    }

    #[test]
    fn bounded_and_garbage_gives_none() {
        let long = format!("Message-ID: <{}@h>\r\n\r\n", "a".repeat(MAX_ID));
        assert_eq!(scan(long.as_bytes()), None);
        let huge = format!("Message-ID: <{}@h>\r\n\r\n", "a".repeat(MAX_LINE * 3));
        assert_eq!(scan(huge.as_bytes()), None);
        let mut s = MessageIdScan::new(30);
        s.push(b"Subject: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nMessage-ID: <late@h>\r\n\r\n");
        assert_eq!(s.message_id(), None, "past the limit: not read");
        assert!(s.done());
        for v in [
            &b"Message-ID: <caf\xc3\xa9@h>\r\n\r\n"[..],
            b"Message-ID: <>\r\n\r\n",
        ] {
            assert_eq!(scan(v), None, "{v:?}");
        }
        assert_eq!(scan(b"Message-ID: <unterminated\r\n\r\n"), None);
        assert_eq!(scan(b"Message-ID:\r\n\r\n"), None);
        // A long line of another field is skipped, the id after it read.
        let m = format!("X-Long: {}\r\nMessage-ID: <ok@h>\r\n\r\n", "b".repeat(5000));
        assert_eq!(scan(m.as_bytes()).as_deref(), Some("<ok@h>"));
    }

    #[test]
    fn the_buffer_is_reused_and_bounded() {
        let mut s = MessageIdScan::new(1 << 20);
        let line = format!("X-Long: {}\r\n", "b".repeat(100_000));
        s.push(line.as_bytes());
        s.push(b"Message-ID: <r@h>\r\n\r\n");
        assert_eq!(s.message_id(), Some("<r@h>"));
        let buf = s.into_buffer();
        assert!(buf.capacity() <= 2 * MAX_LINE + 64, "{}", buf.capacity());
        let mut s = MessageIdScan::with_buffer(1 << 20, buf);
        s.push(b"Message-ID: <next@h>\r\n\r\n");
        assert_eq!(s.message_id(), Some("<next@h>"));
    }
}
