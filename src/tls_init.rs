//! `smtpbind tls-init`: a pod-local CA (`ca.crt`) and a serving pair
//! (`tls.crt`, `tls.key`) for `localhost`, `127.0.0.1`, `::1` and each
//! `--name`, for an init container or `kubectl create secret tls`.
//!
//! The CA's private key is never written: it exists only in this process,
//! so nothing can sign another certificate the mailer would trust.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::certs::{CertError, Pki};

/// Names always in the certificate: how a mailer reaches the sidecar.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// At most this many `--name`s.
const MAX_NAMES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsInitError {
    #[error("{path}: {kind}")]
    Io {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error("{path} exists; pass --force to overwrite")]
    Exists { path: PathBuf },
    #[error("--name `{0}` is not a DNS name or an IP address")]
    BadName(String),
    #[error("at most {MAX_NAMES} --name values")]
    TooManyNames,
    #[error("{0}")]
    Generate(#[from] CertError),
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub dir: PathBuf,
    pub names: Vec<String>,
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` into `dir` (created if missing).
pub fn run(dir: &Path, names: &[String], force: bool) -> Result<Written, TlsInitError> {
    if names.len() > MAX_NAMES {
        return Err(TlsInitError::TooManyNames);
    }
    let mut all: Vec<String> = LOCAL_NAMES.iter().map(|s| s.to_string()).collect();
    for name in names {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() || rustls_pki_types::ServerName::try_from(name.as_str()).is_err() {
            return Err(TlsInitError::BadName(name));
        }
        if !all.contains(&name) {
            all.push(name);
        }
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| TlsInitError::Io {
            path,
            kind: e.kind(),
        }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = ["ca.crt", "tls.crt", "tls.key"].map(|f| dir.join(f));
    if !force {
        if let Some(path) = files.iter().find(|p| p.symlink_metadata().is_ok()) {
            return Err(TlsInitError::Exists { path: path.clone() });
        }
    }
    let pki = Pki::generate("smtpbind pod-local CA", &all)?;
    let [ca, crt, key] = &files;
    write(ca, pki.ca_pem.as_bytes(), 0o644).map_err(io(ca))?;
    write(crt, pki.server_cert_pem().as_bytes(), 0o644).map_err(io(crt))?;
    write(key, pki.server_key_pem().as_bytes(), 0o600).map_err(io(key))?;
    Ok(Written {
        dir: dir.to_path_buf(),
        names: all,
    })
}

/// Writes through a temporary file renamed into place, so a reader (or the
/// watcher of a running sidecar) never sees half a file.
fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_three_files_refuses_to_overwrite_and_loads() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("new/tls");
        let w = run(&dir, &["smtp.sendgrid.net".into()], false).expect("init");
        assert_eq!(
            w.names,
            ["localhost", "127.0.0.1", "::1", "smtp.sendgrid.net"]
        );
        let mut listed: Vec<String> = std::fs::read_dir(&dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        listed.sort();
        assert_eq!(listed, ["ca.crt", "tls.crt", "tls.key"], "no CA key");
        let mode = |f: &str| {
            std::fs::metadata(dir.join(f))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("tls.key"), 0o600);
        crate::tls_mount::load_pair(&dir).expect("a matching pair");
        let before = std::fs::read(dir.join("tls.crt")).expect("crt");
        assert!(matches!(
            run(&dir, &[], false),
            Err(TlsInitError::Exists { .. })
        ));
        assert_eq!(std::fs::read(dir.join("tls.crt")).expect("crt"), before);
        run(&dir, &[], true).expect("forced");
        assert_ne!(std::fs::read(dir.join("tls.crt")).expect("crt"), before);
        assert!(matches!(
            run(&dir, &["bad name".into()], true),
            Err(TlsInitError::BadName(_))
        ));
    }
}
