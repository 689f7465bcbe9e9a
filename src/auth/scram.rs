//! SCRAM-SHA-256 verifiers for PostgreSQL clients. When a password is set, the node that
//! receives it stores, beside the Argon2id hash, a PostgreSQL-style verifier
//! (`SCRAM-SHA-256$<iterations>:<salt>:<StoredKey>:<ServerKey>`, as in `pg_authid`): enough
//! to check a client's SCRAM proof, never enough to log in with (RFC 5802 §3).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use pgwire::api::auth::sasl::scram::{ScramSecret, gen_salted_password};
use rand::RngCore;
use sha2::Sha256;

/// PBKDF2-SHA256 iterations (four times PostgreSQL's default `scram_iterations`): the
/// client pays them on every login (a few milliseconds in libpq). The verifier is the weak
/// point if a data directory, log or snapshot leaks: a guess against it costs these
/// iterations, far less than one against the Argon2id hash beside it.
pub const ITERATIONS: usize = 16_384;
const SALT_BYTES: usize = 16;
const PREFIX: &str = "SCRAM-SHA-256$";

/// A new verifier for `password`, with a random salt.
pub fn make_verifier(password: &str) -> String {
    let mut salt = [0u8; SALT_BYTES];
    rand::rng().fill_bytes(&mut salt);
    let salted = gen_salted_password(password, &salt, ITERATIONS);
    match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, ITERATIONS) {
        ScramSecret::Verifier {
            salt,
            iterations,
            stored_key,
            server_key,
        } => format!(
            "{PREFIX}{iterations}:{}:{}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(stored_key),
            STANDARD.encode(server_key)
        ),
        ScramSecret::SaltedPassword { .. } => unreachable!("a verifier was asked for"),
    }
}

/// Parses a stored verifier; `None` when it is missing or malformed.
pub fn parse_verifier(text: &str) -> Option<ScramSecret> {
    let rest = text.strip_prefix(PREFIX)?;
    let (iterations, keys) = rest.split_once(':')?;
    let mut parts = keys.split(':');
    let (salt, stored_key, server_key) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let iterations: usize = iterations.parse().ok().filter(|i| *i >= 1)?;
    let stored_key = STANDARD.decode(stored_key).ok().filter(|k| k.len() == 32)?;
    let server_key = STANDARD.decode(server_key).ok().filter(|k| k.len() == 32)?;
    Some(ScramSecret::Verifier {
        salt: STANDARD.decode(salt).ok()?,
        iterations,
        stored_key,
        server_key,
    })
}

/// A verifier no password matches, the same for a name every time it is asked for (keyed by
/// this node's random `secret`): an unknown user goes through the whole exchange and fails
/// like a wrong password, so the exchange does not tell which users exist.
pub fn decoy_verifier(secret: &[u8; 32], user: &str) -> ScramSecret {
    let derive = |label: &[u8]| -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .expect("HMAC-SHA256 takes a key of any length");
        mac.update(label);
        mac.update(user.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    ScramSecret::Verifier {
        salt: derive(b"salt")[..SALT_BYTES].to_vec(),
        iterations: ITERATIONS,
        stored_key: derive(b"stored"),
        server_key: derive(b"server"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifiers_round_trip_and_never_hold_the_password() {
        let verifier = make_verifier("correct horse");
        assert!(verifier.starts_with("SCRAM-SHA-256$16384:"), "{verifier}");
        assert!(!verifier.contains("correct horse"));
        let Some(ScramSecret::Verifier {
            salt, iterations, ..
        }) = parse_verifier(&verifier)
        else {
            panic!("a verifier was made");
        };
        assert_eq!((salt.len(), iterations), (SALT_BYTES, ITERATIONS));
        assert_ne!(verifier, make_verifier("correct horse"), "random salts");
        for bad in [
            "",
            "md5abc",
            "SCRAM-SHA-256$x:a:b:c",
            "SCRAM-SHA-256$4096:AAAA:AAAA",
            "SCRAM-SHA-256$4096:AAAA:AAAA:AAAA",
            &format!("{verifier}:extra"),
        ] {
            assert!(parse_verifier(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn decoys_are_stable_per_user_and_differ_between_users() {
        let secret = [7u8; 32];
        let fingerprint = |secret: ScramSecret| format!("{secret:?}");
        assert_eq!(
            fingerprint(decoy_verifier(&secret, "ghost")),
            fingerprint(decoy_verifier(&secret, "ghost"))
        );
        assert_ne!(
            fingerprint(decoy_verifier(&secret, "ghost")),
            fingerprint(decoy_verifier(&secret, "other"))
        );
    }
}
