//! The header gate: decoded content held back up to the end of the header
//! section (bounded), so that From is checked before the upstream sees the
//! end of the message (see the parent module).

use memchr::memmem;

/// Result of feeding the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The header block is not complete yet.
    NeedMore,
    /// Header block complete: [`HeaderGate::headers`] holds the headers (incl.
    /// the blank line, or all of the content if the message ended first);
    /// [`HeaderGate::buffered`] may hold some body bytes after them.
    Complete,
    /// The header block exceeds the limit.
    TooLarge,
}

/// Buffers decoded content until the end of the header block.
#[derive(Debug, Clone)]
pub struct HeaderGate {
    limit: usize,
    buf: Vec<u8>,
    state: Gate,
    header_len: usize,
}

impl HeaderGate {
    /// A gate that accepts a header block of at most `limit` bytes (the blank
    /// line included).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            buf: Vec::new(),
            state: Gate::NeedMore,
            header_len: 0,
        }
    }

    /// Append decoded content. Once the gate has answered `Complete` or
    /// `TooLarge` it buffers nothing more and keeps giving that answer: the
    /// caller forwards later content directly. The buffer never grows past
    /// `limit` + the size of one pushed chunk.
    pub fn push(&mut self, content: &[u8]) -> Gate {
        if self.state != Gate::NeedMore {
            return self.state;
        }
        // A "\r\n\r\n" may straddle the previous chunk and this one.
        let scan_from = self.buf.len().saturating_sub(3);
        self.buf.extend_from_slice(content);
        let end = if self.buf.starts_with(b"\r\n") {
            Some(2)
        } else {
            memmem::find(&self.buf[scan_from..], b"\r\n\r\n").map(|p| scan_from + p + 4)
        };
        match end {
            Some(len) if len <= self.limit => {
                self.header_len = len;
                self.state = Gate::Complete;
            }
            Some(_) => self.state = Gate::TooLarge,
            None if self.buf.len() > self.limit => self.state = Gate::TooLarge,
            None => {}
        }
        self.state
    }

    /// The message ended: whatever was buffered is the header block.
    pub fn finish(&mut self) -> Gate {
        if self.state == Gate::NeedMore {
            if self.buf.len() > self.limit {
                self.state = Gate::TooLarge;
            } else {
                self.header_len = self.buf.len();
                self.state = Gate::Complete;
            }
        }
        self.state
    }

    /// [`HeaderGate::new`] buffering into `buf` (cleared): a buffer kept
    /// from an earlier message, its room reused.
    pub fn with_buffer(limit: usize, mut buf: Vec<u8>) -> Self {
        buf.clear();
        Self {
            buf,
            ..Self::new(limit)
        }
    }

    /// Everything buffered so far (headers and possibly the start of the body).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Take the buffer (headers and possibly the start of the body).
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// The header block once `Complete`; empty before that or when `TooLarge`.
    pub fn headers(&self) -> &[u8] {
        match self.state {
            Gate::Complete => self.buf.get(..self.header_len).unwrap_or(&[]),
            Gate::NeedMore | Gate::TooLarge => &[],
        }
    }

    /// The current state.
    pub fn state(&self) -> Gate {
        self.state
    }
}
