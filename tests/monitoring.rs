//! Contract §12: every metric the chart's alert rules and Grafana dashboard
//! query is exported by a running sidecar or webhook. The sidecars and the
//! webhook are the real binary; the traffic is what makes each series exist
//! (a relayed and a reused message, a refused identity, a rate refusal, an
//! XOAUTH2 token, a provider refusing AUTH, client TLS, an admission request).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::idp::*;
use support::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The metric names an expression mentions, histogram suffixes folded onto
/// the histogram's own name.
fn names_in(text: &str, out: &mut BTreeSet<String>) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("smtpbind_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if before_ok {
            let name = &text[start..end];
            let name = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(name.to_string());
        }
        i = end;
    }
}

/// Every metric name the alert rules' expressions and the dashboard's
/// queries use.
fn used_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("helm/smtpbind/files/alerts.yaml")).expect("alerts"),
    )
    .expect("yaml");
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            names_in(rule["expr"].as_str().expect("expr"), &mut names);
        }
    }
    let board: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("helm/smtpbind/files/dashboard.json"))
            .expect("dashboard"),
    )
    .expect("json");
    for panel in board["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            names_in(target["expr"].as_str().expect("expr"), &mut names);
        }
    }
    for var in board["templating"]["list"].as_array().expect("vars") {
        if let Some(q) = var["definition"].as_str() {
            names_in(q, &mut names);
        }
    }
    names
}

/// The metric names with at least one series in a Prometheus text.
fn exported(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let name = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_string();
        out.insert(name);
    }
    out
}

fn tls_init(dir: &Path) {
    let out = Command::new(bin())
        .arg("tls-init")
        .arg("--dir")
        .arg(dir)
        .arg("--force")
        .output()
        .expect("tls-init");
    assert!(out.status.success(), "{out:?}");
}

/// A password sidecar with client TLS and a sending rate: relayed, reused,
/// refused by identity and by rate.
fn password_sidecar_metrics() -> (String, tempfile::TempDir) {
    let up = Upstream::default();
    let tls = tempfile::tempdir().expect("tempdir");
    tls_init(tls.path());
    let s = Sidecar::start(&up, |p| {
        p.set("client.tls.cert_dir", tls.path().display().to_string())
            .set("client.tls.starttls", "offer")
            .set("upstream.reuse.max_idle", 2)
            .set("limits.rate.messages_per_second", 0.01)
            .set("limits.rate.burst", 2)
            .set("limits.rate.max_wait", "10ms");
    });
    for n in 0..2 {
        let r = send_one(
            s.smtp,
            "apikey",
            KEY_A,
            "billing@acme.example",
            &format!("m{n}"),
        );
        assert!(r.starts_with("250"), "{r}");
    }
    let r = send_one(
        s.smtp,
        "apikey",
        KEY_A,
        "billing@acme.example",
        "over the rate",
    );
    assert!(r.starts_with("451"), "{r}");
    let mut c = Raw::connect(s.smtp).0;
    c.cmd("EHLO t");
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("apikey", KEY_B)));
    assert!(r.starts_with("535"), "{r}");
    (s.http_get("/metrics").1, tls)
}

/// A sidecar whose provider refuses its key: upstream AUTH failures.
fn refused_key_metrics() -> String {
    let up = Upstream::default();
    let s = Sidecar::start(&up, |p| {
        p.set(
            "credential.pins",
            yaml_list(&[&pin("not-a-key-the-provider-knows")]),
        );
    });
    rotate_secret(&s.secret_dir, "apikey", "not-a-key-the-provider-knows");
    assert!(s.wait_for(Duration::from_secs(3), |_| s.http_get("/readyz").0 == 200));
    let mut c = Raw::connect(s.smtp).0;
    c.cmd("EHLO t");
    c.cmd(&format!(
        "AUTH PLAIN {}",
        plain("apikey", "not-a-key-the-provider-knows")
    ));
    let r = c.cmd("MAIL FROM:<billing@acme.example>");
    let r = if r.starts_with("250") {
        c.cmd("RCPT TO:<x@example.net>")
    } else {
        r
    };
    assert!(r.starts_with('4') || r.starts_with('5'), "{r}");
    s.http_get("/metrics").1
}

/// An XOAUTH2 sidecar: token refreshes and the token's lifetime.
fn xoauth2_metrics() -> String {
    let idp = Idp::start(Duration::from_secs(300));
    let tokens = idp.tokens().clone();
    let up = Upstream::start(move |c| c.oauth = Some(tokens));
    let ca = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(ca.path(), &idp.issuer.ca_pem).expect("ca");
    let secrets = tempfile::tempdir().expect("tempdir");
    write_secret(secrets.path(), CLIENT_ID, KEY_M);
    let s = Sidecar::start(&up, |p| {
        p.set(
            "credential.secret_dir",
            secrets.path().display().to_string(),
        )
        .set("credential.pins", yaml_list(&[&pin(KEY_M)]))
        .set("client.accept", app_accept_digest());
        xoauth2_policy(
            p,
            "client_credentials",
            idp.url(),
            ca.path().display().to_string(),
        );
    });
    assert!(s.wait_for(Duration::from_secs(5), |_| s.http_get("/readyz").0 == 200));
    let r = send_one(s.smtp, "app", KEY_P, "billing@acme.example", "m365");
    assert!(r.starts_with("250"), "{r}");
    s.http_get("/metrics").1
}

/// The webhook with a serving pair from `tls-init`, after one review.
fn webhook_metrics() -> (String, tempfile::TempDir) {
    let tls = tempfile::tempdir().expect("tempdir");
    tls_init(tls.path());
    let mut child = Command::new(bin())
        .args(["webhook", "--config"])
        .arg(repo().join("tests/webhook/config.yaml"))
        .args(["--listen", "127.0.0.1:0", "--tls-dir"])
        .arg(tls.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("webhook");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("line");
    let listening: serde_json::Value = serde_json::from_str(&line).expect("json");
    let port = listening["webhook"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .expect("port")
        .to_string();
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(tls.path().join("ca.crt"))
            .args(args)
            .output()
            .expect("curl");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let body = repo().join("tests/webhook/golden/validate-injected-pod.request.json");
    curl(&[
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", body.display()),
        &format!("https://localhost:{port}/validate"),
    ]);
    let text = curl(&[&format!("https://localhost:{port}/metrics")]);
    let _ = child.kill();
    let _ = child.wait();
    (text, tls)
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_use_is_exported() {
    let used = used_names();
    assert!(used.len() >= 20, "{used:?}");
    let (sidecar, sidecar_tls) = password_sidecar_metrics();
    let (webhook, webhook_tls) = webhook_metrics();
    let texts = [sidecar, refused_key_metrics(), xoauth2_metrics(), webhook];
    let mut have = BTreeSet::new();
    for t in &texts {
        have.extend(exported(t));
    }
    let missing: Vec<&String> = used.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "not exported by any sidecar or webhook: {missing:?}"
    );
    // The expiry gauges are the certificate's notAfter (read by openssl and
    // GNU date here) minus now.
    for (text, series, dir) in [
        (
            &texts[0],
            "smtpbind_certificate_expiry_seconds{use=\"client_tls\",tenant=\"acme\"}",
            &sidecar_tls,
        ),
        (
            &texts[3],
            "smtpbind_webhook_certificate_expiry_seconds",
            &webhook_tls,
        ),
    ] {
        let left = metric(text, series);
        let want = not_after(&dir.path().join("tls.crt")) - unix_now();
        assert!(
            (left - want).abs() < 60.0,
            "{series} = {left}, the certificate says {want}"
        );
    }
}

/// notAfter of a PEM certificate in Unix seconds, by openssl and date(1).
fn not_after(crt: &Path) -> f64 {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(crt)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    let date = text.trim().strip_prefix("notAfter=").expect("notAfter");
    let out = Command::new("date")
        .args(["-u", "-d", date, "+%s"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds")
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[test]
fn names_are_read_from_expressions() {
    let mut n = BTreeSet::new();
    names_in(
        "histogram_quantile(0.9, sum by (le) (rate(smtpbind_x_seconds_bucket{a=\"b\"}[5m]))) / smtpbind_y_total",
        &mut n,
    );
    assert_eq!(
        n.into_iter().collect::<Vec<_>>(),
        ["smtpbind_x_seconds", "smtpbind_y_total"]
    );
}
