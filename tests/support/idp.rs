//! The test identity provider: smtpbind's built-in issuer (a real HTTPS
//! token endpoint, both grants, RS256 signatures and claims verified) on a
//! runtime of its own, with a Microsoft 365 client and a Google service
//! account whose RSA key is generated per run with `openssl genpkey`.
//!
//! Every token it issued, every assertion it received and the service
//! account key are written, when it is dropped, to
//! `$CARGO_TARGET_TMPDIR/test-secrets/` so that tests/scan_secrets.py
//! searches the whole run's output for them too.

use std::time::Duration;

use base64::Engine;
use smtpbind::demo::issuer::{Issuer, IssuerConfig, OAuthClient, ServiceAccountClient, Tokens};

/// Microsoft 365 app registration: the Secret's `username` (client id) and
/// `password` (client secret).
pub const CLIENT_ID: &str = "5d1f0c3a-acme-relay-app";
pub const KEY_M: &str = "m365~Qz8.acme-client-secret-41c7e2";
/// The password the app in the pod presents to smtpbind (an accept digest).
pub const KEY_P: &str = "app-to-sidecar-password-9b0e";
/// The mailbox mail is sent as (XOAUTH2 `user=`, jwt_bearer `sub`).
pub const MAILBOX: &str = "billing@acme.example";
pub const SA_EMAIL: &str = "relay@acme-mail.iam.gserviceaccount.com";
/// Provider accounts the capture upstream records.
pub const M365_ACCOUNT: &str = "m365-acme";
pub const GOOGLE_ACCOUNT: &str = "google-acme";

/// The XOAUTH2 part of a sidecar's policy (contract §9): `flow` against the
/// token endpoint `token_url`, trusted through `ca_file`, sending as
/// [`MAILBOX`] with the Microsoft 365 scope.
pub fn xoauth2_policy(p: &mut super::PolicySpec, flow: &str, token_url: String, ca_file: String) {
    p.set("credential.mechanism", "xoauth2")
        .set("credential.oauth2.flow", flow)
        .set("credential.oauth2.token_url", token_url)
        .set(
            "credential.oauth2.scope",
            "https://outlook.office365.com/.default",
        )
        .set("credential.oauth2.user", MAILBOX)
        .set("credential.oauth2.ca_file", ca_file);
}

/// `client.accept` for the app in the pod: username `app`, the digest of [`KEY_P`].
pub fn app_accept_digest() -> serde_yaml::Value {
    let accept = format!("[{{username: app, password: \"{}\"}}]", super::pin(KEY_P));
    serde_yaml::from_str(&accept).expect("yaml")
}

pub struct Idp {
    pub issuer: Issuer,
    /// The service account's JSON key (the jwt_bearer Secret's `password`).
    pub sa_json: String,
    sa_pem: String,
    rt: tokio::runtime::Runtime,
}

/// An RSA-2048 PKCS#8 PEM key from the openssl CLI.
pub fn generate_rsa_pem() -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl genpkey");
    assert!(out.status.success(), "openssl genpkey failed");
    String::from_utf8(out.stdout).expect("PEM")
}

impl Idp {
    /// An issuer whose tokens live `lifetime`.
    pub fn start(lifetime: Duration) -> Idp {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let sa_pem = generate_rsa_pem();
        let sa_json = serde_json::json!({
            "type": "service_account",
            "project_id": "acme-mail",
            "private_key_id": "0a1b2c3d",
            "private_key": sa_pem,
            "client_email": SA_EMAIL,
            "client_id": "104000000000000000001",
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string();
        let config = IssuerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            token_lifetime: lifetime,
            clients: vec![OAuthClient {
                account: M365_ACCOUNT.into(),
                client_id: CLIENT_ID.into(),
                client_secret: KEY_M.into(),
            }],
            service_accounts: vec![ServiceAccountClient {
                account: GOOGLE_ACCOUNT.into(),
                client_email: SA_EMAIL.into(),
                public_key: smtpbind::demo::issuer::rsa_public_key(&sa_pem).expect("public key"),
            }],
        };
        let issuer = rt.block_on(Issuer::start(config)).expect("issuer");
        Idp {
            issuer,
            sa_json,
            sa_pem,
            rt,
        }
    }

    pub fn url(&self) -> String {
        self.issuer.url()
    }

    pub fn tokens(&self) -> &Tokens {
        &self.issuer.tokens
    }

    /// Every dynamic secret of this provider, in the forms output could
    /// carry: raw, and (tokens) inside the XOAUTH2 payload.
    pub fn secrets(&self) -> Vec<String> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut out = Vec::new();
        for s in self.tokens().secrets() {
            out.push(b64.encode(format!("user={MAILBOX}\x01auth=Bearer {s}\x01\x01")));
            out.push(s);
        }
        // The key: two full base64 lines of its PEM body (any leak of the
        // key shows them), and the JSON form.
        let body: Vec<&str> = self
            .sa_pem
            .lines()
            .filter(|l| l.len() == 64 && !l.starts_with("-----"))
            .collect();
        out.extend(
            [body.get(1), body.get(body.len() / 2)]
                .into_iter()
                .flatten()
                .map(|l| l.to_string()),
        );
        out.push(self.sa_json.clone());
        out
    }

    /// Asserts that none of this provider's secrets is in `text`.
    pub fn assert_absent(&self, text: &str) {
        for s in self.secrets() {
            assert!(
                !text.contains(&s),
                "a token, assertion or key leaked into output"
            );
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let lines: Vec<String> = self
            .secrets()
            .into_iter()
            .filter(|s| !s.contains('\n'))
            .collect();
        super::keep_for_scan("test-secrets", "txt", &lines.join("\n"));
    }
}
