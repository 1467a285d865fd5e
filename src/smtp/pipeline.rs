//! The order of replies owed to a client while its envelope is pipelined to
//! the upstream, without I/O.
//!
//! A session answers commands in order (RFC 2920). Some answers are known
//! at once (a local refusal, a local `250` to MAIL); others are the
//! upstream's reply to a command written but not read yet. [`Pipeline`]
//! keeps both in one queue: a ready reply is written straight away only
//! when nothing is owed ahead of it, and the upstream's replies are matched
//! to their commands in the order they were sent.
//!
//! MAIL is answered `250` locally (once the policy allowed it) and sent
//! upstream with the first RCPT: its reply is never the client's. A refusal
//! of MAIL is kept and becomes the answer to every RCPT after it (the way
//! Postfix's `smtpd_delay_reject` reports a sender refusal), whatever the
//! upstream answered to those RCPTs (it has no transaction, so typically a
//! `503`). Every other RCPT answer is the upstream's own.

use std::collections::VecDeque;

use super::reply::Reply;

/// A command written to the upstream whose reply is not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Mail,
    Rcpt,
}

/// One answer owed to the client, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// Known now, written once everything ahead of it is.
    Ready(Reply),
    /// The upstream's reply to a pipelined command decides it.
    Upstream(Sent),
}

/// What the client sees for one upstream reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The upstream's reply itself.
    Forward,
    /// The kept refusal of MAIL ([`Pipeline::mail_refusal`]).
    MailRefusal,
    /// Nothing: MAIL was answered locally already.
    Silent,
}

/// The effect of one upstream reply on the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    pub answer: Answer,
    /// A recipient the upstream accepted (counts toward DATA).
    pub accepted: bool,
    /// The upstream refused MAIL just now: it holds no transaction.
    pub mail_refused: bool,
}

/// The replies owed to the client, and the upstream's verdict on MAIL.
#[derive(Debug, Default)]
pub struct Pipeline {
    slots: VecDeque<Slot>,
    /// Upstream replies still owed (the `Upstream` slots).
    upstream: usize,
    mail_refusal: Option<Reply>,
}

impl Pipeline {
    /// Nothing owed: a reply can go out at once.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Replies the upstream still owes.
    pub fn owed_upstream(&self) -> usize {
        self.upstream
    }

    /// Queues `reply` behind those owed, or writes it to `out` if none are.
    pub fn reply(&mut self, reply: Reply, out: &mut Vec<u8>) {
        if self.slots.is_empty() {
            reply.write_to(out);
        } else {
            self.slots.push_back(Slot::Ready(reply));
        }
    }

    /// [`Pipeline::reply`] for a lent reply: copied only if it must wait.
    pub fn reply_ref(&mut self, reply: &Reply, out: &mut Vec<u8>) {
        if self.slots.is_empty() {
            reply.write_to(out);
        } else {
            self.slots.push_back(Slot::Ready(reply.clone()));
        }
    }

    /// A command was written upstream; its reply is owed.
    pub fn expect(&mut self, sent: Sent) {
        self.upstream += 1;
        self.slots.push_back(Slot::Upstream(sent));
    }

    /// The next answer owed, oldest first.
    pub fn pop(&mut self) -> Option<Slot> {
        let slot = self.slots.pop_front();
        if matches!(slot, Some(Slot::Upstream(_))) {
            self.upstream -= 1;
        }
        slot
    }

    /// Puts back a popped upstream slot, first in line (its reply will be
    /// read from a replacement connection).
    pub fn unpop(&mut self, sent: Sent) {
        self.upstream += 1;
        self.slots.push_front(Slot::Upstream(sent));
    }

    /// The upstream answered `sent` with `reply`: what the client sees and
    /// what it does to the transaction.
    pub fn answer(&mut self, sent: Sent, reply: &Reply) -> Effect {
        match sent {
            Sent::Mail => {
                let refused = !reply.is_positive();
                if refused {
                    self.mail_refusal = Some(reply.clone());
                }
                Effect {
                    answer: Answer::Silent,
                    accepted: false,
                    mail_refused: refused,
                }
            }
            Sent::Rcpt if self.mail_refusal.is_some() => Effect {
                answer: Answer::MailRefusal,
                accepted: false,
                mail_refused: false,
            },
            Sent::Rcpt => Effect {
                answer: Answer::Forward,
                accepted: reply.is_positive(),
                mail_refused: false,
            },
        }
    }

    /// The upstream's refusal of this transaction's MAIL, once read.
    pub fn mail_refusal(&self) -> Option<&Reply> {
        self.mail_refusal.as_ref()
    }

    /// A new transaction: the last one's MAIL verdict no longer applies.
    /// Owed replies are kept (they are still the client's).
    pub fn new_transaction(&mut self) {
        self.mail_refusal = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(code: u16, text: &str) -> Reply {
        Reply::new(code, text)
    }

    #[test]
    fn a_ready_reply_goes_out_at_once_only_when_nothing_is_owed() {
        let mut p = Pipeline::default();
        let mut out = Vec::new();
        p.reply(r(250, "a"), &mut out);
        assert_eq!(out, b"250 a\r\n");
        p.expect(Sent::Rcpt);
        p.reply(r(250, "b"), &mut out);
        assert_eq!(out, b"250 a\r\n", "b waits behind the RCPT's reply");
        assert_eq!(p.owed_upstream(), 1);
        assert_eq!(p.pop(), Some(Slot::Upstream(Sent::Rcpt)));
        assert_eq!(p.owed_upstream(), 0);
        assert_eq!(p.pop(), Some(Slot::Ready(r(250, "b"))));
        assert!(p.is_empty());
    }

    #[test]
    fn a_refused_mail_answers_every_later_rcpt() {
        let mut p = Pipeline::default();
        let refusal = r(451, "4.3.0 try later");
        let e = p.answer(Sent::Mail, &refusal);
        assert_eq!(e.answer, Answer::Silent);
        assert!(e.mail_refused);
        for _ in 0..3 {
            let e = p.answer(Sent::Rcpt, &r(503, "5.5.1 need MAIL"));
            assert_eq!(e.answer, Answer::MailRefusal);
            assert!(!e.accepted);
        }
        assert_eq!(p.mail_refusal(), Some(&refusal));
        p.new_transaction();
        assert_eq!(p.mail_refusal(), None);
        let e = p.answer(Sent::Rcpt, &r(250, "ok"));
        assert_eq!((e.answer, e.accepted), (Answer::Forward, true));
    }

    #[test]
    fn an_accepted_mail_is_silent_and_rcpt_replies_are_the_upstreams() {
        let mut p = Pipeline::default();
        let e = p.answer(Sent::Mail, &r(250, "ok"));
        assert_eq!((e.answer, e.mail_refused), (Answer::Silent, false));
        let e = p.answer(Sent::Rcpt, &r(550, "5.1.1 no such user"));
        assert_eq!((e.answer, e.accepted), (Answer::Forward, false));
    }

    #[test]
    fn unpop_puts_an_upstream_slot_back_first() {
        let mut p = Pipeline::default();
        p.expect(Sent::Mail);
        p.expect(Sent::Rcpt);
        assert_eq!(p.pop(), Some(Slot::Upstream(Sent::Mail)));
        p.unpop(Sent::Mail);
        assert_eq!(p.owed_upstream(), 2);
        assert_eq!(p.pop(), Some(Slot::Upstream(Sent::Mail)));
        assert_eq!(p.pop(), Some(Slot::Upstream(Sent::Rcpt)));
        assert_eq!(p.pop(), None);
    }

    /// One step of a client's transaction as the session drives it.
    #[derive(Debug, Clone)]
    enum Step {
        /// A local answer (e.g. a policy refusal).
        Local(u16),
        /// MAIL, answered later by the upstream with this code.
        Mail(u16),
        /// RCPT, answered later by the upstream with this code.
        Rcpt(u16),
        /// The session settles: every owed reply is read.
        Settle,
    }

    fn step() -> impl Strategy<Value = Step> {
        let code = prop_oneof![Just(250u16), Just(251), Just(451), Just(503), Just(550)];
        prop_oneof![
            code.clone().prop_map(Step::Local),
            code.clone().prop_map(Step::Mail),
            code.prop_map(Step::Rcpt),
            Just(Step::Settle),
        ]
    }

    proptest! {
        /// The client's answers come out in the order of its commands, one
        /// per command but MAIL (answered locally ahead of time); a RCPT
        /// after a refused MAIL gets that refusal; the rest are the
        /// upstream's own.
        #[test]
        fn answers_keep_command_order(steps in proptest::collection::vec(step(), 0..40)) {
            let mut p = Pipeline::default();
            let mut out = Vec::new();
            // The upstream's replies, in the order the commands were sent.
            let mut upstream: VecDeque<(Sent, u16)> = VecDeque::new();
            // What the client must see, in order.
            let mut expected = Vec::new();
            let mut refusal: Option<u16> = None;
            let settle = |p: &mut Pipeline, out: &mut Vec<u8>, up: &mut VecDeque<(Sent, u16)>| {
                while let Some(slot) = p.pop() {
                    match slot {
                        Slot::Ready(reply) => reply.write_to(out),
                        Slot::Upstream(sent) => {
                            let (s, code) = up.pop_front().expect("a reply per command");
                            assert_eq!(s, sent);
                            let reply = Reply::new(code, "up");
                            match p.answer(sent, &reply).answer {
                                Answer::Forward => reply.write_to(out),
                                Answer::MailRefusal => {
                                    p.mail_refusal().cloned().expect("kept").write_to(out)
                                }
                                Answer::Silent => {}
                            }
                        }
                    }
                }
            };
            for s in steps {
                match s {
                    Step::Local(code) => {
                        p.reply(Reply::new(code, "local"), &mut out);
                        expected.push(format!("{code} local\r\n"));
                    }
                    Step::Mail(code) => {
                        // A new MAIL is only taken once the last
                        // transaction settled (nested MAIL is refused).
                        settle(&mut p, &mut out, &mut upstream);
                        p.new_transaction();
                        p.expect(Sent::Mail);
                        upstream.push_back((Sent::Mail, code));
                        refusal = (!(200..400).contains(&code)).then_some(code);
                    }
                    Step::Rcpt(code) => {
                        p.expect(Sent::Rcpt);
                        upstream.push_back((Sent::Rcpt, code));
                        expected.push(match refusal {
                            Some(m) => format!("{m} up\r\n"),
                            None => format!("{code} up\r\n"),
                        });
                    }
                    Step::Settle => settle(&mut p, &mut out, &mut upstream),
                }
            }
            settle(&mut p, &mut out, &mut upstream);
            prop_assert!(p.is_empty());
            prop_assert_eq!(p.owed_upstream(), 0);
            prop_assert_eq!(String::from_utf8(out).expect("ascii"), expected.concat());
        }
    }
}
