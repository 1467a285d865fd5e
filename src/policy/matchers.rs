//! Sender and recipient-domain matchers.
//!
//! Both compare ASCII case-insensitively and ignore one trailing dot on a
//! domain (`example.com.` is `example.com`). Patterns are validated when the
//! policy is loaded, so matching itself cannot fail.

/// One `senders` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SenderPattern {
    /// `<>`: the null reverse-path (bounces).
    Null,
    /// `*@domain`: any local part at exactly this domain.
    AnyLocal(String),
    /// `*@*.domain`: any local part at any subdomain of `domain` (not `domain` itself).
    /// Stored with its leading dot (`.domain`).
    AnySubdomain(String),
    /// `local@domain`: exactly this address.
    Exact { local: String, domain: String },
}

/// The `senders` allow-list for `MAIL FROM` (and the header From: check).
#[derive(Debug, Clone)]
pub struct SenderMatcher {
    patterns: Vec<SenderPattern>,
}

const SENDER_FORMS: &str = "expected `*@domain`, `*@*.domain`, `local@domain` or `<>`";

impl SenderMatcher {
    /// Parses the `senders` patterns; on error returns the index of the first
    /// bad pattern and what is wrong with it.
    pub fn parse(patterns: &[String]) -> Result<Self, (usize, String)> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| parse_sender(p).map_err(|m| (i, m)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SenderMatcher { patterns })
    }

    /// Whether `address` (a reverse-path without angle brackets; `""` for the
    /// null sender `<>`) is allowed.
    pub fn allows(&self, address: &str) -> bool {
        if address.is_empty() {
            return self.patterns.contains(&SenderPattern::Null);
        }
        let Some((local, domain)) = split_address(address) else {
            return false;
        };
        self.allows_mailbox(local, domain)
    }

    /// Whether the mailbox `local@domain` (a parsed path: the local part
    /// unquoted, which may itself hold `@`) is allowed.
    pub fn allows_mailbox(&self, local: &str, domain: &str) -> bool {
        // Patterns are stored lowercased: compare without allocating.
        self.patterns.iter().any(|p| match p {
            SenderPattern::Null => false,
            SenderPattern::AnyLocal(d) => domain.eq_ignore_ascii_case(d),
            SenderPattern::AnySubdomain(suffix) => ends_with_ignore_ascii_case(domain, suffix),
            SenderPattern::Exact {
                local: l,
                domain: d,
            } => local.eq_ignore_ascii_case(l) && domain.eq_ignore_ascii_case(d),
        })
    }

    /// A matcher that allows no sender at all (a placeholder while a policy
    /// with errors is being validated).
    pub(crate) fn deny_all() -> Self {
        SenderMatcher {
            patterns: Vec::new(),
        }
    }

    /// Whether the null sender `<>` is allowed.
    pub fn allows_null(&self) -> bool {
        self.patterns.contains(&SenderPattern::Null)
    }
}

/// `text` is longer than `suffix` and ends with it, ASCII case-insensitively.
fn ends_with_ignore_ascii_case(text: &str, suffix: &str) -> bool {
    let (t, s) = (text.as_bytes(), suffix.as_bytes());
    t.len() > s.len() && t[t.len() - s.len()..].eq_ignore_ascii_case(s)
}

/// `local@domain` with exactly one `@`, both parts non-empty, one trailing dot
/// of the domain removed.
fn split_address(address: &str) -> Option<(&str, &str)> {
    let (local, domain) = address.split_once('@')?;
    if domain.contains('@') {
        return None;
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some((local, domain))
}

fn parse_sender(pattern: &str) -> Result<SenderPattern, String> {
    if pattern == "<>" {
        return Ok(SenderPattern::Null);
    }
    if pattern.is_empty() {
        return Err(format!("empty pattern; {SENDER_FORMS}"));
    }
    if pattern.matches('@').count() != 1 {
        return Err(format!("must contain exactly one `@`; {SENDER_FORMS}"));
    }
    let (local, domain) = pattern
        .split_once('@')
        .ok_or_else(|| format!("must contain exactly one `@`; {SENDER_FORMS}"))?;
    if local == "*" {
        if let Some(parent) = domain.strip_prefix("*.") {
            let parent = normalize_domain(parent)?;
            return Ok(SenderPattern::AnySubdomain(format!(".{parent}")));
        }
        return Ok(SenderPattern::AnyLocal(normalize_domain(domain)?));
    }
    if local.is_empty() {
        return Err(format!("empty local part; {SENDER_FORMS}"));
    }
    if local.contains('*') {
        return Err("a wildcard local part must be exactly `*`".to_string());
    }
    if let Some(c) = local
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '<' | '>'))
    {
        return Err(format!("local part contains the invalid character {c:?}"));
    }
    if domain.starts_with("*.") {
        return Err(
            "a `*.` subdomain wildcard needs the local part `*` (`*@*.domain`)".to_string(),
        );
    }
    Ok(SenderPattern::Exact {
        local: local.to_ascii_lowercase(),
        domain: normalize_domain(domain)?,
    })
}

/// Validates a domain name (no wildcard) and returns it lowercased without a
/// trailing dot.
fn normalize_domain(domain: &str) -> Result<String, String> {
    let d = domain.strip_suffix('.').unwrap_or(domain);
    if d.is_empty() {
        return Err("empty domain".to_string());
    }
    if d.contains('*') {
        return Err("`*` is only allowed as a whole leading label (`*.domain`)".to_string());
    }
    if d.len() > 253 {
        return Err("domain longer than 253 characters".to_string());
    }
    for label in d.split('.') {
        if label.is_empty() {
            return Err("domain has an empty label".to_string());
        }
        if label.len() > 63 {
            return Err("domain label longer than 63 characters".to_string());
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("domain contains the invalid character {c:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("domain label starts or ends with `-`".to_string());
        }
    }
    Ok(d.to_ascii_lowercase())
}

/// One `recipients.domains` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DomainPattern {
    /// `example.com`: exactly this domain.
    Exact(String),
    /// `*.example.com`: any subdomain (not the domain itself); stored as `.example.com`.
    Subdomains(String),
}

/// The `recipients.domains` allow-list. Empty = any domain.
#[derive(Debug, Clone, Default)]
pub struct DomainMatcher {
    patterns: Vec<DomainPattern>,
}

impl DomainMatcher {
    /// Parses `example.com` / `*.example.com` patterns; on error returns the
    /// index of the first bad pattern and what is wrong with it.
    pub fn parse(patterns: &[String]) -> Result<Self, (usize, String)> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let parsed = match p.strip_prefix("*.") {
                    Some(parent) => {
                        normalize_domain(parent).map(|d| DomainPattern::Subdomains(format!(".{d}")))
                    }
                    None => normalize_domain(p).map(DomainPattern::Exact),
                };
                parsed.map_err(|m| (i, format!("{m}; expected `example.com` or `*.example.com`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DomainMatcher { patterns })
    }

    /// A matcher that allows every domain.
    pub fn any() -> Self {
        DomainMatcher::default()
    }

    /// True when no domains are listed (every recipient domain is allowed).
    pub fn is_any(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the recipient `addr` is allowed: its domain is the part after
    /// the last `@` (one trailing dot ignored). An address without a domain is
    /// allowed only when the list is empty.
    pub fn allows_address(&self, addr: &str) -> bool {
        if self.is_any() {
            return true;
        }
        match addr.rsplit_once('@') {
            Some((_, domain)) => self.allows_domain(domain),
            None => false,
        }
    }

    /// Whether `domain` (one trailing dot ignored) is allowed.
    pub fn allows_domain(&self, domain: &str) -> bool {
        if self.is_any() {
            return true;
        }
        let d = domain.strip_suffix('.').unwrap_or(domain);
        if d.is_empty() {
            return false;
        }
        self.patterns.iter().any(|p| match p {
            DomainPattern::Exact(e) => d.eq_ignore_ascii_case(e),
            DomainPattern::Subdomains(suffix) => ends_with_ignore_ascii_case(d, suffix),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn senders(p: &[&str]) -> SenderMatcher {
        SenderMatcher::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn sender_err(p: &[&str]) -> (usize, String) {
        SenderMatcher::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap_err()
    }

    fn domains(p: &[&str]) -> DomainMatcher {
        DomainMatcher::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn any_local_at_exact_domain() {
        let m = senders(&["*@acme.example"]);
        assert!(m.allows("a@acme.example"));
        assert!(m.allows("Billing@ACME.Example"));
        assert!(m.allows("a@acme.example."));
        assert!(!m.allows("a@sub.acme.example"));
        assert!(!m.allows("a@notacme.example"));
        assert!(!m.allows("a@acme.example.evil"));
        assert!(!m.allows(""));
        assert!(!m.allows("acme.example"));
        assert!(!m.allows("@acme.example"));
        assert!(!m.allows("a@b@acme.example"));
        assert!(!m.allows("a@"));
    }

    #[test]
    fn any_subdomain() {
        let m = senders(&["*@*.acme.example"]);
        assert!(m.allows("a@mail.acme.example"));
        assert!(m.allows("a@x.y.ACME.example"));
        assert!(!m.allows("a@acme.example"));
        assert!(!m.allows("a@notacme.example"));
        assert!(!m.allows("a@.acme.example.x"));
    }

    #[test]
    fn exact_address_case_insensitive() {
        let m = senders(&["Billing@Acme-Mail.example"]);
        assert!(m.allows("billing@acme-mail.example"));
        assert!(m.allows("BILLING@ACME-MAIL.EXAMPLE"));
        assert!(!m.allows("billing2@acme-mail.example"));
        assert!(!m.allows("billing@other.example"));
    }

    #[test]
    fn null_sender() {
        let m = senders(&["*@acme.example"]);
        assert!(!m.allows(""));
        assert!(!m.allows_null());
        let m = senders(&["<>", "*@acme.example"]);
        assert!(m.allows(""));
        assert!(m.allows_null());
        assert!(!m.allows("<>"));
    }

    #[test]
    fn bad_sender_patterns() {
        assert_eq!(sender_err(&["*@a.example", ""]).0, 1);
        assert_eq!(sender_err(&["acme.example"]).0, 0);
        assert!(sender_err(&["a@b@c"]).1.contains("exactly one `@`"));
        assert!(sender_err(&["*@"]).1.contains("empty domain"));
        assert!(sender_err(&["@acme.example"])
            .1
            .contains("empty local part"));
        assert!(sender_err(&["a*@acme.example"]).1.contains("exactly `*`"));
        assert!(sender_err(&["*@a.*.example"]).1.contains("leading label"));
        assert!(sender_err(&["*@*"]).1.contains("leading label"));
        assert!(sender_err(&["a@*.acme.example"])
            .1
            .contains("local part `*`"));
        assert!(sender_err(&["*@acme..example"]).1.contains("empty label"));
        assert!(sender_err(&["*@acme example"])
            .1
            .contains("invalid character"));
        assert!(sender_err(&["a b@acme.example"])
            .1
            .contains("invalid character"));
        assert!(sender_err(&["*@-acme.example"]).1.contains("`-`"));
        assert!(sender_err(&["<a>@acme.example"])
            .1
            .contains("invalid character"));
    }

    #[test]
    fn domain_matcher() {
        let any = domains(&[]);
        assert!(any.is_any());
        assert!(any.allows_address("x@anything.example"));
        assert!(any.allows_address("postmaster"));
        assert!(DomainMatcher::any().is_any());

        let m = domains(&["Example.com", "*.corp.example"]);
        assert!(!m.is_any());
        assert!(m.allows_address("a@example.com"));
        assert!(m.allows_address("a@EXAMPLE.COM."));
        assert!(!m.allows_address("a@sub.example.com"));
        assert!(m.allows_address("a@eu.corp.example"));
        assert!(m.allows_address("\"a@b\"@eu.corp.example"));
        assert!(!m.allows_address("a@corp.example"));
        assert!(!m.allows_address("a@xcorp.example"));
        assert!(!m.allows_address("postmaster"));
        assert!(!m.allows_address("a@"));
        assert!(!m.allows_address("a@."));
    }

    #[test]
    fn bad_domain_patterns() {
        let err = |p: &[&str]| {
            DomainMatcher::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap_err()
        };
        assert_eq!(err(&["ok.example", "*"]).0, 1);
        assert_eq!(err(&["a.*.example"]).0, 0);
        assert_eq!(err(&["*.*.example"]).0, 0);
        assert_eq!(err(&["a@example.com"]).0, 0);
        assert_eq!(err(&[""]).0, 0);
        assert!(err(&["a@example.com"]).1.contains("*.example.com"));
    }
}
