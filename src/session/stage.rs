//! Where a session stands between commands (issue 23 item 3), as one
//! value: greeting, binding, the transaction and a BDAT message between
//! its chunks. A transaction exists only in a bound session and a BDAT
//! message only inside a transaction; STARTTLS and EHLO reset by one
//! assignment.

use super::message::Inbound;
use crate::smtp::data::LineEndingFilter;

pub(super) enum Stage {
    /// No EHLO/HELO yet, or again after STARTTLS (nothing learnt before
    /// TLS counts, the binding included).
    Connected,
    /// Greeted, not bound to an identity: AUTH comes next.
    Greeted,
    /// Greeted and bound (by AUTH, or `client.auth: none`): MAIL may follow.
    Bound(Mail),
}

/// A bound session's mail transaction.
pub(super) enum Mail {
    /// None open: MAIL may open one.
    Idle,
    /// MAIL accepted: RCPTs, then DATA or the first BDAT. Also while a
    /// message (DATA, or one BDAT chunk) is being read: the handler holds
    /// the message then.
    Open(Transaction),
    /// A message arriving in BDAT chunks, between two chunks (boxed: an
    /// idle session's size is a product figure).
    Chunks(Transaction, Box<Chunked>),
}

/// A BDAT message between chunks: its state and the line-ending filter
/// that carries over a CR ending one chunk.
pub(super) struct Chunked {
    pub(super) msg: Inbound,
    pub(super) filter: LineEndingFilter,
}

/// An open transaction.
pub(super) struct Transaction {
    pub(super) sender_domain: String,
    /// The envelope as written upstream (pipelining upstreams): MAIL, then
    /// every RCPT not refused — what a replacement connection is given.
    pub(super) envelope: Vec<String>,
    /// How much of it went upstream.
    pub(super) written: Written,
    /// The connection came from the pool and the envelope was not replayed
    /// yet: if it is found dead before DATA, the envelope is replayed on a
    /// new one, invisibly to the client (§4).
    pub(super) replayable: bool,
    /// RCPTs that passed local policy (the `max_per_message` count).
    pub(super) recipients: usize,
    /// RCPTs the upstream accepted.
    pub(super) accepted: usize,
    /// MAIL carried SMTPUTF8 (and the upstream offers it): RCPT may be UTF-8.
    pub(super) smtputf8: bool,
}

/// How much of a transaction went upstream, in order (what were two
/// flags, never both set). Without PIPELINING upstream MAIL and each RCPT
/// are written and answered one at a time: always `Envelope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Written {
    /// MAIL was answered locally and is not written upstream yet: it goes
    /// with the first RCPT the policy allows.
    MailHeld,
    /// MAIL and the RCPTs so far.
    Envelope,
    /// DATA too, written behind the RCPTs still owed (the client
    /// pipelined it): a replay writes it again, and its reply is read with
    /// the first message bytes.
    Data,
}

impl Stage {
    pub(super) fn greeted(&self) -> bool {
        !matches!(self, Stage::Connected)
    }

    pub(super) fn bound(&self) -> bool {
        matches!(self, Stage::Bound(_))
    }

    /// The open transaction, a BDAT message's included.
    pub(super) fn tx(&self) -> Option<&Transaction> {
        match self {
            Stage::Bound(Mail::Open(tx) | Mail::Chunks(tx, _)) => Some(tx),
            _ => None,
        }
    }

    pub(super) fn tx_mut(&mut self) -> Option<&mut Transaction> {
        match self {
            Stage::Bound(Mail::Open(tx) | Mail::Chunks(tx, _)) => Some(tx),
            _ => None,
        }
    }

    /// MAIL accepted (the session is bound: MAIL checked it).
    pub(super) fn open(&mut self, tx: Transaction) {
        if let Stage::Bound(mail) = self {
            *mail = Mail::Open(tx);
        }
    }

    /// Ends the transaction, if any: what it was (a BDAT message between
    /// chunks included) is returned, the session stays bound.
    pub(super) fn take_mail(&mut self) -> Mail {
        match self {
            Stage::Bound(mail) => std::mem::replace(mail, Mail::Idle),
            _ => Mail::Idle,
        }
    }

    /// [`Stage::take_mail`], the transaction only.
    pub(super) fn end_transaction(&mut self) -> Option<Transaction> {
        match self.take_mail() {
            Mail::Idle => None,
            Mail::Open(tx) | Mail::Chunks(tx, _) => Some(tx),
        }
    }

    /// A BDAT message is between chunks.
    pub(super) fn chunks_open(&self) -> bool {
        matches!(self, Stage::Bound(Mail::Chunks(..)))
    }

    /// Takes the BDAT message for its next chunk (the transaction stays).
    pub(super) fn take_chunks(&mut self) -> Option<Box<Chunked>> {
        let Stage::Bound(mail) = self else {
            return None;
        };
        match std::mem::replace(mail, Mail::Idle) {
            Mail::Chunks(tx, chunked) => {
                *mail = Mail::Open(tx);
                Some(chunked)
            }
            other => {
                *mail = other;
                None
            }
        }
    }

    /// Puts the BDAT message back after a chunk that was not its last
    /// (dropped if the transaction ended meanwhile).
    pub(super) fn keep_chunks(&mut self, chunked: Box<Chunked>) {
        let Stage::Bound(mail) = self else {
            return;
        };
        *mail = match std::mem::replace(mail, Mail::Idle) {
            Mail::Open(tx) => Mail::Chunks(tx, chunked),
            other => other,
        };
    }
}
