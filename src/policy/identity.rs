//! Validation of the keys of contract §9 and §10: `credential.oauth2`,
//! `credential.ses` and `limits.rate`, and the rules that tie them to
//! `credential.mechanism` and `client.accept`.

use std::path::PathBuf;
use std::time::Duration;

use super::model::{
    ClientPolicy, Mechanism, OAuth2Flow, OAuth2Policy, PasswordMatch, RatePolicy, SesPolicy,
};
use super::raw::{RawOAuth2, RawOAuth2Flow, RawRate, RawSes};
use super::{check_readable_file, Validator};

/// Largest `messages_per_second` and `burst`.
const MAX_RATE: f64 = 100_000.0;
const MAX_BURST: u32 = 100_000;

impl Validator<'_> {
    /// `credential.oauth2`: required with `xoauth2`, refused otherwise.
    pub(super) fn oauth2(
        &mut self,
        mechanism: Mechanism,
        raw: Option<RawOAuth2>,
    ) -> Option<OAuth2Policy> {
        let raw = self.section(
            (mechanism, Mechanism::XOAuth2),
            raw,
            ("credential.oauth2", "xoauth2"),
            "flow, token_url, scope, user",
        )?;
        let flow = match raw.flow {
            Some(RawOAuth2Flow::ClientCredentials) => OAuth2Flow::ClientCredentials,
            Some(RawOAuth2Flow::JwtBearer) => OAuth2Flow::JwtBearer,
            None => {
                self.err(
                    "credential.oauth2.flow",
                    "required: `client_credentials` or `jwt_bearer`",
                );
                OAuth2Flow::ClientCredentials
            }
        };
        let token_url = match raw.token_url {
            None => {
                self.err(
                    "credential.oauth2.token_url",
                    "required: the provider's `https://` token endpoint",
                );
                String::new()
            }
            Some(url) => {
                if let Err(m) = check_token_url(&url) {
                    self.err("credential.oauth2.token_url", m);
                }
                url
            }
        };
        let scope = self.required_text("credential.oauth2.scope", raw.scope);
        let user = self.required_text("credential.oauth2.user", raw.user);
        let ca_file = raw.ca_file.map(PathBuf::from);
        if let Some(path) = &ca_file {
            if let Err(m) = check_readable_file(path) {
                self.err("credential.oauth2.ca_file", m);
            }
        }
        let refresh_before = self.duration(
            "credential.oauth2.refresh_before",
            raw.refresh_before,
            Duration::from_secs(300),
        );
        Some(OAuth2Policy {
            flow,
            token_url,
            scope,
            user,
            ca_file,
            refresh_before,
        })
    }

    /// `credential.ses`: required with `ses`, refused otherwise.
    pub(super) fn ses(&mut self, mechanism: Mechanism, raw: Option<RawSes>) -> Option<SesPolicy> {
        let raw = self.section(
            (mechanism, Mechanism::Ses),
            raw,
            ("credential.ses", "ses"),
            "region",
        )?;
        let region = match raw.region {
            Some(r) if is_region(&r) => r,
            Some(_) => {
                self.err(
                    "credential.ses.region",
                    "must be an AWS region name such as `eu-west-1`",
                );
                String::new()
            }
            None => {
                self.err(
                    "credential.ses.region",
                    "required: the AWS region, e.g. `eu-west-1`",
                );
                String::new()
            }
        };
        Some(SesPolicy { region })
    }

    /// `limits.rate` (optional).
    pub(super) fn rate(&mut self, raw: Option<RawRate>) -> Option<RatePolicy> {
        let raw = raw?;
        let per_second = match raw.messages_per_second {
            Some(r) if r.is_finite() && r > 0.0 && r <= MAX_RATE => r,
            Some(_) => {
                self.err(
                    "limits.rate.messages_per_second",
                    format!("must be greater than 0 and at most {MAX_RATE}"),
                );
                1.0
            }
            None => {
                self.err(
                    "limits.rate.messages_per_second",
                    "required: the provider account's rate for this pod",
                );
                1.0
            }
        };
        // The default burst is the rate rounded up (1 to MAX_BURST), found
        // without a float-to-integer cast.
        let default_burst = (1..=MAX_BURST)
            .find(|&n| f64::from(n) >= per_second)
            .unwrap_or(MAX_BURST);
        let burst = self.int(
            "limits.rate.burst",
            raw.burst,
            1,
            i64::from(MAX_BURST),
            i64::from(default_burst),
        );
        let burst = u32::try_from(burst).unwrap_or(default_burst);
        let max_wait = self.duration_at_most(
            "limits.rate.max_wait",
            raw.max_wait,
            Duration::from_secs(5),
            (Duration::from_secs(3600), "1h"),
        );
        Some(RatePolicy {
            messages_per_second: per_second,
            burst,
            max_wait,
        })
    }

    /// With `xoauth2` and `ses` the app must never hold the provider secret:
    /// `client.accept[].password: mounted` is refused.
    pub(super) fn no_mounted_password(&mut self, mechanism: Mechanism, client: &ClientPolicy) {
        if !matches!(mechanism, Mechanism::XOAuth2 | Mechanism::Ses) {
            return;
        }
        for (i, rule) in client.accept.iter().enumerate() {
            if rule.password == PasswordMatch::Mounted {
                self.err(
                    &format!("client.accept[{i}].password"),
                    "`mounted` is not allowed with credential.mechanism xoauth2 or ses \
                     (the app must never hold the provider's secret); use `sha256:<64 hex>`",
                );
            }
        }
    }

    /// A mechanism's own section: `Some` when present with its mechanism;
    /// an error when the mechanism lacks it or another mechanism has it.
    fn section<T>(
        &mut self,
        (mechanism, owner): (Mechanism, Mechanism),
        raw: Option<T>,
        (key, name): (&str, &str),
        keys: &str,
    ) -> Option<T> {
        match (raw, mechanism == owner) {
            (Some(raw), true) => Some(raw),
            (Some(_), false) => {
                self.err(
                    key,
                    format!("only allowed with `credential.mechanism: {name}`"),
                );
                None
            }
            (None, true) => {
                self.err(
                    "credential.mechanism",
                    format!("{name} requires a `{key}` section ({keys})"),
                );
                None
            }
            (None, false) => None,
        }
    }

    fn required_text(&mut self, key: &str, value: Option<String>) -> String {
        match value {
            Some(s) if !s.is_empty() && s.chars().all(|c| !c.is_control()) => s,
            Some(_) => {
                self.err(key, "must be non-empty text without control characters");
                String::new()
            }
            None => {
                self.err(key, "required, non-empty");
                String::new()
            }
        }
    }
}

/// `https://host[:port]/path`, without user info or fragment.
fn check_token_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| "not a valid URL; expected `https://host/path`".to_string())?;
    if uri.scheme_str() != Some("https") {
        return Err("must be an `https://` URL (tokens are only fetched over TLS)".to_string());
    }
    let Some(authority) = uri.authority() else {
        return Err("missing host; expected `https://host/path`".to_string());
    };
    if authority.as_str().contains('@') {
        return Err("must not contain user information".to_string());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if rustls_pki_types::ServerName::try_from(host).is_err() {
        return Err(format!("`{host}` is not a valid DNS name or IP address"));
    }
    Ok(())
}

/// `xx-name-N` (also `us-gov-west-1`): lowercase letters, digits and dashes.
fn is_region(s: &str) -> bool {
    (4..=32).contains(&s.len())
        && s.split('-').count() >= 3
        && s.split('-').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Policy, PolicyError};
    use super::*;

    const PIN: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    const DIGEST: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn policy(credential_extra: &str, rest: &str) -> String {
        format!(
            "version: 1\ntenant: acme\nupstream:\n  address: smtp.office365.com:587\n\
             credential:\n  secret_dir: /s\n  pins: [ \"{PIN}\" ]\n{credential_extra}\
             client:\n  accept:\n    - username: app\n      password: {DIGEST}\n\
             senders: [ \"*@acme.example\" ]\n{rest}"
        )
    }

    fn parse_ok(text: &str) -> Policy {
        parse(text, std::path::Path::new("p.yaml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn parse_err(text: &str) -> Vec<PolicyError> {
        match parse(text, std::path::Path::new("p.yaml")) {
            Ok(_) => panic!("expected errors in:\n{text}"),
            Err(e) => e.0,
        }
    }

    const OAUTH2: &str = "  mechanism: xoauth2\n  oauth2:\n    flow: client_credentials\n\
        \x20   token_url: https://login.microsoftonline.com/d/oauth2/v2.0/token\n\
        \x20   scope: https://outlook.office365.com/.default\n    user: billing@acme.example\n";

    #[test]
    fn oauth2_section() {
        let p = parse_ok(&policy(OAUTH2, ""));
        let o = p.credential.oauth2.expect("oauth2");
        assert_eq!(p.credential.mechanism, Mechanism::XOAuth2);
        assert_eq!(o.flow, OAuth2Flow::ClientCredentials);
        assert_eq!(o.user, "billing@acme.example");
        assert_eq!(o.refresh_before, Duration::from_secs(300));
        let jwt = OAUTH2.replace("client_credentials", "jwt_bearer") + "    refresh_before: 10m\n";
        let o = parse_ok(&policy(&jwt, ""))
            .credential
            .oauth2
            .expect("oauth2");
        assert_eq!(
            (o.flow, o.refresh_before),
            (OAuth2Flow::JwtBearer, Duration::from_secs(600))
        );
    }

    #[test]
    fn oauth2_errors_name_file_line_and_key() {
        let e = parse_err(&policy("  mechanism: xoauth2\n", ""));
        assert_eq!(e[0].key, "credential.mechanism");
        let e = parse_err(&policy(
            &OAUTH2.replace("https://login", "http://login"),
            "",
        ));
        assert_eq!(
            (e[0].key.as_str(), e[0].line),
            ("credential.oauth2.token_url", 11)
        );
        let e = parse_err(&policy(&(OAUTH2.to_string() + "    secret: x\n"), ""));
        assert!(e[0].message.contains("secret"), "{e:?}");
        let e = parse_err(&policy(
            &OAUTH2.replace("    user: billing@acme.example\n", ""),
            "",
        ));
        assert_eq!(e[0].key, "credential.oauth2.user");
        let e = parse_err(&policy(&OAUTH2.replace("xoauth2", "plain"), ""));
        assert_eq!(e[0].key, "credential.oauth2");
        let mounted = policy(OAUTH2, "").replace(DIGEST, "mounted");
        let e = parse_err(&mounted);
        assert_eq!(e[0].key, "client.accept[0].password");
        assert!(e[0].message.contains("xoauth2"), "{e:?}");
    }

    #[test]
    fn ses_section() {
        let ses = "  mechanism: ses\n  ses:\n    region: eu-west-1\n";
        let p = parse_ok(&policy(ses, ""));
        assert_eq!(p.credential.ses.expect("ses").region, "eu-west-1");
        let e = parse_err(&policy(&ses.replace("eu-west-1", "Europe"), ""));
        assert_eq!(e[0].key, "credential.ses.region");
        let e = parse_err(&policy("  mechanism: ses\n", ""));
        assert_eq!(e[0].key, "credential.mechanism");
        let e = parse_err(&policy(ses, "").replace(DIGEST, "mounted"));
        assert_eq!(e[0].key, "client.accept[0].password");
    }

    #[test]
    fn rate_section() {
        let p = parse_ok(&policy(
            "",
            "limits:\n  rate:\n    messages_per_second: 14\n",
        ));
        let r = p.limits.rate.expect("rate");
        assert_eq!((r.burst, r.max_wait), (14, Duration::from_secs(5)));
        let p = parse_ok(&policy(
            "",
            "limits:\n  rate:\n    messages_per_second: 0.5\n    burst: 3\n    max_wait: 100ms\n",
        ));
        let r = p.limits.rate.expect("rate");
        assert_eq!((r.messages_per_second, r.burst), (0.5, 3));
        assert!(parse_ok(&policy("", "")).limits.rate.is_none());
        let e = parse_err(&policy(
            "",
            "limits:\n  rate:\n    messages_per_second: 0\n",
        ));
        assert_eq!(
            (e[0].key.as_str(), e[0].line),
            ("limits.rate.messages_per_second", 15)
        );
        let e = parse_err(&policy("", "limits:\n  rate:\n    burst: 3\n"));
        assert_eq!(e[0].key, "limits.rate.messages_per_second");
        let e = parse_err(&policy(
            "",
            "limits:\n  rate:\n    messages_per_second: 1\n    per: 1s\n",
        ));
        assert!(e[0].message.contains("per"), "{e:?}");
    }

    #[test]
    fn rate_bounds_of_the_contract() {
        // (0, 100000], burst [1, 100000], max_wait at most 1h.
        let rate = |body: &str| policy("", &format!("limits:\n  rate:\n{body}"));
        for ok in [
            "    messages_per_second: 1e-20\n",
            "    messages_per_second: 100000\n    burst: 100000\n    max_wait: 60m\n",
            "    messages_per_second: 0.3\n    burst: 1\n    max_wait: 1ms\n",
        ] {
            let p = parse_ok(&rate(ok));
            assert!(p.limits.rate.expect("rate").burst >= 1);
        }
        assert_eq!(
            parse_ok(&rate("    messages_per_second: 99999.5\n"))
                .limits
                .rate
                .map(|r| r.burst),
            Some(100_000)
        );
        for (bad, key) in [
            (
                "    messages_per_second: 100000.5\n",
                "limits.rate.messages_per_second",
            ),
            (
                "    messages_per_second: -1\n",
                "limits.rate.messages_per_second",
            ),
            (
                "    messages_per_second: .nan\n",
                "limits.rate.messages_per_second",
            ),
            (
                "    messages_per_second: .inf\n",
                "limits.rate.messages_per_second",
            ),
            (
                "    messages_per_second: 1\n    burst: 0\n",
                "limits.rate.burst",
            ),
            (
                "    messages_per_second: 1\n    burst: 100001\n",
                "limits.rate.burst",
            ),
            (
                "    messages_per_second: 1\n    max_wait: 3601s\n",
                "limits.rate.max_wait",
            ),
            (
                "    messages_per_second: 1\n    max_wait: 61m\n",
                "limits.rate.max_wait",
            ),
        ] {
            let e = parse_err(&rate(bad));
            assert_eq!(e[0].key, key, "{bad}: {e:?}");
            assert!(e[0].line > 0 && e[0].col > 0, "{e:?}");
        }
    }

    #[test]
    fn token_urls() {
        assert!(check_token_url("https://login.microsoftonline.com/x/oauth2/v2.0/token").is_ok());
        assert!(check_token_url("https://127.0.0.1:8443/token").is_ok());
        assert!(check_token_url("http://oauth2.googleapis.com/token").is_err());
        assert!(check_token_url("https://u:p@example.com/token").is_err());
        assert!(check_token_url("token").is_err());
    }

    #[test]
    fn regions() {
        for ok in ["us-east-1", "eu-west-1", "us-gov-west-1", "ap-southeast-2"] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in ["", "us", "US-EAST-1", "us-east-", "eu west 1", "us_east_1"] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}
