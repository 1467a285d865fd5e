//! Validation of `upstream` (contract §3): the provider's address, TLS,
//! timeouts and the reuse of authenticated connections.

use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{self, RawTls};
use super::{check_readable_file, Chunking, ReusePolicy, TlsMode, UpstreamPolicy, Validator};

impl Validator<'_> {
    pub(super) fn upstream(&mut self, ru: raw::RawUpstream, tenant: &str) -> UpstreamPolicy {
        let (address, host, port) = match ru.address {
            None => {
                self.err("upstream.address", "required: the provider's `host:port`");
                (String::new(), String::new(), 0)
            }
            Some(a) => match parse_host_port(&a) {
                Ok((h, p)) => (a, h, p),
                Err(m) => {
                    self.err("upstream.address", m);
                    (a, String::new(), 0)
                }
            },
        };

        let tls = match ru.tls {
            None | Some(RawTls::Starttls) => TlsMode::StartTls,
            Some(RawTls::Implicit) => TlsMode::Implicit,
            Some(RawTls::None) => TlsMode::None,
        };
        let insecure = ru.insecure.unwrap_or(false);
        match (tls, insecure) {
            (TlsMode::None, false) => self.err(
                "upstream.tls",
                "`tls: none` sends the credential in plain text and requires `insecure: true` (tests only)",
            ),
            (TlsMode::StartTls | TlsMode::Implicit, true) => self.err(
                "upstream.insecure",
                "insecure only applies to tls: none; TLS is always verified",
            ),
            _ => {}
        }

        let ca_file = ru.ca_file.map(PathBuf::from);
        if let Some(path) = &ca_file {
            if let Err(m) = check_readable_file(path) {
                self.err("upstream.ca_file", m);
            }
        }

        let server_name = match ru.server_name {
            None => host.clone(),
            Some(s) => {
                if rustls_pki_types::ServerName::try_from(s.as_str()).is_err() {
                    self.err(
                        "upstream.server_name",
                        format!("`{s}` is not a valid DNS name or IP address"),
                    );
                }
                s
            }
        };

        let ehlo_name = match ru.ehlo_name {
            None => format!("smtpbind-{tenant}"),
            Some(s) => {
                let ok = !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_graphic());
                if !ok {
                    self.err(
                        "upstream.ehlo_name",
                        "must be 1-255 printable ASCII characters without spaces",
                    );
                }
                s
            }
        };

        let connect_timeout = self.duration(
            "upstream.connect_timeout",
            ru.connect_timeout,
            Duration::from_secs(10),
        );
        let reply_timeout = self.duration(
            "upstream.reply_timeout",
            ru.reply_timeout,
            Duration::from_secs(120),
        );
        let rr = ru.reuse.unwrap_or_default();
        let max_idle = self.int("upstream.reuse.max_idle", rr.max_idle, 0, 1024, 16);
        let reuse = ReusePolicy {
            max_idle: usize::try_from(max_idle).unwrap_or(0),
            prewarm: self.count(
                "upstream.reuse.prewarm",
                rr.prewarm,
                0,
                max_idle,
                1.min(max_idle),
            ),
            idle_timeout: self.duration(
                "upstream.reuse.idle_timeout",
                rr.idle_timeout,
                Duration::from_secs(30),
            ),
        };

        UpstreamPolicy {
            address,
            host,
            port,
            tls,
            insecure,
            ca_file,
            server_name,
            ehlo_name,
            connect_timeout,
            reply_timeout,
            reuse,
            max_connections: match self.count(
                "upstream.max_connections",
                ru.max_connections,
                1,
                4096,
                0,
            ) {
                0 => None,
                n => Some(n),
            },
            chunking: match ru.chunking {
                None | Some(raw::RawChunking::Auto) => Chunking::Auto,
                Some(raw::RawChunking::Off) => Chunking::Off,
            },
        }
    }
}

/// `host:port` with a port in 1..=65535; the host is a DNS name, an IPv4
/// address or a bracketed IPv6 address (returned without brackets).
pub(crate) fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or("missing `]` after an IPv6 address; expected `[addr]:port`")?;
        let port = after
            .strip_prefix(':')
            .ok_or("expected `:port` after `]`")?;
        if h.parse::<Ipv6Addr>().is_err() {
            return Err("`[...]` must contain an IPv6 address".to_string());
        }
        (h, port)
    } else {
        let (h, port) = s.rsplit_once(':').ok_or("expected `host:port`")?;
        if h.contains(':') {
            return Err("an IPv6 address must be written in brackets: `[addr]:port`".to_string());
        }
        if h.is_empty() {
            return Err("empty host; expected `host:port`".to_string());
        }
        if rustls_pki_types::ServerName::try_from(h).is_err() {
            return Err(format!("`{h}` is not a valid DNS name or IP address"));
        }
        (h, port)
    };
    let port_ok = !port.is_empty() && port.chars().all(|c| c.is_ascii_digit());
    match port.parse::<u16>() {
        Ok(p) if port_ok && p != 0 => Ok((host.to_string(), p)),
        _ => Err("port must be a number from 1 to 65535".to_string()),
    }
}
