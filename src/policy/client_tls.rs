//! Validation of `client.tls` (contract §11): TLS toward the local mailer.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::raw::{RawClientTls, RawStartTls};
use super::{check_listen, ClientTlsPolicy, StartTlsMode, Validator};

impl Validator<'_> {
    pub(super) fn client_tls(&mut self, rt: RawClientTls) -> ClientTlsPolicy {
        let cert_dir = match rt.cert_dir {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                self.err(
                    "client.tls.cert_dir",
                    "required: the directory of the mounted kubernetes.io/tls Secret (`tls.crt`, `tls.key`)",
                );
                PathBuf::new()
            }
        };
        let starttls = match rt.starttls {
            None | Some(RawStartTls::Offer) => StartTlsMode::Offer,
            Some(RawStartTls::Require) => StartTlsMode::Require,
            Some(RawStartTls::Off) => StartTlsMode::Off,
        };
        let implicit_listen = rt
            .implicit_listen
            .map(|a| self.socket_addr("client.tls.implicit_listen", Some(a), ""));
        if starttls == StartTlsMode::Off && implicit_listen.is_none() {
            self.err(
                "client.tls.starttls",
                "`off` without `implicit_listen` serves no TLS at all; remove `client.tls` or set `implicit_listen`",
            );
        }
        ClientTlsPolicy {
            cert_dir,
            starttls,
            implicit_listen,
        }
    }

    /// The implicit-TLS listener follows the rules of `listen` and is another address.
    pub(super) fn client_tls_listen(
        &mut self,
        tls: &ClientTlsPolicy,
        listen: SocketAddr,
        listen_insecure_ok: bool,
    ) {
        let Some(implicit) = tls.implicit_listen else {
            return;
        };
        let key = "client.tls.implicit_listen";
        if let Err(m) = check_listen(implicit, listen_insecure_ok) {
            self.err(key, m);
        } else if implicit == listen || (implicit.port() == listen.port() && implicit.port() != 0) {
            self.err(
                key,
                format!("{implicit} clashes with `listen` ({listen}): use another port"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn policy(client_tls: &str) -> Result<Policy, PolicyErrors> {
        let text = format!(
            r#"version: 1
tenant: acme
upstream:
  address: smtp.example:587
credential:
  secret_dir: /s
  pins: ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
client:
  accept:
    - username: apikey
      password: mounted
{client_tls}senders: ["*@acme.example"]
"#
        );
        parse(&text, Path::new("p.yaml"))
    }

    fn err1(client_tls: &str) -> String {
        match policy(client_tls) {
            Ok(_) => panic!("expected an error"),
            Err(e) => {
                assert_eq!(e.0.len(), 1, "{e}");
                e.0[0].to_string()
            }
        }
    }

    #[test]
    fn absent_means_no_tls_and_defaults_apply() {
        assert_eq!(policy("").expect("ok").client.tls, None);
        let p = policy("  tls:\n    cert_dir: /tls\n").expect("ok");
        assert_eq!(
            p.client.tls,
            Some(ClientTlsPolicy {
                cert_dir: PathBuf::from("/tls"),
                starttls: StartTlsMode::Offer,
                implicit_listen: None,
            })
        );
        let p = policy(
            "  tls:\n    cert_dir: /tls\n    starttls: require\n    implicit_listen: 127.0.0.1:4650\n",
        )
        .expect("ok");
        let tls = p.client.tls.expect("tls");
        assert_eq!(tls.starttls, StartTlsMode::Require);
        assert_eq!(
            tls.implicit_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 4650)))
        );
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        assert_eq!(
            err1("  tls:\n    starttls: offer\n"),
            "p.yaml:12:3: client.tls.cert_dir: required: the directory of the mounted kubernetes.io/tls Secret (`tls.crt`, `tls.key`)"
        );
        assert!(err1("  tls:\n    cert_dir: /t\n    starttls: maybe\n")
            .starts_with("p.yaml:14:15: client.tls.starttls: unknown variant `maybe`"));
        assert!(err1("  tls:\n    cert_dir: /t\n    certdir: /t\n")
            .starts_with("p.yaml:14:5: client.tls.certdir: unknown field `certdir`"));
        assert!(err1("  tls:\n    cert_dir: /t\n    starttls: off\n")
            .starts_with("p.yaml:14:5: client.tls.starttls: `off` without `implicit_listen`"));
        assert!(
            err1("  tls:\n    cert_dir: /t\n    implicit_listen: 0.0.0.0:465\n").starts_with(
                "p.yaml:14:5: client.tls.implicit_listen: 0.0.0.0:465 is not a loopback address"
            )
        );
        assert!(
            err1("  tls:\n    cert_dir: /t\n    implicit_listen: 127.0.0.1:2525\n")
                .contains("clashes with `listen`")
        );
        assert!(
            err1("  tls:\n    cert_dir: /t\n    implicit_listen: nope\n")
                .starts_with("p.yaml:14:5: client.tls.implicit_listen: `nope` is not an `ip:port`")
        );
    }
}
