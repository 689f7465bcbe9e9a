//! Bearer tokens (`POST /auth/token`): `shoal1.<user, hex>.<expiry ms>.<HMAC-SHA256, hex>`.
//! The MAC key is derived from the user's password hash, which only the replicated state
//! holds: every node can check a token without sharing anything else, and changing the
//! password revokes every token issued before.

use std::time::Duration;

use hmac::Mac;
use sha2::{Digest, Sha256};

use crate::auth::{User, Users};

/// The longest lifetime a token may ask for.
pub const TTL_MAX: Duration = Duration::from_secs(24 * 3600);
/// The lifetime when none is asked for.
pub const TTL_DEFAULT: Duration = Duration::from_secs(3600);

const PREFIX: &str = "shoal1";

fn mac(user: &User, expires_ms: i64) -> Option<hmac::Hmac<Sha256>> {
    let key = Sha256::new()
        .chain_update(b"shoal bearer token v1")
        .chain_update(user.password_hash.as_bytes())
        .finalize();
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(user.name.as_bytes());
    mac.update(b"\0");
    mac.update(expires_ms.to_string().as_bytes());
    Some(mac)
}

/// A token for `user` valid until `expires_ms`.
pub fn issue(user: &User, expires_ms: i64) -> Option<String> {
    let tag = mac(user, expires_ms)?.finalize().into_bytes();
    Some(format!(
        "{PREFIX}.{}.{expires_ms}.{}",
        hex::encode(user.name.as_bytes()),
        hex::encode(tag)
    ))
}

/// The user name a token claims (for lockout bookkeeping), if it is shaped like one.
pub fn claimed_user(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    (parts.next()? == PREFIX)
        .then(|| parts.next())
        .flatten()
        .and_then(|name| hex::decode(name).ok())
        .and_then(|name| String::from_utf8(name).ok())
}

/// The user a token authenticates at `now_ms`, or why not.
pub fn verify(token: &str, users: &Users, now_ms: i64) -> Result<User, &'static str> {
    let parts: Vec<&str> = token.split('.').collect();
    let [prefix, _, expires, tag] = parts.as_slice() else {
        return Err("malformed token");
    };
    if *prefix != PREFIX {
        return Err("malformed token");
    }
    let name = claimed_user(token).ok_or("malformed token")?;
    let expires_ms: i64 = expires.parse().map_err(|_| "malformed token")?;
    let tag = hex::decode(tag).map_err(|_| "malformed token")?;
    let user = users.get(&name).ok_or("unknown user")?;
    // Checked before the expiry, so a forged token never learns whether it expired.
    mac(user, expires_ms)
        .ok_or("malformed token")?
        .verify_slice(&tag)
        .map_err(|_| "invalid token (forged, or the password changed since)")?;
    if expires_ms <= now_ms {
        return Err("token expired");
    }
    Ok(user.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(hash: &str) -> User {
        User {
            name: "ana".into(),
            password_hash: hash.into(),
            scram_verifier: String::new(),
            roles: Default::default(),
            permissions: Default::default(),
            tables: Default::default(),
            databases: Default::default(),
        }
    }

    #[test]
    fn tokens_expire_are_bound_to_the_password_and_cannot_be_forged() {
        let users: Users = [("ana".to_string(), user("hash-1"))].into();
        let token = issue(&users["ana"], 2_000).unwrap();
        assert_eq!(claimed_user(&token).as_deref(), Some("ana"));
        assert_eq!(verify(&token, &users, 1_000).unwrap().name, "ana");
        assert_eq!(verify(&token, &users, 2_000).unwrap_err(), "token expired");
        let later = token.replace(".2000.", ".9000.");
        assert!(
            verify(&later, &users, 1_000)
                .unwrap_err()
                .contains("invalid")
        );
        let changed: Users = [("ana".to_string(), user("hash-2"))].into();
        assert!(
            verify(&token, &changed, 1_000)
                .unwrap_err()
                .contains("password changed")
        );
        assert_eq!(
            verify("nonsense", &users, 0).unwrap_err(),
            "malformed token"
        );
    }
}
