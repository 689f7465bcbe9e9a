//! A node's authentication state (`--auth`), shared by the HTTP middleware
//! (`http::authorize`) and PostgreSQL logins: the replicated users (cached by version),
//! passwords checked with Argon2id and remembered briefly, repeated failures locked out for a
//! while, and the caller's credentials carried along when a request is forwarded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::auth::rqlite::Imported;
use crate::auth::{User, Users, verify_password};
use crate::db::database::Database;

/// Failed logins for one user before it is locked out (password guessing)...
const USER_FAILURES_BEFORE_LOCKOUT: u32 = 5;
/// ...and from one address, over any users (password spraying).
const ADDRESS_FAILURES_BEFORE_LOCKOUT: u32 = 50;
/// How long a lockout lasts.
const LOCKOUT: Duration = Duration::from_secs(30);
/// Failures older than this are forgotten.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// A verified password is trusted without rehashing for this long (Argon2id costs ~20 ms).
const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Entries in each of the bounded caches.
const CACHE_ENTRIES_MAX: usize = 10_000;
/// Password verifications running at once (each Argon2id takes ~19 MiB and ~20 ms of a core):
/// a flood of guesses queues here instead of exhausting memory, and each is counted before
/// the next runs, so the lockout holds.
const VERIFICATIONS_AT_ONCE: usize = 2;
/// How long a login may wait for its turn before it is refused.
pub(crate) const VERIFICATION_WAIT: Duration = Duration::from_secs(5);
/// How long after start a login with a password this node's `--auth-file` gives is answered
/// "retry shortly" rather than refused while the user is not yet replicated: the leader brings
/// the file's users in moments after start (each password is hashed first).
const AUTH_FILE_ARRIVAL: Duration = Duration::from_secs(60);

tokio::task_local! {
    /// The `Authorization` header of the request being handled: a node passing a request on
    /// to the leader passes the caller's credentials with it.
    static CALLER_AUTHORIZATION: Option<HeaderValue>;
}

/// The credentials of the request this task handles, to pass on when forwarding it.
pub fn caller_authorization() -> Option<HeaderValue> {
    CALLER_AUTHORIZATION.try_with(Clone::clone).ok().flatten()
}

/// Runs `work` (the rest of a request's handling) with `authorization` as the caller's
/// credentials.
pub async fn with_caller_authorization<F: std::future::Future>(
    authorization: Option<HeaderValue>,
    work: F,
) -> F::Output {
    CALLER_AUTHORIZATION.scope(authorization, work).await
}

/// The authentication state of one node.
pub struct Gate {
    enabled: bool,
    /// The users last read: from which database (its address: the users move from the
    /// default database into the catalog once), at which version.
    users: Mutex<(usize, u64, Arc<Users>)>,
    /// SHA-256 of (user, password, password hash) → when verified: a changed password never
    /// matches an entry made for the old one.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// Password verifications allowed at once (`VERIFICATIONS_AT_ONCE`).
    pub(crate) verifications: tokio::sync::Semaphore,
    /// Failure counts by user and by address.
    failures: Mutex<HashMap<String, Failures>>,
    /// SHA-256 of each password this node's `--auth-file` gives, by user name.
    auth_file_passwords: HashMap<String, [u8; 32]>,
    started: Instant,
}

/// Recent failed logins for one user or address.
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

impl Failures {
    fn fresh(now: Instant) -> Failures {
        Failures {
            count: 0,
            first: now,
            locked_until: None,
        }
    }
}

impl Gate {
    /// A gate; `auth_file` is what this node's `--auth-file` lists (empty without one).
    pub fn new(enabled: bool, auth_file: &[Imported]) -> Arc<Gate> {
        Arc::new(Gate {
            enabled,
            users: Mutex::new((0, 0, Arc::new(Users::new()))),
            verified: Mutex::new(HashMap::new()),
            verifications: tokio::sync::Semaphore::new(VERIFICATIONS_AT_ONCE),
            failures: Mutex::new(HashMap::new()),
            auth_file_passwords: auth_file
                .iter()
                .map(|user| {
                    (
                        user.name.clone(),
                        Sha256::digest(user.password.as_bytes()).into(),
                    )
                })
                .collect(),
            started: Instant::now(),
        })
    }

    /// Whether a login that failed against the replicated users is one this node's
    /// `--auth-file` allows, soon after start: the user is on its way in (`file_users`), and
    /// the client should retry rather than be told its password is wrong.
    pub fn arriving_from_auth_file(&self, name: &str, password: &str) -> bool {
        if self.started.elapsed() > AUTH_FILE_ARRIVAL {
            return false;
        }
        let presented: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        // Digests compared, so the time taken says nothing about the password's prefix.
        self.auth_file_passwords
            .get(name)
            .is_some_and(|listed| *listed == presented)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The replicated users, reloaded when they may have changed.
    pub async fn users(&self, database: &Arc<Database>) -> Result<Arc<Users>, String> {
        let source = Arc::as_ptr(database) as usize;
        let version = database.users_version();
        if let Ok(cached) = self.users.lock()
            && cached.0 == source
            && cached.1 == version
        {
            return Ok(cached.2.clone());
        }
        let users = database.users().await.map_err(|e| e.to_string())?;
        let users = Arc::new(users);
        if let Ok(mut cached) = self.users.lock() {
            *cached = (source, version, users.clone());
        }
        // Passwords may have changed: verify again.
        if let Ok(mut verified) = self.verified.lock() {
            verified.clear();
        }
        Ok(users)
    }

    /// Whether logins as `user` or from `from` are locked out now.
    pub fn login_locked(&self, user: &str, from: &str) -> bool {
        self.locked(&[&address_key(from), &user_key(user)])
    }

    /// Counts a failed login as `user` from `from`; true when that locked one of them out.
    pub fn login_failed(&self, user: &str, from: &str) -> bool {
        crate::metrics::metrics().auth_failures.inc();
        self.fail(&[
            (&address_key(from), ADDRESS_FAILURES_BEFORE_LOCKOUT),
            (&user_key(user), USER_FAILURES_BEFORE_LOCKOUT),
        ])
    }

    /// Forgets `user`'s failures after it proved its password.
    pub fn login_succeeded(&self, user: &str) {
        self.succeed(&[&user_key(user)]);
    }

    /// The user `name` as replicated now, if it exists.
    pub async fn user(&self, database: &Arc<Database>, name: &str) -> Result<Option<User>, String> {
        Ok(self.users(database).await?.get(name).cloned())
    }

    fn locked(&self, keys: &[&str]) -> bool {
        let now = Instant::now();
        self.failures.lock().is_ok_and(|failures| {
            keys.iter().any(|key| {
                failures
                    .get(*key)
                    .and_then(|f| f.locked_until)
                    .is_some_and(|until| until > now)
            })
        })
    }

    /// Counts a failure against each key; true when one of them is now locked out.
    fn fail(&self, keys: &[(&str, u32)]) -> bool {
        let now = Instant::now();
        let Ok(mut failures) = self.failures.lock() else {
            return false;
        };
        if failures.len() >= CACHE_ENTRIES_MAX {
            failures.retain(|_, f| {
                now.duration_since(f.first) < FAILURE_WINDOW
                    || f.locked_until.is_some_and(|u| u > now)
            });
        }
        let mut locked = false;
        for (key, threshold) in keys {
            let entry = failures
                .entry(key.to_string())
                .or_insert_with(|| Failures::fresh(now));
            if now.duration_since(entry.first) > FAILURE_WINDOW {
                *entry = Failures::fresh(now);
            }
            entry.count += 1;
            if entry.count >= *threshold {
                entry.locked_until = Some(now + LOCKOUT);
                locked = true;
            }
        }
        locked
    }

    fn succeed(&self, keys: &[&str]) {
        if let Ok(mut failures) = self.failures.lock() {
            for key in keys {
                failures.remove(*key);
            }
        }
    }

    /// Checks `password` for `user` (Argon2id, off the async threads; remembered briefly).
    /// A login that needed the hash (not remembered) is audited.
    pub(crate) async fn check_password(&self, user: &User, password: &str, from: &str) -> bool {
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.name.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(user.password_hash.as_bytes())
            .finalize()
            .into();
        if let Ok(verified) = self.verified.lock()
            && verified
                .get(&key)
                .is_some_and(|at| at.elapsed() < VERIFIED_FOR)
        {
            return true;
        }
        let (hash, password) = (user.password_hash.clone(), password.to_string());
        let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
            .await
            .unwrap_or(false);
        if ok {
            tracing::info!(target: "audit", event = "login", user = %crate::auth::shown(&user.name), %from, route = "http");
        }
        if ok && let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= CACHE_ENTRIES_MAX {
                verified.clear();
            }
            verified.insert(key, Instant::now());
        }
        ok
    }
}

fn address_key(from: &str) -> String {
    format!("address:{from}")
}

fn user_key(user: &str) -> String {
    format!("user:{user}")
}

/// The identity the gate established, for handlers that need it (`/auth/token`), and
/// whether it was proven with the password (a token cannot mint tokens).
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    pub name: String,
    pub by_password: bool,
}

/// The user and password of a `Basic` authorization value.
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_auth_files_own_password_is_told_to_retry() {
        let (listed, _) = crate::auth::rqlite::parse(
            br#"[{"username": "bob", "password": "bob's long password", "perms": ["query"]}]"#,
        )
        .expect("a valid auth file");
        let gate = Gate::new(true, &listed);
        assert!(gate.arriving_from_auth_file("bob", "bob's long password"));
        assert!(!gate.arriving_from_auth_file("bob", "bob's long passwore"));
        assert!(!gate.arriving_from_auth_file("eve", "bob's long password"));
        let without_file = Gate::new(true, &[]);
        assert!(!without_file.arriving_from_auth_file("bob", "bob's long password"));
    }
}
