//! What a session keeps from one message to the next so that a reused
//! session allocates nothing per message: the message's buffers (decoded
//! content, wire batch, header section), the final reply and its audit
//! text, the sender domain. Each is given back cleared, capacity kept —
//! but only up to [`KEEP`]: a buffer one large message grew is freed, so a
//! session waiting between messages holds no more than a few small
//! messages' worth (an idle session's memory is per session: ~10 KiB,
//! README).

use crate::smtp::reply::Reply;

/// Largest buffer kept for the next message (capacity, bytes): the same
/// bound as the command read buffer's (`line::KEEP_CAPACITY`). Messages of
/// a few KiB reuse every buffer; a larger one allocates as it always did,
/// and between messages a session keeps at most 3 × 4 KiB of them (plus
/// the Message-ID scan's line buffer, at most 4 KiB, usually under 100 bytes).
pub(super) const KEEP: usize = 4 * 1024;

#[derive(Default)]
pub(super) struct Spare {
    /// Decoded message content (DATA, BDAT).
    pub(super) content: Vec<u8>,
    /// Bytes on their way to the upstream.
    pub(super) wire: Vec<u8>,
    /// The header gate's buffer.
    pub(super) gate: Vec<u8>,
    /// A message's final reply (from the upstream, or local).
    pub(super) reply: Reply,
    /// Its last line as the audit event records it.
    pub(super) audit_reply: String,
    /// The last transaction's sender domain.
    pub(super) sender_domain: String,
    /// A header sender address being checked.
    pub(super) address: String,
    /// The Message-ID scan's buffer.
    pub(super) message_id: Vec<u8>,
    /// The envelope lines kept for a replay (the list, not its lines).
    pub(super) envelope: Vec<String>,
}

/// Gives `buf` back to `slot`, cleared, unless it grew past [`KEEP`] (then
/// it is freed and `slot` is left as it is).
pub(super) fn keep(slot: &mut Vec<u8>, mut buf: Vec<u8>) {
    if buf.capacity() <= KEEP {
        buf.clear();
        *slot = buf;
    }
}

/// [`keep`] for a string.
pub(super) fn keep_string(slot: &mut String, mut s: String) {
    if s.capacity() <= KEEP {
        s.clear();
        *slot = s;
    }
}

/// [`keep`] for the envelope's list, while it holds a few lines' room.
pub(super) fn keep_envelope(slot: &mut Vec<String>, mut lines: Vec<String>) {
    if lines.capacity() <= 16 {
        lines.clear();
        *slot = lines;
    }
}

/// [`keep`] for a reply: kept while it is small ([`Reply::is_small`]).
pub(super) fn keep_reply(slot: &mut Reply, reply: Reply) {
    if reply.is_small() {
        *slot = reply;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_buffer_is_kept_cleared_a_large_one_freed() {
        let mut slot = Vec::new();
        let mut small = Vec::with_capacity(2048);
        small.extend_from_slice(b"message");
        let ptr = small.as_ptr();
        keep(&mut slot, small);
        assert!(slot.is_empty());
        assert_eq!(slot.as_ptr(), ptr, "the same allocation, reused");
        assert!(slot.capacity() >= 2048);

        let mut taken = std::mem::take(&mut slot);
        taken.resize(KEEP + 1, b'x');
        keep(&mut slot, taken);
        assert_eq!(slot.capacity(), 0, "past KEEP: freed, not kept");

        let mut s = String::with_capacity(64);
        s.push_str("acme.example");
        let mut slot = String::new();
        keep_string(&mut slot, s);
        assert!(slot.is_empty() && slot.capacity() >= 64);
        keep_string(&mut slot, "x".repeat(KEEP + 1));
        assert!(
            slot.is_empty() && slot.capacity() >= 64,
            "the small one stays"
        );
    }

    #[test]
    fn a_reply_is_kept_while_small() {
        let mut slot = Reply::default();
        keep_reply(&mut slot, Reply::new(250, "2.0.0 Ok: queued as 4Xy"));
        assert_eq!(slot.lines, ["2.0.0 Ok: queued as 4Xy"]);
        let many = Reply {
            code: 250,
            lines: vec!["x".to_string(); 64],
        };
        keep_reply(&mut slot, many);
        assert_eq!(slot.lines.len(), 1, "64 lines: not kept");
        keep_reply(&mut slot, Reply::new(250, "y".repeat(2000)));
        assert_eq!(slot.lines.len(), 1, "a huge line: not kept");
    }
}
