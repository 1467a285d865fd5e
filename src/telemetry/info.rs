//! Info series (contract §12): which credential and which policy a sidecar
//! holds, whether it is ready, and how long its client TLS certificate has
//! left, and whether a pinned credential is held at all. They are rendered at each scrape from the state in force, not kept
//! in the recorder, so a rotated pin or a reloaded policy leaves no stale
//! series behind: `count by (tenant) (smtpbind_credential_info)` across the
//! fleet is the number of pins live for a tenant, and it falls to 1 when a
//! rotation has finished.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::policy::Pin;

/// What the info series say; updated where the state changes.
#[derive(Debug)]
pub struct Info {
    tenant: String,
    values: Mutex<Values>,
}

#[derive(Debug, Default, Clone)]
struct Values {
    /// First 12 hex digits of the sha256 of the policy file in force.
    policy_sha256: Option<String>,
}

/// One scrape's view of the process, handed to [`Info::render`].
#[derive(Debug, Clone, Copy)]
pub struct Scrape<'a> {
    /// The pin of the credential in force, when one is held.
    pub credential: Option<&'a Pin>,
    /// Whether the credential was judged at all: false while the policy is
    /// refused by the platform's upstream pin (rule 7), which loads none.
    pub credential_judged: bool,
    pub ready: bool,
    /// When the client TLS certificate in use stops being valid (Unix
    /// seconds), with `client.tls`.
    pub client_tls_not_after: Option<i64>,
    pub now: SystemTime,
}

impl Info {
    pub fn new(tenant: &str) -> Info {
        Info {
            tenant: tenant.to_string(),
            values: Mutex::new(Values::default()),
        }
    }

    fn values(&self) -> std::sync::MutexGuard<'_, Values> {
        // A panic elsewhere while holding this lock cannot leave the plain
        // values inconsistent: keep serving them.
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The policy file whose text is `text` is now in force.
    pub fn set_policy(&self, text: &[u8]) {
        let sha = Pin::of(text).short();
        self.values().policy_sha256 = Some(sha);
    }

    /// Prometheus text for the info series (appended to the recorder's).
    pub fn render(&self, scrape: Scrape<'_>) -> String {
        let values = self.values().clone();
        let tenant = escape(&self.tenant);
        let mut out = String::with_capacity(768);
        let mut series = |name: &str, help: &str, kind: &str, labels: &str, value: f64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{{labels}tenant=\"{tenant}\"}} {value}");
        };
        series(
            "smtpbind_ready",
            "1 while /readyz answers 200, else 0",
            "gauge",
            "",
            if scrape.ready { 1.0 } else { 0.0 },
        );
        if scrape.credential_judged {
            series(
                "smtpbind_credential_pinned",
                "1 while a credential matching one of the policy's pins is held, else 0",
                "gauge",
                "",
                if scrape.credential.is_some() {
                    1.0
                } else {
                    0.0
                },
            );
        }
        if let Some(pin) = scrape.credential {
            series(
                "smtpbind_credential_info",
                "The mounted credential in force: first 12 hex of its pin",
                "gauge",
                &format!("pin=\"{}\",", pin.short()),
                1.0,
            );
        }
        if let Some(sha) = &values.policy_sha256 {
            series(
                "smtpbind_policy_info",
                "The policy in force: first 12 hex of the sha256 of its file",
                "gauge",
                &format!("sha256=\"{sha}\","),
                1.0,
            );
        }
        if let Some(not_after) = scrape.client_tls_not_after {
            series(
                "smtpbind_certificate_expiry_seconds",
                "Seconds until the certificate in use expires (negative once expired)",
                "gauge",
                "use=\"client_tls\",",
                seconds_until(scrape.now, not_after),
            );
        }
        out
    }
}

/// Seconds from `now` to `then` (Unix seconds), negative once `then` has passed.
pub fn seconds_until(now: SystemTime, then: i64) -> f64 {
    let now = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    };
    // i64 seconds to f64: exact below 2^53 s, and certificates end before that.
    #[allow(clippy::cast_precision_loss)]
    let then = then as f64;
    then - now
}

/// A label value in the exposition format: `\`, `"` and newline escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn renders_the_state_in_force_only() {
        let info = Info::new("acme");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let pin = Pin::of(b"key-1");
        let scrape = Scrape {
            credential: Some(&pin),
            ready: true,
            client_tls_not_after: None,
            credential_judged: true,
            now,
        };
        // Before a policy is recorded: readiness and the credential only.
        assert_eq!(
            lines(&info.render(scrape)),
            [
                "smtpbind_ready{tenant=\"acme\"} 1".to_string(),
                "smtpbind_credential_pinned{tenant=\"acme\"} 1".to_string(),
                format!(
                    "smtpbind_credential_info{{pin=\"{}\",tenant=\"acme\"}} 1",
                    pin.short()
                ),
            ]
        );
        info.set_policy(b"version: 1\n");
        info.set_policy(b"version: 1\ntenant: acme\n");
        let rotated = Pin::of(b"key-2");
        let text = info.render(Scrape {
            credential: Some(&rotated),
            ready: false,
            client_tls_not_after: Some(1_000_090),
            credential_judged: true,
            now,
        });
        let got = lines(&text);
        let sha = Pin::of(b"version: 1\ntenant: acme\n").short();
        assert_eq!(
            got,
            [
                "smtpbind_ready{tenant=\"acme\"} 0".to_string(),
                "smtpbind_credential_pinned{tenant=\"acme\"} 1".to_string(),
                format!(
                    "smtpbind_credential_info{{pin=\"{}\",tenant=\"acme\"}} 1",
                    rotated.short()
                ),
                format!("smtpbind_policy_info{{sha256=\"{sha}\",tenant=\"acme\"}} 1"),
                "smtpbind_certificate_expiry_seconds{use=\"client_tls\",tenant=\"acme\"} 90"
                    .to_string(),
            ]
        );
        // One series per name: the old pin and the old policy are gone.
        assert!(!text.contains(&pin.short()));
        assert_eq!(text.matches("smtpbind_policy_info{").count(), 1);
        // Without a credential held there is no credential series.
        let none = info.render(Scrape {
            credential: None,
            ready: false,
            client_tls_not_after: None,
            credential_judged: true,
            now,
        });
        assert!(!none.contains("smtpbind_credential_info"));
        assert!(none.contains("smtpbind_credential_pinned{tenant=\"acme\"} 0"));
        // Rule 7 refused the policy: no credential was judged, so no verdict.
        let refused = info.render(Scrape {
            credential: None,
            ready: false,
            client_tls_not_after: None,
            credential_judged: false,
            now,
        });
        assert!(!refused.contains("smtpbind_credential_pinned"));
    }

    #[test]
    fn expiry_goes_negative_and_labels_are_escaped() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(500);
        assert_eq!(seconds_until(now, 495), -5.0);
        let info = Info::new("a\"b\\c\nd");
        let text = info.render(Scrape {
            credential: None,
            ready: true,
            client_tls_not_after: None,
            credential_judged: true,
            now,
        });
        assert!(text.contains("tenant=\"a\\\"b\\\\c\\nd\""), "{text}");
    }
}
