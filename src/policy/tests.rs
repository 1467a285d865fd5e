use super::yaml_error::redact_strings;
use super::*;

const PIN_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const PIN: &str = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const PIN2: &str = "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

/// A readable file that exists in every build of this module.
const READABLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");

/// The full example of contract §3, with a real pin and a readable CA file.
fn contract_example() -> String {
    format!(
        r#"version: 1
tenant: acme                          # required; appears in every log line and metric
listen: 127.0.0.1:2525                # default; a non-loopback address requires `listen_insecure_ok: true`
admin: 0.0.0.0:9525                   # default; /metrics /healthz /readyz
upstream:
  address: smtp.sendgrid.net:587      # host:port
  tls: starttls                       # starttls | implicit | none
  insecure: false                     # must be true for `tls: none` (tests, benchmarks)
  ca_file: {READABLE}       # optional; default: the webpki roots
  server_name: smtp.sendgrid.net      # optional; default: host of `address`
  ehlo_name: acme-mailer              # optional
  connect_timeout: 10s
credential:
  secret_dir: /var/run/secrets/smtpbind   # a kubernetes.io/basic-auth Secret: files `username`, `password`
  mechanism: auto                     # auto | plain | login  (auto: PLAIN if offered, else LOGIN)
  pins: [ "{PIN}" ]      # sha256 of the `password` file's bytes; list allows rotation
client:
  auth: required                      # required | none (none: any local client is this tenant)
  accept:                             # identities the app in this pod may present
    - username: apikey
      password: mounted               # mounted | sha256:<hex> | any
senders: [ "*@acme.example", "billing@acme-mail.example" ]   # MAIL FROM allow-list; "<>" allows bounces
header_from: enforce                  # enforce | ignore: the RFC 5322 From: domain must match `senders`
recipients:
  max_per_message: 100
  domains: []                         # optional allow-list of recipient domains
limits:
  max_message_bytes: 31457280
  max_sessions: 128
  command_timeout: 300s
  data_timeout: 600s
data:
  bare_lf: reject                     # reject | normalize
"#
    )
}

/// A minimal valid policy; line numbers are relied on by the tests.
fn base() -> String {
    format!(
        r#"version: 1
tenant: acme
upstream:
  address: smtp.example.com:587
  tls: starttls
credential:
  secret_dir: /var/run/secrets/smtpbind
  pins: [ "{PIN}" ]
client:
  accept:
    - username: apikey
      password: mounted
senders: [ "*@acme.example" ]
"#
    )
}

/// `base()` with each `(from, to)` replaced once (`from` must occur).
fn edit(pairs: &[(&str, &str)]) -> String {
    let mut s = base();
    for (from, to) in pairs {
        assert!(s.contains(from), "{from:?} not in base");
        s = s.replacen(from, to, 1);
    }
    s
}

fn parse_str(text: &str) -> Result<Policy, PolicyErrors> {
    parse(text, Path::new("p.yaml"))
}

fn ok(text: &str) -> Policy {
    match parse_str(text) {
        Ok(p) => p,
        Err(e) => panic!("unexpected errors:\n{e}\n--- in:\n{text}"),
    }
}

fn errs(text: &str) -> Vec<PolicyError> {
    match parse_str(text) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(e) => e.0,
    }
}

/// Exactly one error; returns (line, col, key, message).
fn err1(text: &str) -> (usize, usize, String, String) {
    let e = errs(text);
    assert_eq!(
        e.len(),
        1,
        "expected one error, got:\n{}",
        PolicyErrors(e.clone())
    );
    let e = e.into_iter().next().unwrap();
    (e.line, e.col, e.key, e.message)
}

#[track_caller]
fn assert_err(text: &str, line: usize, col: usize, key: &str, msg_part: &str) {
    let (l, c, k, m) = err1(text);
    assert_eq!(
        (l, c, k.as_str()),
        (line, col, key),
        "message: {m}\n--- in:\n{text}"
    );
    assert!(m.contains(msg_part), "{m:?} does not contain {msg_part:?}");
}

#[test]
fn contract_example_parses_to_expected_values() {
    let p = ok(&contract_example());
    assert_eq!(p.tenant, "acme");
    assert_eq!(p.listen, "127.0.0.1:2525".parse::<SocketAddr>().unwrap());
    assert!(!p.listen_insecure_ok);
    assert_eq!(p.admin, "0.0.0.0:9525".parse::<SocketAddr>().unwrap());
    let u = &p.upstream;
    assert_eq!(u.address, "smtp.sendgrid.net:587");
    assert_eq!((u.host.as_str(), u.port), ("smtp.sendgrid.net", 587));
    assert_eq!(u.tls, TlsMode::StartTls);
    assert!(!u.insecure);
    assert_eq!(u.ca_file.as_deref(), Some(Path::new(READABLE)));
    assert_eq!(u.server_name, "smtp.sendgrid.net");
    assert_eq!(u.ehlo_name, "acme-mailer");
    assert_eq!(u.connect_timeout, Duration::from_secs(10));
    assert_eq!(u.reply_timeout, Duration::from_secs(120));
    assert_eq!(u.reuse.max_idle, 16);
    assert_eq!(u.reuse.idle_timeout, Duration::from_secs(30));
    let c = &p.credential;
    assert_eq!(c.secret_dir, Path::new("/var/run/secrets/smtpbind"));
    assert_eq!(c.mechanism, Mechanism::Auto);
    assert_eq!(c.pins, vec![Pin::of(b"test")]);
    assert_eq!(p.client.auth, ClientAuth::Required);
    assert_eq!(p.client.accept.len(), 1);
    assert_eq!(p.client.accept[0].username, "apikey");
    assert_eq!(p.client.accept[0].password, PasswordMatch::Mounted);
    assert!(p.senders.allows("x@acme.example"));
    assert!(p.senders.allows("billing@acme-mail.example"));
    assert!(!p.senders.allows("other@acme-mail.example"));
    assert!(!p.senders.allows(""));
    assert_eq!(p.header_from, HeaderFrom::Enforce);
    assert_eq!(p.recipients.max_per_message, 100);
    assert!(p.recipients.domains.is_any());
    assert_eq!(p.limits.max_message_bytes, 31_457_280);
    assert_eq!(p.limits.max_sessions, 128);
    assert_eq!(p.limits.command_timeout, Duration::from_secs(300));
    assert_eq!(p.limits.data_timeout, Duration::from_secs(600));
    assert_eq!(p.data.bare_lf, BareLf::Reject);
    assert_eq!(p.shutdown.drain, Duration::from_secs(20));
}

#[test]
fn defaults_apply_to_a_minimal_policy() {
    let p = ok(&base());
    assert_eq!(p.listen, "127.0.0.1:2525".parse::<SocketAddr>().unwrap());
    assert_eq!(p.admin, "0.0.0.0:9525".parse::<SocketAddr>().unwrap());
    assert_eq!(p.upstream.tls, TlsMode::StartTls);
    assert!(!p.upstream.insecure);
    assert_eq!(p.upstream.ca_file, None);
    assert_eq!(p.upstream.server_name, "smtp.example.com");
    assert_eq!(p.upstream.ehlo_name, "smtpbind-acme");
    assert_eq!(p.upstream.connect_timeout, Duration::from_secs(10));
    assert_eq!(p.upstream.reply_timeout, Duration::from_secs(120));
    assert_eq!(p.upstream.reuse.max_idle, 16);
    assert_eq!(p.upstream.reuse.idle_timeout, Duration::from_secs(30));
    assert_eq!(p.credential.mechanism, Mechanism::Auto);
    assert_eq!(p.client.auth, ClientAuth::Required);
    assert_eq!(p.header_from, HeaderFrom::Enforce);
    assert_eq!(p.recipients.max_per_message, 100);
    assert!(p.recipients.domains.is_any());
    assert_eq!(p.limits.max_message_bytes, 31_457_280);
    assert_eq!(p.limits.max_sessions, 128);
    assert_eq!(p.limits.command_timeout, Duration::from_secs(300));
    assert_eq!(p.limits.data_timeout, Duration::from_secs(600));
    assert_eq!(p.data.bare_lf, BareLf::Reject);
    assert_eq!(p.shutdown.drain, Duration::from_secs(20));
}

#[test]
fn extra_keys_parse() {
    let p = ok(&format!(
            "{}listen: 0.0.0.0:2525\nlisten_insecure_ok: true\nshutdown:\n  drain: 1m\n",
            edit(&[(
                "  tls: starttls\n",
                "  tls: none\n  insecure: true\n  reply_timeout: 500ms\n  reuse: {max_idle: 0, idle_timeout: 5s}\n"
            )])
        ));
    assert!(p.listen_insecure_ok);
    assert_eq!(p.listen.port(), 2525);
    assert_eq!(p.upstream.tls, TlsMode::None);
    assert!(p.upstream.insecure);
    assert_eq!(p.upstream.reply_timeout, Duration::from_millis(500));
    assert_eq!(p.upstream.reuse.max_idle, 0);
    assert_eq!(p.upstream.reuse.idle_timeout, Duration::from_secs(5));
    assert_eq!(p.shutdown.drain, Duration::from_secs(60));
}

#[test]
fn version_must_be_1() {
    assert_err(
        &edit(&[("version: 1", "version: 2")]),
        1,
        1,
        "version",
        "must be 1",
    );
    assert_err(&edit(&[("version: 1\n", "")]), 1, 1, "version", "required");
}

#[test]
fn tenant_rules() {
    assert_err(
        &edit(&[("tenant: acme", "tenant: Acme")]),
        2,
        1,
        "tenant",
        "1-63",
    );
    assert_err(
        &edit(&[("tenant: acme", "tenant: a/b")]),
        2,
        1,
        "tenant",
        "1-63",
    );
    assert_err(
        &edit(&[("tenant: acme", "tenant: \"\"")]),
        2,
        1,
        "tenant",
        "1-63",
    );
    let long = format!("tenant: {}", "a".repeat(64));
    assert_err(&edit(&[("tenant: acme", &long)]), 2, 1, "tenant", "1-63");
    let max = format!("tenant: {}", "a".repeat(63));
    ok(&edit(&[("tenant: acme", &max)]));
    ok(&edit(&[("tenant: acme", "tenant: a.b_c-1")]));
    assert_err(&edit(&[("tenant: acme\n", "")]), 1, 1, "tenant", "required");
}

#[test]
fn listen_and_admin_rules() {
    let t = format!("{}listen: nope\n", base());
    assert_err(&t, 14, 1, "listen", "socket address");
    let t = format!("{}admin: 1.2.3.4\n", base());
    assert_err(&t, 14, 1, "admin", "socket address");
    let t = format!("{}listen: 0.0.0.0:2525\n", base());
    assert_err(&t, 14, 1, "listen", "listen_insecure_ok: true");
    let t = format!(
        "{}listen: 0.0.0.0:2525\nlisten_insecure_ok: false\n",
        base()
    );
    assert_err(&t, 14, 1, "listen", "listen_insecure_ok: true");
    ok(&format!(
        "{}listen: \"[::1]:2525\"\nadmin: 127.0.0.1:0\n",
        base()
    ));
    assert!(check_listen("10.0.0.1:25".parse().unwrap(), false).is_err());
    assert!(check_listen("10.0.0.1:25".parse().unwrap(), true).is_ok());
    assert!(check_listen("127.0.0.2:25".parse().unwrap(), false).is_ok());
}

#[test]
fn upstream_address_rules() {
    let a = |v: &str| edit(&[("smtp.example.com:587", v)]);
    assert_err(
        &edit(&[("  address: smtp.example.com:587\n", "")]),
        3,
        1,
        "upstream.address",
        "required",
    );
    assert_err(
        &a("smtp.example.com"),
        4,
        3,
        "upstream.address",
        "host:port",
    );
    assert_err(
        &a("smtp.example.com:0"),
        4,
        3,
        "upstream.address",
        "1 to 65535",
    );
    assert_err(
        &a("smtp.example.com:65536"),
        4,
        3,
        "upstream.address",
        "1 to 65535",
    );
    assert_err(
        &a("smtp.example.com:+25"),
        4,
        3,
        "upstream.address",
        "1 to 65535",
    );
    assert_err(&a(":25"), 4, 3, "upstream.address", "empty host");
    assert_err(&a("::1:25"), 4, 3, "upstream.address", "brackets");
    assert_err(&a("\"[::1]25\""), 4, 3, "upstream.address", "`:port`");
    assert_err(&a("\"[nope]:25\""), 4, 3, "upstream.address", "IPv6");
    assert_err(
        &a("bad_host!:25"),
        4,
        3,
        "upstream.address",
        "not a valid DNS name",
    );
    let p = ok(&a("\"[::1]:2525\""));
    assert_eq!((p.upstream.host.as_str(), p.upstream.port), ("::1", 2525));
    assert_eq!(p.upstream.server_name, "::1");
    let p = ok(&a("192.0.2.1:65535"));
    assert_eq!(
        (p.upstream.host.as_str(), p.upstream.port),
        ("192.0.2.1", 65535)
    );
    // no upstream section at all
    let t = edit(&[(
        "upstream:\n  address: smtp.example.com:587\n  tls: starttls\n",
        "",
    )]);
    assert_err(&t, 1, 1, "upstream.address", "required");
}

#[test]
fn tls_and_insecure_rules() {
    assert_err(
        &edit(&[("tls: starttls", "tls: none")]),
        5,
        3,
        "upstream.tls",
        "insecure: true",
    );
    assert_err(
        &edit(&[("tls: starttls", "tls: none\n  insecure: false")]),
        5,
        3,
        "upstream.tls",
        "insecure: true",
    );
    ok(&edit(&[("tls: starttls", "tls: none\n  insecure: true")]));
    let msg = "insecure only applies to tls: none; TLS is always verified";
    assert_err(
        &edit(&[("tls: starttls", "tls: starttls\n  insecure: true")]),
        6,
        3,
        "upstream.insecure",
        msg,
    );
    assert_err(
        &edit(&[("tls: starttls", "tls: implicit\n  insecure: true")]),
        6,
        3,
        "upstream.insecure",
        msg,
    );
    assert_err(
        &edit(&[("  tls: starttls", "  insecure: true")]),
        5,
        3,
        "upstream.insecure",
        msg,
    );
    assert_eq!(
        ok(&edit(&[("tls: starttls", "tls: implicit")]))
            .upstream
            .tls,
        TlsMode::Implicit
    );
    // enum values are case-sensitive; serde reports the unknown variant at the value
    assert_err(
        &edit(&[("tls: starttls", "tls: STARTTLS")]),
        5,
        8,
        "upstream.tls",
        "unknown variant `STARTTLS`",
    );
}

#[test]
fn chunking_knob() {
    assert_eq!(ok(&edit(&[])).upstream.chunking, Chunking::Auto);
    let off = edit(&[("  tls: starttls\n", "  tls: starttls\n  chunking: off\n")]);
    assert_eq!(ok(&off).upstream.chunking, Chunking::Off);
    assert_err(
        &edit(&[("  tls: starttls\n", "  tls: starttls\n  chunking: on\n")]),
        6,
        13,
        "upstream.chunking",
        "unknown variant `on`",
    );
}

#[test]
fn ca_file_rules() {
    let with = |p: &str| {
        edit(&[(
            "  tls: starttls\n",
            &format!("  tls: starttls\n  ca_file: {p}\n"),
        )])
    };
    let (l, c, k, m) = err1(&with("/nonexistent/smtpbind/ca.pem"));
    assert_eq!((l, c, k.as_str()), (6, 3, "upstream.ca_file"));
    assert!(
        m.contains("/nonexistent/smtpbind/ca.pem") && m.contains("not found"),
        "{m}"
    );
    assert_err(&with("/"), 6, 3, "upstream.ca_file", "not a regular file");
    assert_err(&with("\"\""), 6, 3, "upstream.ca_file", "empty path");
    ok(&with(READABLE));
}

#[test]
fn server_name_and_ehlo_name_rules() {
    let with = |k: &str, v: &str| {
        edit(&[(
            "  tls: starttls\n",
            &format!("  tls: starttls\n  {k}: {v}\n"),
        )])
    };
    assert_err(
        &with("server_name", "\"bad name\""),
        6,
        3,
        "upstream.server_name",
        "valid DNS name",
    );
    assert_err(
        &with("server_name", "\"\""),
        6,
        3,
        "upstream.server_name",
        "valid DNS name",
    );
    assert_eq!(
        ok(&with("server_name", "192.0.2.7")).upstream.server_name,
        "192.0.2.7"
    );
    assert_eq!(
        ok(&with("server_name", "mx.example.net"))
            .upstream
            .server_name,
        "mx.example.net"
    );
    assert_err(
        &with("ehlo_name", "\"a b\""),
        6,
        3,
        "upstream.ehlo_name",
        "printable",
    );
    assert_err(
        &with("ehlo_name", "\"a\\r\\nQUIT\""),
        6,
        3,
        "upstream.ehlo_name",
        "printable",
    );
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("1440m"), Ok(Duration::from_secs(86_400)));
    assert_eq!(
        parse_duration("86400000ms"),
        Ok(Duration::from_secs(86_400))
    );
    for bad in [
        "",
        "s",
        "10",
        "10S",
        "10h",
        "10 s",
        " 10s",
        "-1s",
        "1.5s",
        "+1s",
        "0s",
        "0ms",
        "1441m",
        "86401s",
        "99999999999999999999999s",
        "18446744073709551615m",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
    assert!(parse_duration("0s").unwrap_err().contains("greater than 0"));
    assert!(parse_duration("1441m").unwrap_err().contains("24h"));
    assert!(parse_duration("10").unwrap_err().contains("missing unit"));

    let up = |k: &str, v: &str| {
        edit(&[(
            "  tls: starttls\n",
            &format!("  tls: starttls\n  {k}: {v}\n"),
        )])
    };
    assert_err(
        &up("connect_timeout", "10"),
        6,
        3,
        "upstream.connect_timeout",
        "missing unit",
    );
    assert_err(
        &up("connect_timeout", "0s"),
        6,
        3,
        "upstream.connect_timeout",
        "greater than 0",
    );
    assert_err(
        &up("reply_timeout", "25h"),
        6,
        3,
        "upstream.reply_timeout",
        "unknown unit",
    );
    assert_err(
        &up("reuse", "\n    idle_timeout: 1441m"),
        7,
        5,
        "upstream.reuse.idle_timeout",
        "24h",
    );
    let tail = |s: &str| format!("{}{s}", base());
    assert_err(
        &tail("limits:\n  command_timeout: 5 m\n"),
        15,
        3,
        "limits.command_timeout",
        "unknown unit",
    );
    assert_err(
        &tail("limits:\n  data_timeout: 0m\n"),
        15,
        3,
        "limits.data_timeout",
        "greater than 0",
    );
    assert_err(
        &tail("shutdown:\n  drain: 1.5s\n"),
        15,
        3,
        "shutdown.drain",
        "unknown unit",
    );
}

#[test]
fn credential_rules() {
    assert_err(
        &edit(&[("  secret_dir: /var/run/secrets/smtpbind\n", "")]),
        6,
        1,
        "credential.secret_dir",
        "required",
    );
    assert_err(
        &edit(&[("secret_dir: /var/run/secrets/smtpbind", "secret_dir: \"\"")]),
        7,
        3,
        "credential.secret_dir",
        "required",
    );
    assert_err(
        &edit(&[("  pins:", "  mechanism: cram-md5\n  pins:")]),
        8,
        14,
        "credential.mechanism",
        "unknown variant `cram-md5`",
    );
    for (m, want) in [
        ("plain", Mechanism::Plain),
        ("login", Mechanism::Login),
        ("auto", Mechanism::Auto),
    ] {
        let p = ok(&edit(&[("  pins:", &format!("  mechanism: {m}\n  pins:"))]));
        assert_eq!(p.credential.mechanism, want);
    }
    // no credential section: both required keys, at 1:1
    let e = errs(&edit(&[(
        &format!("credential:\n  secret_dir: /var/run/secrets/smtpbind\n  pins: [ \"{PIN}\" ]\n"),
        "",
    )]));
    let got: Vec<_> = e.iter().map(|e| (e.line, e.col, e.key.as_str())).collect();
    assert_eq!(
        got,
        vec![(1, 1, "credential.secret_dir"), (1, 1, "credential.pins")]
    );
}

#[test]
fn pin_rules() {
    let pins = |v: &str| edit(&[(&format!("pins: [ \"{PIN}\" ]"), &format!("pins: {v}"))]);
    assert_err(&pins("[]"), 8, 3, "credential.pins", "at least one");
    assert_err(
        &pins("[ \"sha256:abc\" ]"),
        8,
        11,
        "credential.pins[0]",
        "64 hex",
    );
    assert_err(
        &pins("[ \"md5:abc\" ]"),
        8,
        11,
        "credential.pins[0]",
        "sha256:",
    );
    let dup = format!(
        "[ \"{PIN}\", \"{PIN2}\", \"sha256:{}\" ]",
        PIN_HEX.to_uppercase()
    );
    let col = 11 + PIN.len() + 4 + PIN2.len() + 4;
    assert_err(
        &pins(&dup),
        8,
        col,
        "credential.pins[2]",
        "duplicate of credential.pins[0]",
    );
    let block = format!("\n    - {PIN}\n    - sha256:zz\n");
    assert_err(&pins(&block), 10, 7, "credential.pins[1]", "64 hex");
    assert_err(
        &edit(&[(&format!("  pins: [ \"{PIN}\" ]\n"), "")]),
        6,
        1,
        "credential.pins",
        "required",
    );
    let p = ok(&pins(&format!("[ {PIN}, {PIN2} ]")));
    assert_eq!(p.credential.pins.len(), 2);
    assert_eq!(p.credential.pins[1].to_string(), PIN2);
}

#[test]
fn client_rules() {
    let accept = "  accept:\n    - username: apikey\n      password: mounted\n";
    assert_err(
        &edit(&[(accept, "  accept: []\n")]),
        10,
        3,
        "client.accept",
        "at least one identity",
    );
    assert_err(
        &edit(&[(accept, "  auth: required\n")]),
        9,
        1,
        "client.accept",
        "at least one identity",
    );
    // no client section: auth defaults to required
    assert_err(
        &edit(&[(&format!("client:\n{accept}"), "")]),
        1,
        1,
        "client.accept",
        "at least one identity",
    );
    let p = ok(&edit(&[(accept, "  auth: none\n")]));
    assert_eq!(p.client.auth, ClientAuth::None);
    assert!(p.client.accept.is_empty());
    assert_err(
        &edit(&[(accept, "  auth: optional\n")]),
        10,
        9,
        "client.auth",
        "unknown variant `optional`",
    );
}

#[test]
fn accept_rules() {
    assert_err(
        &edit(&[("username: apikey", "username: \"\"")]),
        11,
        7,
        "client.accept[0].username",
        "non-empty",
    );
    assert_err(
        &edit(&[("- username: apikey\n      ", "- ")]),
        11,
        7,
        "client.accept[0].username",
        "required",
    );
    assert_err(
        &edit(&[("\n      password: mounted", "")]),
        11,
        7,
        "client.accept[0].password",
        "required",
    );
    let (l, c, k, m) = err1(&edit(&[("password: mounted", "password: hunter2")]));
    assert_eq!((l, c, k.as_str()), (12, 7, "client.accept[0].password"));
    assert!(!m.contains("hunter2"), "{m}");
    assert!(m.contains("not shown"), "{m}");
    let (_, _, _, m) = err1(&edit(&[(
        "password: mounted",
        "password: sha256:hunter2hunter2",
    )]));
    assert!(!m.contains("hunter2"), "{m}");
    let second = "password: mounted\n    - username: other\n      password: Mounted";
    assert_err(
        &edit(&[("password: mounted", second)]),
        14,
        7,
        "client.accept[1].password",
        "not shown",
    );
    let p = ok(&edit(&[(
        "password: mounted",
        &format!("password: {PIN}\n    - username: b\n      password: any"),
    )]));
    assert_eq!(
        p.client.accept[0].password,
        PasswordMatch::Sha256(*Pin::of(b"test").as_bytes())
    );
    assert_eq!(p.client.accept[1].username, "b");
    assert_eq!(p.client.accept[1].password, PasswordMatch::Any);
}

#[test]
fn sender_rules() {
    assert_err(
        &edit(&[("senders: [ \"*@acme.example\" ]\n", "")]),
        1,
        1,
        "senders",
        "required",
    );
    assert_err(
        &edit(&[("senders: [ \"*@acme.example\" ]", "senders: []")]),
        13,
        1,
        "senders",
        "at least one",
    );
    assert_err(
        &edit(&[(
            "senders: [ \"*@acme.example\" ]",
            "senders: [ \"*@acme.example\", \"acme.example\" ]",
        )]),
        13,
        30,
        "senders[1]",
        "exactly one `@`",
    );
    assert_err(
        &edit(&[(
            "senders: [ \"*@acme.example\" ]",
            "senders:\n  - \"<>\"\n  - \"*@*\"",
        )]),
        15,
        5,
        "senders[1]",
        "leading label",
    );
    let p = ok(&edit(&[(
        "senders: [ \"*@acme.example\" ]",
        "senders: [ \"<>\", \"*@*.acme.example\" ]",
    )]));
    assert!(p.senders.allows(""));
    assert!(p.senders.allows("a@eu.acme.example"));
    assert!(!p.senders.allows("a@acme.example"));
}

#[test]
fn header_from_and_data_enums() {
    let t = format!(
        "{}header_from: ignore\ndata:\n  bare_lf: normalize\n",
        base()
    );
    let p = ok(&t);
    assert_eq!(p.header_from, HeaderFrom::Ignore);
    assert_eq!(p.data.bare_lf, BareLf::Normalize);
    assert_err(
        &format!("{}header_from: Enforce\n", base()),
        14,
        14,
        "header_from",
        "unknown variant `Enforce`",
    );
    assert_err(
        &format!("{}data:\n  bare_lf: strip\n", base()),
        15,
        12,
        "data.bare_lf",
        "unknown variant `strip`",
    );
}

#[test]
fn recipient_rules() {
    let t = |s: &str| format!("{}recipients:\n{s}", base());
    assert_err(
        &t("  max_per_message: 0\n"),
        15,
        3,
        "recipients.max_per_message",
        "1..=1000",
    );
    assert_err(
        &t("  max_per_message: 1001\n"),
        15,
        3,
        "recipients.max_per_message",
        "1..=1000",
    );
    assert_eq!(
        ok(&t("  max_per_message: 1000\n"))
            .recipients
            .max_per_message,
        1000
    );
    assert_err(
        &t("  domains: [ example.com, \"a.*.example\" ]\n"),
        15,
        27,
        "recipients.domains[1]",
        "*.example.com",
    );
    assert_err(
        &t("  domains:\n    - \"*\"\n"),
        16,
        7,
        "recipients.domains[0]",
        "*.example.com",
    );
    let p = ok(&t("  domains: [ example.com, \"*.corp.example\" ]\n"));
    assert!(p.recipients.domains.allows_address("a@example.com"));
    assert!(p.recipients.domains.allows_address("a@x.corp.example"));
    assert!(!p.recipients.domains.allows_address("a@other.example"));
}

#[test]
fn limit_rules() {
    let t = |s: &str| format!("{}limits:\n{s}", base());
    assert_err(
        &t("  max_message_bytes: 1023\n"),
        15,
        3,
        "limits.max_message_bytes",
        "1024..=1073741824",
    );
    assert_err(
        &t("  max_message_bytes: 1073741825\n"),
        15,
        3,
        "limits.max_message_bytes",
        "1024..=1073741824",
    );
    assert_eq!(
        ok(&t("  max_message_bytes: 1073741824\n"))
            .limits
            .max_message_bytes,
        1 << 30
    );
    assert_eq!(
        ok(&t("  max_message_bytes: 1024\n"))
            .limits
            .max_message_bytes,
        1024
    );
    assert_err(
        &t("  max_sessions: 0\n"),
        15,
        3,
        "limits.max_sessions",
        "1..=100000",
    );
    assert_err(
        &t("  max_sessions: 100001\n"),
        15,
        3,
        "limits.max_sessions",
        "1..=100000",
    );
    assert_err(
        &t("  max_sessions: -1\n"),
        15,
        3,
        "limits.max_sessions",
        "1..=100000",
    );
    assert_eq!(
        ok(&t("  max_sessions: 100000\n")).limits.max_sessions,
        100_000
    );
}

#[test]
fn reuse_rules() {
    let t = |s: &str| {
        edit(&[(
            "  tls: starttls\n",
            &format!("  tls: starttls\n  reuse:\n{s}"),
        )])
    };
    assert_err(
        &t("    max_idle: 1025\n"),
        7,
        5,
        "upstream.reuse.max_idle",
        "0..=1024",
    );
    assert_err(
        &t("    max_idle: -1\n"),
        7,
        5,
        "upstream.reuse.max_idle",
        "0..=1024",
    );
    assert_eq!(ok(&t("    max_idle: 1024\n")).upstream.reuse.max_idle, 1024);
    assert_eq!(ok(&t("    max_idle: 0\n")).upstream.reuse.max_idle, 0);
}

#[test]
fn unknown_keys_name_their_full_path() {
    assert_err(
        &format!("{}tenat: acme\n", base()),
        14,
        1,
        "tenat",
        "unknown field `tenat`",
    );
    assert_err(
        &edit(&[("tls: starttls", "tlz: starttls")]),
        5,
        3,
        "upstream.tlz",
        "unknown field `tlz`",
    );
    assert_err(
        &edit(&[("password: mounted", "pasword: mounted")]),
        12,
        7,
        "client.accept[0].pasword",
        "unknown field `pasword`",
    );
    assert_err(
        &edit(&[(
            "  tls: starttls\n",
            "  tls: starttls\n  reuse: { max_idle: 1, maxidle: 2 }\n",
        )]),
        6,
        25,
        "upstream.reuse.maxidle",
        "unknown field `maxidle`",
    );
    let (_, _, _, m) = err1(&edit(&[("tls: starttls", "tlz: starttls")]));
    assert!(m.contains("expected one of"), "{m}");
    assert!(!m.contains(" at line "), "{m}");
}

/// Found by fuzzing (`fuzz/`, target `policy`): an empty key was shown
/// as an empty KEY field, and a control character in a key or value
/// (a quoted `"\n"`) split one error over several lines.
#[test]
fn errors_have_a_key_and_stay_on_one_line() {
    let (_, _, k, m) = err1("\"\": 1\n");
    assert_eq!(k, "\"\"", "{m}");
    assert!(m.contains("unknown field ``"), "{m}");
    let (_, _, k, _) = err1("{!\n");
    assert_eq!(k, "\"\"");
    let (_, _, k, _) = err1(":\n");
    assert_eq!(k, "(document)");
    let (_, _, k, m) = err1("\"a\\nb\\u001b\": 1\n");
    assert_eq!(k, "a\\nb\\u{1b}", "{m}");
    assert!(!m.contains('\n') && !m.contains('\u{1b}'), "{m:?}");
    let (_, _, k, m) = err1(&edit(&[(
        "  tls: starttls\n",
        "  tls: starttls\n  server_name: \"a\\nb\"\n",
    )]));
    assert_eq!(k, "upstream.server_name");
    assert!(m.contains("`a\\nb`"), "{m:?}");
    for text in ["\"\": 1\n", "{!\n", ":\n", "\"\\n\": 1\n", "\"a\\rb\": x\n"] {
        for e in errs(text) {
            let shown = e.to_string();
            assert!(!e.key.is_empty(), "{shown:?}");
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
    }
}

#[test]
fn yaml_errors_have_location_and_key() {
    // duplicate key: the second occurrence
    assert_err(
        &edit(&[("tls: starttls", "tls: starttls\n  tls: none")]),
        6,
        3,
        "upstream.tls",
        "duplicate field `tls`",
    );
    // wrong type
    assert_err(
        &edit(&[("tenant: acme", "tenant: [acme]")]),
        2,
        9,
        "tenant",
        "invalid type: sequence",
    );
    assert_err(
        &format!("{}listen_insecure_ok: yes\n", base()),
        14,
        21,
        "listen_insecure_ok",
        "expected a boolean",
    );
    // syntax error: a tab in indentation
    let (l, c, k, m) = err1(&edit(&[("  tls: starttls", "\ttls: starttls")]));
    assert_eq!((l, c), (5, 1), "{m}");
    assert_eq!(k, "upstream.address");
    assert!(!m.contains(" at line "), "{m}");
    // a multi-document file
    let (l, c, k, _) = err1(&format!("{}---\nversion: 1\n", base()));
    assert_eq!((l, c, k.as_str()), (1, 1, "(document)"));
}

#[test]
fn string_values_are_not_echoed_from_serde() {
    // e.g. a password file given as the policy by mistake
    let (l, c, k, m) = err1("hunter2\n");
    assert_eq!((l, c, k.as_str()), (1, 1, "(document)"));
    assert!(!m.contains("hunter2"), "{m}");
    let (_, _, k, m) = err1(&edit(&[("client:", "client: \"s3cr\\\"et\"\nx:")]));
    assert_eq!(k, "client");
    assert!(!m.contains("s3cr") && !m.contains("et\""), "{m}");
    assert_eq!(
        redact_strings("invalid type: string \"a\\\"b\", expected x"),
        "invalid type: string, expected x"
    );
}

#[test]
fn all_semantic_errors_are_reported_in_file_order() {
    let t = edit(&[
        ("version: 1", "version: 3"),
        ("tls: starttls", "tls: none"),
        (&format!("[ \"{PIN}\" ]"), "[]"),
        ("password: mounted", "password: letmein"),
    ]);
    let e = errs(&t);
    let got: Vec<_> = e.iter().map(|e| (e.line, e.col, e.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (1, 1, "version"),
            (5, 3, "upstream.tls"),
            (8, 3, "credential.pins"),
            (12, 7, "client.accept[0].password"),
        ]
    );
    let shown = PolicyErrors(e).to_string();
    assert_eq!(shown.lines().count(), 4);
    assert!(shown.starts_with("p.yaml:1:1: version: "), "{shown}");
    assert!(!shown.contains("letmein"));
}

#[test]
fn empty_document_lists_every_required_key() {
    for text in ["", "# nothing\n", "~\n"] {
        let e = errs(text);
        let keys: Vec<_> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "version",
                "tenant",
                "upstream.address",
                "credential.secret_dir",
                "credential.pins",
                "client.accept",
                "senders"
            ],
            "{text:?}"
        );
        assert!(e.iter().all(|e| (e.line, e.col) == (1, 1)));
    }
}

#[test]
fn error_display_format() {
    let e = PolicyError {
        file: PathBuf::from("/etc/smtpbind/policy.yaml"),
        line: 7,
        col: 3,
        key: "upstream.tls".into(),
        message: "boom".into(),
    };
    assert_eq!(
        e.to_string(),
        "/etc/smtpbind/policy.yaml:7:3: upstream.tls: boom"
    );
}

#[test]
fn load_reports_read_errors_without_content() {
    let e = load(Path::new("/nonexistent/smtpbind/policy.yaml")).unwrap_err();
    assert_eq!(e.0.len(), 1);
    let e = &e.0[0];
    assert_eq!((e.line, e.col), (0, 0));
    assert!(e.message.contains("not found"), "{}", e.message);
    let e = load(Path::new("/")).unwrap_err();
    assert_eq!((e.0[0].line, e.0[0].col), (0, 0));
    // a non-policy file: the error never quotes its content
    let e = load(Path::new(READABLE)).unwrap_err();
    assert!(!e.to_string().contains("smtpbind\""), "{e}");
}

/// The example policies shipped in `policies/` must all parse.
#[test]
fn example_policies_parse() {
    let src = Path::new(file!());
    let src = if src.is_absolute() {
        src.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(src)
    };
    let mut dir = src.clone();
    for _ in 0..3 {
        dir.pop();
    }
    let dir = dir.join("policies");
    for name in ["sendgrid.yaml", "ses.yaml", "mailgun.yaml"] {
        let path = dir.join(name);
        if let Err(e) = load(&path) {
            panic!("{e}");
        }
    }
    let entries = std::fs::read_dir(&dir).unwrap();
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Err(e) = load(&path) {
                panic!("{e}");
            }
        }
    }
}
