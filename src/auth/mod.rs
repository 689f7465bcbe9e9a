//! Users, roles and permissions, kept in the replicated state (every node agrees; Shoal's
//! internal table `_shoal_users`, which statements cannot read or write). Passwords are
//! stored only as Argon2id hashes, made on the node that received the password; the log and
//! the table carry the hash, never the password.

pub mod access;
pub mod cli;
pub mod file_users;
pub mod gate;
pub mod grants;
pub mod rqlite;
pub mod scram;
pub mod token;

// The user records and permissions are replicated data: they live with the other types every
// layer shares (the state machine applies them), and are used from here by their old paths.
pub use crate::types::users::*;

use std::collections::BTreeSet;
use std::fmt;

/// Authentication settings of a node (`serve --auth`).
#[derive(Clone, Default)]
pub struct AuthSettings {
    /// Every HTTP request needs credentials and the permission its route needs.
    pub enabled: bool,
    /// The first admin's password, used once when this node bootstraps a new cluster.
    pub admin_password: Option<String>,
    /// Credentials this node presents when it asks to join (a user with `join` or
    /// `join-replica`).
    pub join_credentials: Option<(String, String)>,
    /// The users of `--auth-file` (rqlite's `-auth`), kept as the file says while this node
    /// leads (`file_users`).
    pub file_users: Vec<crate::auth::rqlite::Imported>,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("enabled", &self.enabled)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "redacted"),
            )
            .field(
                "join_user",
                &self.join_credentials.as_ref().map(|(user, _)| user),
            )
            .field("file_users", &self.file_users)
            .finish()
    }
}

/// Checks a user name: 1–64 characters of letters, digits, `_`, `-`, `.`, `@`.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "user name {name:?} must be 1 to 64 letters, digits, '_', '-', '.' or '@'"
        ))
    }
}

/// Checks role names against the built-in roles.
pub fn check_roles(roles: &BTreeSet<String>) -> Result<(), String> {
    for role in roles {
        if role_permissions(role).is_none() {
            return Err(format!(
                "unknown role {role:?} (one of {})",
                ROLES.join(", ")
            ));
        }
    }
    Ok(())
}

/// Passwords shorter than this are refused.
pub const PASSWORD_CHARS_MIN: usize = 8;
/// Longer ones too (hashing cost and request size stay bounded).
pub const PASSWORD_BYTES_MAX: usize = 1024;

/// Checks a new password against the rules (length), without hashing it.
pub fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < PASSWORD_CHARS_MIN {
        return Err(format!(
            "the password is shorter than {PASSWORD_CHARS_MIN} characters"
        ));
    }
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(format!(
            "the password is longer than {PASSWORD_BYTES_MAX} bytes"
        ));
    }
    Ok(())
}

/// What is stored for a password: never the password itself.
#[derive(Clone)]
pub struct PasswordSecrets {
    /// Argon2id, for HTTP logins.
    pub hash: String,
    /// SCRAM-SHA-256 verifier, for PostgreSQL logins.
    pub scram_verifier: String,
}

impl PasswordSecrets {
    /// Checks the password against the rules and derives both secrets (~25 ms of a core:
    /// call it off the async threads).
    pub fn derive(password: &str) -> Result<PasswordSecrets, String> {
        Ok(PasswordSecrets {
            hash: hash_password(password)?,
            scram_verifier: scram::make_verifier(password),
        })
    }
}

/// Hashes a password with Argon2id (default parameters: 19 MiB, 2 passes, a random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    check_password(password)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

/// Whether `password` matches the PHC `hash` (constant time in the password).
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordVerifier, phc::PasswordHash};
    if password.len() > PASSWORD_BYTES_MAX {
        return false;
    }
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A user name as written to logs: control characters and quotes escaped, so a name a
/// client made up cannot forge log lines.
pub fn shown(name: &str) -> String {
    name.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hashed_with_argon2id_and_verified() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horsf"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(hash_password("short").is_err());
        // The same password twice: different salts.
        assert_ne!(hash, hash_password("correct horse").unwrap());
    }

    #[test]
    fn roles_bundle_permissions() {
        let user = User {
            name: "ana".into(),
            password_hash: String::new(),
            scram_verifier: String::new(),
            roles: ["reader".to_string()].into(),
            permissions: [Permission::Backup].into(),
            tables: Default::default(),
            databases: [(7, [Permission::Write].into())].into(),
        };
        let effective = user.effective_permissions();
        assert!(
            !effective.contains(&Permission::Write),
            "only in database 7"
        );
        assert!(
            user.in_database(7)
                .effective_permissions()
                .contains(&Permission::Write)
        );
        assert!(
            !user
                .in_database(8)
                .effective_permissions()
                .contains(&Permission::Write)
        );
        assert!(effective.contains(&Permission::Read));
        assert!(effective.contains(&Permission::Backup));
        assert!(!effective.contains(&Permission::Write));
        assert!(check_roles(&["nobody".to_string()].into()).is_err());
        assert_eq!(
            Permission::parse("join-replica"),
            Ok(Permission::JoinReplica)
        );
        assert!(Permission::parse("root").is_err());
        assert!(check_name("../x").is_err());
        assert!(check_name("ana@example.com").is_ok());
    }
}
