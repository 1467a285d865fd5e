//! The one credential this process ever holds: a `kubernetes.io/basic-auth`
//! Secret mounted as a directory (`username`, `password`), read through the
//! kubelet's `..data` symlink so a rotated Secret is seen whole.
//!
//! A credential is only usable when the sha256 of its `password` file bytes
//! is one of the policy's pins. The bytes are used exactly as mounted (no
//! trimming): the pin printed by `smtpbind fingerprint` is what gets checked.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::identity::{IdentityError, UpstreamAuth};
use crate::policy::{CredentialPolicy, Pin};

/// Largest `username` / `password` file we read.
const MAX_FIELD_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{path}: cannot read ({kind})")]
    Io {
        path: PathBuf,
        kind: std::io::ErrorKind,
    },
    #[error("{path}: empty")]
    Empty { path: PathBuf },
    #[error("{path}: larger than {MAX_FIELD_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: not UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error("mounted password {pin} matches none of the policy's pins")]
    NotPinned { pin: String },
    #[error("{0}")]
    Identity(#[from] IdentityError),
}

/// A loaded, pin-checked credential. Debug shows the username and the short pin only.
pub struct Credential {
    username: Zeroizing<String>,
    password: Zeroizing<String>,
    pin: Pin,
    /// What the upstream AUTH uses (contract §9).
    upstream: UpstreamAuth,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("username", &*self.username)
            .field("pin", &self.pin.short())
            .field("upstream", &self.upstream)
            .finish()
    }
}

impl Credential {
    /// Reads `username` and `password` from `dir` (through `..data` when present).
    pub fn read(dir: &Path) -> Result<Credential, CredentialError> {
        let username = read_field(dir, "username")?;
        let password = read_field(dir, "password")?;
        let pin = Pin::of(password.as_bytes());
        Ok(Credential {
            username,
            password,
            pin,
            upstream: UpstreamAuth::Mounted,
        })
    }

    /// [`Credential::load`] plus what the policy's mechanism derives from
    /// it: the SES password, or the XOAUTH2 token source (its refresh timer
    /// started when `start`; without, no network is touched).
    pub fn load_for(policy: &CredentialPolicy, start: bool) -> Result<Credential, CredentialError> {
        let mut cred = Self::load(&policy.secret_dir, &policy.pins)?;
        cred.upstream = UpstreamAuth::prepare(policy, &cred.username, &cred.password, start)?;
        Ok(cred)
    }

    /// Reads and checks the pin: the only way to get a usable credential.
    pub fn load(dir: &Path, pins: &[Pin]) -> Result<Credential, CredentialError> {
        let cred = Self::read(dir)?;
        if pins
            .iter()
            .any(|p| bool::from(p.as_bytes().ct_eq(cred.pin.as_bytes())))
        {
            Ok(cred)
        } else {
            Err(CredentialError::NotPinned {
                pin: cred.pin.short(),
            })
        }
    }

    /// For tests and the demo: a credential from values, pin computed.
    pub fn from_parts(username: &str, password: &str) -> Credential {
        Credential {
            username: Zeroizing::new(username.to_string()),
            pin: Pin::of(password.as_bytes()),
            password: Zeroizing::new(password.to_string()),
            upstream: UpstreamAuth::Mounted,
        }
    }

    /// What the upstream AUTH uses.
    pub fn upstream(&self) -> &UpstreamAuth {
        &self.upstream
    }

    /// XOAUTH2 `user=` (the pool key's second part), if any.
    pub fn upstream_user(&self) -> Option<&str> {
        match &self.upstream {
            UpstreamAuth::XOAuth2(source) => Some(source.user()),
            UpstreamAuth::Mounted | UpstreamAuth::Ses(_) => None,
        }
    }

    /// `Ok` when the upstream can be authenticated now (XOAUTH2: a usable
    /// token is held); else why not, in one line.
    pub fn usable(&self) -> Result<(), String> {
        self.upstream.usable()
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// The secret itself: only the upstream AUTH encoder may call this.
    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn pin(&self) -> Pin {
        self.pin
    }

    /// Constant-time comparison of a presented password with the mounted one.
    pub fn password_matches(&self, presented: &[u8]) -> bool {
        bool::from(self.password.as_bytes().ct_eq(presented))
    }
}

fn read_field(dir: &Path, name: &str) -> Result<Zeroizing<String>, CredentialError> {
    use std::io::Read;
    let path = dir.join(name);
    let io = |e: std::io::Error| CredentialError::Io {
        path: path.clone(),
        kind: e.kind(),
    };
    let file = std::fs::File::open(&path).map_err(io)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_FIELD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.is_empty() {
        return Err(CredentialError::Empty { path });
    }
    if bytes.len() as u64 > MAX_FIELD_BYTES {
        return Err(CredentialError::TooLarge { path });
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_string())),
        Err(_) => Err(CredentialError::NotUtf8 { path }),
    }
}

/// What sessions see: either a pinned credential or why there is none.
/// Published on a `tokio::sync::watch` channel; each session takes one snapshot.
#[derive(Debug, Clone)]
pub enum CredentialState {
    Ready(Arc<Credential>),
    NotReady(String),
}

impl CredentialState {
    pub fn from_load(result: Result<Credential, CredentialError>) -> Self {
        match result {
            Ok(c) => CredentialState::Ready(Arc::new(c)),
            Err(e) => CredentialState::NotReady(e.to_string()),
        }
    }

    /// The audit reason for refusing work in this state: no pinned
    /// credential, or (XOAUTH2) a pinned one without a usable token.
    pub fn not_ready_reason(&self) -> crate::audit::Reason {
        match self {
            CredentialState::Ready(_) => crate::audit::Reason::TokenUnavailable,
            CredentialState::NotReady(_) => crate::audit::Reason::CredentialNotPinned,
        }
    }

    pub fn ready(&self) -> Option<&Arc<Credential>> {
        match self {
            CredentialState::Ready(c) => Some(c),
            CredentialState::NotReady(_) => None,
        }
    }
}

/// The pin of a file's bytes, as `smtpbind fingerprint` prints it.
pub fn fingerprint(path: &Path) -> Result<Pin, CredentialError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| CredentialError::Io {
        path: path.to_path_buf(),
        kind: e.kind(),
    })?);
    Ok(Pin::of(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_dir(user: &str, pass: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("username"), user).expect("write");
        std::fs::write(dir.path().join("password"), pass).expect("write");
        dir
    }

    #[test]
    fn loads_when_pinned_and_refuses_otherwise() {
        let dir = secret_dir("apikey", "SG.tenant-a-key");
        let pin = Pin::of(b"SG.tenant-a-key");
        let cred = Credential::load(dir.path(), &[pin]).expect("pinned");
        assert_eq!(cred.username(), "apikey");
        assert!(cred.password_matches(b"SG.tenant-a-key"));
        assert!(!cred.password_matches(b"SG.tenant-b-key"));
        let err = Credential::load(dir.path(), &[Pin::of(b"other")]).expect_err("not pinned");
        assert!(matches!(err, CredentialError::NotPinned { .. }));
    }

    #[test]
    fn errors_and_debug_never_show_the_password() {
        let dir = secret_dir("apikey", "SG.super-secret");
        let cred = Credential::read(dir.path()).expect("read");
        let err = Credential::load(dir.path(), &[Pin::of(b"x")]).expect_err("not pinned");
        for text in [format!("{cred:?}"), err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("super-secret"), "{text}");
        }
    }

    #[test]
    fn missing_and_empty_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Credential::read(dir.path()),
            Err(CredentialError::Io { .. })
        ));
        std::fs::write(dir.path().join("username"), "u").expect("write");
        std::fs::write(dir.path().join("password"), "").expect("write");
        assert!(matches!(
            Credential::read(dir.path()),
            Err(CredentialError::Empty { .. })
        ));
    }

    #[test]
    fn reads_through_kubelet_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ts = dir.path().join("..2026_11_25_13_00_00.000000001");
        std::fs::create_dir(&ts).expect("mkdir");
        std::fs::write(ts.join("username"), "apikey").expect("write");
        std::fs::write(ts.join("password"), "k1").expect("write");
        std::os::unix::fs::symlink("..2026_11_25_13_00_00.000000001", dir.path().join("..data"))
            .expect("link");
        std::os::unix::fs::symlink("..data/username", dir.path().join("username")).expect("link");
        std::os::unix::fs::symlink("..data/password", dir.path().join("password")).expect("link");
        let cred = Credential::load(dir.path(), &[Pin::of(b"k1")]).expect("load");
        assert_eq!(cred.pin(), Pin::of(b"k1"));
    }
}
