//! The validator: its error collector, the typed helpers every section
//! uses, and the whole policy's top level. Each section's rules live in a
//! file of their own (`upstream.rs`, `credential.rs`, `client.rs`,
//! `client_tls.rs`, `identity.rs`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::locate::Locator;
use super::raw::{RawBareLf, RawHeaderFrom, RawPolicy};
use super::*;

pub(super) struct Validator<'a> {
    pub(super) file: &'a Path,
    pub(super) locator: Locator,
    pub(super) errors: Vec<PolicyError>,
}

impl Validator<'_> {
    pub(super) fn err(&mut self, key: &str, message: impl Into<String>) {
        self.errors
            .push(error_at(self.file, &self.locator, key, &message.into()));
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<String>,
        default: Duration,
    ) -> Duration {
        let Some(s) = value else { return default };
        match parse_duration(&s) {
            Ok(d) => d,
            Err(m) => {
                self.err(key, m);
                default
            }
        }
    }

    pub(super) fn int(
        &mut self,
        key: &str,
        value: Option<i64>,
        min: i64,
        max: i64,
        default: i64,
    ) -> i64 {
        match value {
            None => default,
            Some(n) if (min..=max).contains(&n) => n,
            Some(n) => {
                self.err(key, format!("{n} is out of range; must be {min}..={max}"));
                default
            }
        }
    }

    /// [`Validator::int`] for a count or size held as `usize` (no
    /// narrowing cast: a value that does not fit is the default).
    pub(super) fn count(
        &mut self,
        key: &str,
        value: Option<i64>,
        min: i64,
        max: i64,
        default: i64,
    ) -> usize {
        let n = self.int(key, value, min, max, default);
        usize::try_from(n).unwrap_or_else(|_| usize::try_from(default).unwrap_or(0))
    }

    /// [`Validator::duration`] with a tighter upper bound than 24h.
    pub(super) fn duration_at_most(
        &mut self,
        key: &str,
        value: Option<String>,
        default: Duration,
        (max, max_text): (Duration, &str),
    ) -> Duration {
        let d = self.duration(key, value, default);
        if d > max {
            self.err(key, format!("must be at most {max_text}"));
            return default;
        }
        d
    }

    pub(super) fn socket_addr(
        &mut self,
        key: &str,
        value: Option<String>,
        default: &str,
    ) -> SocketAddr {
        let fallback = SocketAddr::from(([127, 0, 0, 1], 0));
        let s = value.unwrap_or_else(|| default.to_string());
        match s.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.err(
                    key,
                    format!("`{s}` is not an `ip:port` socket address (IPv6: `\"[addr]:port\"`)"),
                );
                fallback
            }
        }
    }

    pub(super) fn policy(&mut self, raw: RawPolicy) -> Policy {
        match raw.version {
            Some(1) => {}
            Some(n) => self.err("version", format!("unsupported version {n}; must be 1")),
            None => self.err("version", "required; must be 1"),
        }

        let tenant = raw.tenant.unwrap_or_default();
        let tenant_ok = !tenant.is_empty()
            && tenant.len() <= 63
            && tenant.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            });
        if !tenant_ok {
            self.err(
                "tenant",
                "required: 1-63 characters of lowercase a-z, 0-9, `.`, `_`, `-`",
            );
        }

        let listen = self.socket_addr("listen", raw.listen, DEFAULT_LISTEN);
        let listen_insecure_ok = raw.listen_insecure_ok.unwrap_or(false);
        if let Err(m) = check_listen(listen, listen_insecure_ok) {
            self.err("listen", m);
        }
        let admin = self.socket_addr("admin", raw.admin, DEFAULT_ADMIN);

        let upstream = self.upstream(raw.upstream.unwrap_or_default(), &tenant);
        let credential = self.credential(raw.credential.unwrap_or_default());
        if credential.mechanism == Mechanism::None
            && !(upstream.tls == TlsMode::None && upstream.insecure)
        {
            self.err(
                "credential.mechanism",
                "none (no upstream AUTH) is only allowed with upstream.tls: none and upstream.insecure: true",
            );
        }
        let client = self.client(raw.client.unwrap_or_default());
        if let Some(tls) = &client.tls {
            self.client_tls_listen(tls, listen, listen_insecure_ok);
        }
        self.no_mounted_password(credential.mechanism, &client);

        let senders = match raw.senders {
            None => {
                self.err("senders", "required: a non-empty list of sender patterns");
                SenderMatcher::deny_all()
            }
            Some(list) => {
                if list.is_empty() {
                    self.err("senders", "must list at least one sender pattern");
                }
                match SenderMatcher::parse(&list) {
                    Ok(m) => m,
                    Err((i, m)) => {
                        self.err(&format!("senders[{i}]"), m);
                        SenderMatcher::deny_all()
                    }
                }
            }
        };

        let header_from = match raw.header_from {
            None | Some(RawHeaderFrom::Enforce) => HeaderFrom::Enforce,
            Some(RawHeaderFrom::Ignore) => HeaderFrom::Ignore,
        };

        let rr = raw.recipients.unwrap_or_default();
        let max_per_message = self.count(
            "recipients.max_per_message",
            rr.max_per_message,
            1,
            1000,
            100,
        );
        let domains = match DomainMatcher::parse(&rr.domains.unwrap_or_default()) {
            Ok(m) => m,
            Err((i, m)) => {
                self.err(&format!("recipients.domains[{i}]"), m);
                DomainMatcher::any()
            }
        };

        let rl = raw.limits.unwrap_or_default();
        let limits = Limits {
            max_message_bytes: u64::try_from(self.int(
                "limits.max_message_bytes",
                rl.max_message_bytes,
                1024,
                ONE_GIB,
                31_457_280,
            ))
            .unwrap_or(31_457_280),
            max_sessions: self.count("limits.max_sessions", rl.max_sessions, 1, 100_000, 128),
            command_timeout: self.duration(
                "limits.command_timeout",
                rl.command_timeout,
                Duration::from_secs(300),
            ),
            data_timeout: self.duration(
                "limits.data_timeout",
                rl.data_timeout,
                Duration::from_secs(600),
            ),
            rate: self.rate(rl.rate),
        };

        let bare_lf = match raw.data.and_then(|d| d.bare_lf) {
            None | Some(RawBareLf::Reject) => BareLf::Reject,
            Some(RawBareLf::Normalize) => BareLf::Normalize,
        };

        let drain = self.duration(
            "shutdown.drain",
            raw.shutdown.and_then(|s| s.drain),
            Duration::from_secs(20),
        );

        Policy {
            tenant,
            listen,
            listen_insecure_ok,
            admin,
            upstream,
            credential,
            client,
            senders,
            header_from,
            recipients: RecipientPolicy {
                max_per_message,
                domains,
            },
            limits,
            data: DataPolicy { bare_lf },
            shutdown: ShutdownPolicy { drain },
        }
    }
}
