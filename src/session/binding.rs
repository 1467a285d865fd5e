//! Binding a client to an identity: the presented username/password must
//! match one of the policy's `client.accept` rules. Every rule is evaluated
//! with constant-time comparisons and no early exit, so timing says nothing
//! about which part (or which rule) failed.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::credential::Credential;
use crate::policy::{AcceptRule, PasswordMatch};

/// True when `(username, password)` matches an accept rule. `mounted` is the
/// pod's credential (for `password: mounted`).
pub fn identity_allowed(
    accept: &[AcceptRule],
    mounted: &Credential,
    username: &str,
    password: &[u8],
) -> bool {
    let presented_hash = Sha256::digest(password);
    let mut ok = Choice::from(0u8);
    for rule in accept {
        let user_ok = rule.username.as_bytes().ct_eq(username.as_bytes());
        let pass_ok = match &rule.password {
            PasswordMatch::Mounted => Choice::from(u8::from(mounted.password_matches(password))),
            PasswordMatch::Sha256(expected) => expected.ct_eq(presented_hash.as_slice()),
            PasswordMatch::Any => Choice::from(1u8),
        };
        ok |= user_ok & pass_ok;
    }
    ok.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(username: &str, password: PasswordMatch) -> AcceptRule {
        AcceptRule {
            username: username.into(),
            password,
        }
    }

    #[test]
    fn the_incident_same_username_other_key_is_refused() {
        let mounted = Credential::from_parts("apikey", "SG.tenant-a");
        let accept = [rule("apikey", PasswordMatch::Mounted)];
        assert!(identity_allowed(
            &accept,
            &mounted,
            "apikey",
            b"SG.tenant-a"
        ));
        assert!(!identity_allowed(
            &accept,
            &mounted,
            "apikey",
            b"SG.tenant-b"
        ));
        assert!(!identity_allowed(
            &accept,
            &mounted,
            "APIKEY",
            b"SG.tenant-a"
        ));
    }

    #[test]
    fn sha256_and_any_rules() {
        let mounted = Credential::from_parts("apikey", "SG.tenant-a");
        let hash: [u8; 32] = Sha256::digest(b"app-secret").into();
        let accept = [
            rule("app", PasswordMatch::Sha256(hash)),
            rule("legacy", PasswordMatch::Any),
        ];
        assert!(identity_allowed(&accept, &mounted, "app", b"app-secret"));
        assert!(!identity_allowed(&accept, &mounted, "app", b"wrong"));
        assert!(identity_allowed(&accept, &mounted, "legacy", b"whatever"));
        assert!(!identity_allowed(
            &accept,
            &mounted,
            "apikey",
            b"SG.tenant-a"
        ));
        assert!(!identity_allowed(&[], &mounted, "apikey", b"SG.tenant-a"));
    }
}
