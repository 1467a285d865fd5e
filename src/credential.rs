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

use crate::audit::Reason;
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
    /// Reads `username` and `password` from `dir`, whole: when `..data`
    /// is present it is resolved once and both files are read from the
    /// directory it points to (a kubelet swap between the two reads cannot
    /// pair one version's username with another's password). When the
    /// kubelet removed that directory meanwhile, the read starts over (a
    /// few times at most).
    pub fn read(dir: &Path) -> Result<Credential, CredentialError> {
        let mut attempts = 0;
        loop {
            let data = resolve_data(dir);
            match Self::read_from(dir, data.as_deref()) {
                Err(CredentialError::Io { kind, .. })
                    if kind == std::io::ErrorKind::NotFound && data.is_some() && attempts < 3 =>
                {
                    attempts += 1;
                }
                result => return result,
            }
        }
    }

    /// Both files from `data` (the resolved `..data`) or else `dir`;
    /// errors name the files under `dir`, as mounted.
    fn read_from(dir: &Path, data: Option<&Path>) -> Result<Credential, CredentialError> {
        let from = data.unwrap_or(dir);
        let username = read_field(dir, from, "username")?;
        #[cfg(test)]
        tests::between_reads();
        let password = read_field(dir, from, "password")?;
        let pin = Pin::of(password.as_bytes());
        Ok(Credential {
            username,
            password,
            pin,
            upstream: UpstreamAuth::Mounted,
        })
    }

    /// [`Credential::load`] plus what the policy's mechanism derives from
    /// it: the SES password, or the XOAUTH2 token source (started and
    /// shared through `sources` when given; without, no network is touched).
    pub fn load_for(
        policy: &CredentialPolicy,
        sources: Option<&crate::identity::TokenSources>,
    ) -> Result<Credential, CredentialError> {
        let mut cred = Self::load(&policy.secret_dir, &policy.pins)?;
        cred.upstream = UpstreamAuth::prepare(policy, &cred.username, &cred.password, sources)?;
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

    /// For tests: a credential from values, pin computed (no pin check,
    /// so never in a build that serves mail).
    #[cfg(test)]
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

/// The directory `dir/..data` points to now, if it is a symlink.
fn resolve_data(dir: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(dir.join("..data")).ok()?;
    Some(if target.is_absolute() {
        target
    } else {
        dir.join(target)
    })
}

/// `from/name`, reported as `dir/name`.
fn read_field(dir: &Path, from: &Path, name: &str) -> Result<Zeroizing<String>, CredentialError> {
    use std::io::Read;
    let path = dir.join(name);
    let io = |e: std::io::Error| CredentialError::Io {
        path: path.clone(),
        kind: e.kind(),
    };
    let file = std::fs::File::open(from.join(name)).map_err(io)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_FIELD_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.is_empty() {
        return Err(CredentialError::Empty { path });
    }
    if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_FIELD_BYTES) {
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
    /// Why there is none: the reason label (missing, unreadable,
    /// unparsable, not pinned) and the one-line text.
    NotReady(Reason, String),
}

impl CredentialError {
    /// The reason label of this failure (metrics, audit, readiness): it
    /// tells the operator which fix applies.
    pub fn reason(&self) -> Reason {
        match self {
            CredentialError::Io { kind, .. } if *kind == std::io::ErrorKind::NotFound => {
                Reason::CredentialMissing
            }
            CredentialError::Io { .. } => Reason::CredentialUnreadable,
            CredentialError::Empty { .. }
            | CredentialError::TooLarge { .. }
            | CredentialError::NotUtf8 { .. }
            | CredentialError::Identity(_) => Reason::CredentialUnparsable,
            CredentialError::NotPinned { .. } => Reason::CredentialNotPinned,
        }
    }
}

impl CredentialState {
    pub fn from_load(result: Result<Credential, CredentialError>) -> Self {
        match result {
            Ok(c) => CredentialState::Ready(Arc::new(c)),
            Err(e) => CredentialState::NotReady(e.reason(), e.to_string()),
        }
    }

    /// The audit reason for refusing work in this state: no usable
    /// credential (and why), or (XOAUTH2) a pinned one without a usable token.
    pub fn not_ready_reason(&self) -> Reason {
        match self {
            CredentialState::Ready(_) => Reason::TokenUnavailable,
            CredentialState::NotReady(reason, _) => *reason,
        }
    }

    pub fn ready(&self) -> Option<&Arc<Credential>> {
        match self {
            CredentialState::Ready(c) => Some(c),
            CredentialState::NotReady(..) => None,
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

    thread_local! {
        /// Run between the reads of `username` and `password` (a test hook).
        static BETWEEN: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
            std::cell::RefCell::new(None);
    }

    pub(super) fn between_reads() {
        BETWEEN.with(|h| {
            if let Some(f) = h.borrow_mut().as_mut() {
                f();
            }
        });
    }

    /// A kubelet-style swap: the new version in a new timestamped
    /// directory, `..data` replaced atomically, the old one removed when
    /// `remove_old`.
    fn kubelet_swap(dir: &Path, n: u32, user: &str, pass: &str, remove_old: bool) {
        let ts = format!("..2026_11_25_13_00_00.00000000{n}");
        let data = dir.join(&ts);
        std::fs::create_dir(&data).expect("mkdir");
        std::fs::write(data.join("username"), user).expect("write");
        std::fs::write(data.join("password"), pass).expect("write");
        let old = std::fs::read_link(dir.join("..data")).ok();
        let tmp = dir.join("..data_tmp");
        std::os::unix::fs::symlink(&ts, &tmp).expect("link");
        std::fs::rename(&tmp, dir.join("..data")).expect("swap");
        if let (true, Some(old)) = (remove_old, old) {
            std::fs::remove_dir_all(dir.join(old)).expect("remove old");
        }
    }

    #[test]
    fn a_swap_between_the_two_reads_is_never_read_torn() {
        for remove_old in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            crate::demo::write_kubelet_secret(dir.path(), "AKIA-OLD", "secret-old")
                .expect("secret");
            let path = dir.path().to_path_buf();
            let mut swapped = false;
            BETWEEN.with(|h| {
                *h.borrow_mut() = Some(Box::new(move || {
                    if !swapped {
                        swapped = true;
                        kubelet_swap(&path, 2, "AKIA-NEW", "secret-new", remove_old);
                    }
                }))
            });
            let cred = Credential::read(dir.path());
            BETWEEN.with(|h| *h.borrow_mut() = None);
            let cred = cred.expect("read");
            let pair = (cred.username().to_string(), cred.password().to_string());
            assert!(
                pair == ("AKIA-OLD".into(), "secret-old".into())
                    || pair == ("AKIA-NEW".into(), "secret-new".into()),
                "torn read (remove_old {remove_old}): {pair:?}"
            );
        }
    }

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
    fn not_ready_reasons_tell_the_fixes_apart() {
        let reason = |dir: &Path, pins: &[Pin]| {
            CredentialState::from_load(Credential::load(dir, pins)).not_ready_reason()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(reason(dir.path(), &[]), Reason::CredentialMissing);
        std::fs::write(dir.path().join("username"), "u").expect("write");
        std::fs::write(dir.path().join("password"), [0xff, 0xfe]).expect("write");
        assert_eq!(reason(dir.path(), &[]), Reason::CredentialUnparsable);
        std::fs::write(dir.path().join("password"), "").expect("write");
        assert_eq!(reason(dir.path(), &[]), Reason::CredentialUnparsable);
        std::fs::remove_file(dir.path().join("password")).expect("rm");
        std::fs::create_dir(dir.path().join("password")).expect("mkdir");
        assert_eq!(reason(dir.path(), &[]), Reason::CredentialUnreadable);
        std::fs::remove_dir(dir.path().join("password")).expect("rmdir");
        std::fs::write(dir.path().join("password"), "k").expect("write");
        assert_eq!(
            reason(dir.path(), &[Pin::of(b"x")]),
            Reason::CredentialNotPinned
        );
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
