//! Bounded line framing for client commands.
//!
//! A [`LineBuffer`] owns the bytes read from a client. It hands out complete
//! lines (ending in LF, CR stripped) no longer than the caller's limit. A line
//! over the limit is discarded as it streams in and reported once, as
//! [`Line::TooLong`], when its LF arrives; a "line" that never ends is reported
//! as [`Line::Flood`] once [`MAX_DISCARD`] bytes were thrown away, and the
//! session disconnects. Memory stays bounded by the limit plus one read (twice
//! that with the vector's growth), and an emptied buffer over 4 KiB is freed:
//! a session waiting for its next command holds at most that (none before
//! its first command), a DATA-sized buffer only while a message streams.

/// How many bytes of one over-long line we discard before giving up on the client.
pub const MAX_DISCARD: usize = 64 * 1024;

/// An emptied buffer larger than this is freed rather than kept.
const KEEP_CAPACITY: usize = 4096;
/// Room to reserve for one read of commands: small enough that the buffer is
/// kept from one command to the next (no allocation per read), large enough
/// for a pipelined burst of commands.
pub const COMMAND_READ: usize = 2048;

#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its CRLF / LF: written to the caller's buffer.
    Ok,
    /// A line longer than the limit ended; its bytes were discarded.
    TooLong,
    /// More than [`MAX_DISCARD`] bytes without a line end.
    Flood,
    /// No complete line buffered yet.
    NeedMore,
}

#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    start: usize,
    /// Bytes discarded from an over-long line so far (0 = not discarding).
    discarding: usize,
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Unconsumed bytes.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub fn has_pending(&self) -> bool {
        self.start < self.buf.len()
    }

    /// Marks `n` pending bytes as consumed (used by the DATA phase).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        self.compact();
    }

    /// Appends bytes read from the client.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.read_target(bytes.len()).extend_from_slice(bytes);
    }

    /// Frees the buffer if everything in it was consumed (after a read that
    /// found nothing, so a waiting session holds no reserved room).
    pub fn trim(&mut self) {
        self.compact();
    }

    /// Bytes allocated (for tests of the idle footprint).
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Room for a read of `n` more bytes: the buffer to append them to (a
    /// socket read appends into its spare capacity: nothing zeroed, nothing
    /// copied). Bytes appended are pending input.
    pub fn read_target(&mut self, n: usize) -> &mut Vec<u8> {
        self.compact();
        self.buf.reserve(n);
        &mut self.buf
    }

    fn compact(&mut self) {
        if self.start == self.buf.len() {
            // Everything consumed: an idle session keeps no read buffer.
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Next complete line no longer than `limit` bytes including its line
    /// end. On [`Line::Ok`] the line replaces `out`'s contents (a buffer the
    /// caller reuses from line to line: no allocation per command); `out`
    /// is left alone otherwise.
    pub fn next_line(&mut self, limit: usize, out: &mut Vec<u8>) -> Line {
        let pending = &self.buf[self.start..];
        match pending.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                let was_discarding = self.discarding > 0;
                let len = lf + 1;
                let line = pending[..lf].strip_suffix(b"\r").unwrap_or(&pending[..lf]);
                let result = if was_discarding || len > limit {
                    Line::TooLong
                } else {
                    out.clear();
                    out.extend_from_slice(line);
                    Line::Ok
                };
                self.discarding = 0;
                self.start += len;
                self.compact();
                result
            }
            None if pending.len() > limit || self.discarding > 0 => {
                self.discarding += pending.len();
                self.buf.clear();
                self.start = 0;
                if self.discarding > MAX_DISCARD {
                    Line::Flood
                } else {
                    Line::NeedMore
                }
            }
            None => Line::NeedMore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next line as a value (or the outcome without one).
    fn next(b: &mut LineBuffer, limit: usize) -> Result<Vec<u8>, Line> {
        let mut out = Vec::new();
        match b.next_line(limit, &mut out) {
            Line::Ok => Ok(out),
            other => Err(other),
        }
    }

    #[test]
    fn splits_pipelined_lines_and_strips_crlf() {
        let mut b = LineBuffer::new();
        b.extend(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\nDA");
        assert_eq!(next(&mut b, 512), Ok(b"MAIL FROM:<a@b>".to_vec()));
        assert_eq!(next(&mut b, 512), Ok(b"RCPT TO:<c@d>".to_vec()));
        assert_eq!(next(&mut b, 512), Err(Line::NeedMore));
        b.extend(b"TA\r\n");
        assert_eq!(next(&mut b, 512), Ok(b"DATA".to_vec()));
        assert!(!b.has_pending());
    }

    #[test]
    fn line_of_exactly_the_limit_is_accepted_one_more_is_not() {
        let mut b = LineBuffer::new();
        let mut line = vec![b'a'; 510];
        line.extend_from_slice(b"\r\n");
        b.extend(&line);
        assert!(next(&mut b, 512).is_ok());
        let mut line = vec![b'a'; 511];
        line.extend_from_slice(b"\r\nNOOP\r\n");
        b.extend(&line);
        assert_eq!(next(&mut b, 512), Err(Line::TooLong));
        assert_eq!(next(&mut b, 512), Ok(b"NOOP".to_vec()));
    }

    #[test]
    fn overlong_line_is_discarded_while_streaming_and_reported_at_its_end() {
        let mut b = LineBuffer::new();
        for _ in 0..10 {
            b.extend(&[b'x'; 1000]);
            assert_eq!(next(&mut b, 512), Err(Line::NeedMore));
            assert!(b.pending().len() <= 1000, "buffer must not grow");
        }
        b.extend(b"yyy\r\nQUIT\r\n");
        assert_eq!(next(&mut b, 512), Err(Line::TooLong));
        assert_eq!(next(&mut b, 512), Ok(b"QUIT".to_vec()));
    }

    #[test]
    fn endless_line_is_a_flood() {
        let mut b = LineBuffer::new();
        let mut last = Line::NeedMore;
        for _ in 0..100 {
            b.extend(&[b'x'; 1024]);
            last = b.next_line(512, &mut Vec::new());
            if last != Line::NeedMore {
                break;
            }
        }
        assert_eq!(last, Line::Flood);
    }

    #[test]
    fn a_consumed_read_buffer_is_freed() {
        let mut b = LineBuffer::new();
        let target = b.read_target(16 * 1024);
        target.extend_from_slice(b"NOOP\r\n");
        assert!(b.capacity() >= 16 * 1024);
        assert_eq!(next(&mut b, 512), Ok(b"NOOP".to_vec()));
        assert_eq!(
            b.capacity(),
            0,
            "an idle session keeps no DATA-sized buffer"
        );
        // a read that found nothing
        b.read_target(16 * 1024);
        b.trim();
        assert_eq!(b.capacity(), 0);
        // a command-sized buffer is kept (no allocation per command read)
        b.read_target(COMMAND_READ).extend_from_slice(b"QUIT\r\n");
        let small = b.capacity();
        assert!((COMMAND_READ..=KEEP_CAPACITY).contains(&small));
        assert_eq!(next(&mut b, 512), Ok(b"QUIT".to_vec()));
        assert_eq!(b.capacity(), small);
    }

    #[test]
    fn the_callers_line_buffer_is_reused() {
        let mut b = LineBuffer::new();
        let mut out = Vec::with_capacity(64);
        let ptr = out.as_ptr();
        b.extend(b"MAIL FROM:<a@b>\r\nDATA\r\n");
        assert_eq!(b.next_line(512, &mut out), Line::Ok);
        assert_eq!(out, b"MAIL FROM:<a@b>");
        assert_eq!(b.next_line(512, &mut out), Line::Ok);
        assert_eq!(out, b"DATA", "replaced, not appended");
        assert_eq!(out.as_ptr(), ptr, "no new allocation");
        b.extend(&[b'x'; 600]);
        b.extend(b"\r\n");
        assert_eq!(b.next_line(512, &mut out), Line::TooLong);
        assert_eq!(out, b"DATA", "left alone unless a line is returned");
    }
}
