//! rqlite's `-auth` file, for migration: `shoal user import-rqlite FILE` turns each entry
//! into a Shoal user. rqlite keeps plain-text passwords (or bcrypt hashes, which cannot become
//! Argon2id or SCRAM secrets); Shoal hashes the plain ones on the leader. The whole file is
//! checked before anything is created: one bad entry and nothing is imported.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::auth::{Permission, check_name, check_password};

/// Entries read from a file, at most (rqlite's files hold a handful).
const ENTRIES_MAX: usize = 10_000;

#[derive(Debug, Deserialize)]
struct Entry {
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    perms: Vec<String>,
}

/// A user to create, as `POST /users` takes it.
#[derive(Clone, PartialEq, Eq)]
pub struct Imported {
    pub name: String,
    pub password: String,
    pub roles: BTreeSet<String>,
    pub permissions: BTreeSet<Permission>,
    /// What the mapping changed or dropped, for the operator to read.
    pub notes: Vec<String>,
}

impl std::fmt::Debug for Imported {
    /// Never the password (start-up settings may be printed).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imported")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("permissions", &self.permissions)
            .field("notes", &self.notes)
            .finish_non_exhaustive()
    }
}

/// The users of an rqlite auth file, or the first problem found (naming the entry).
/// Entries that cannot become users (`*`, bcrypt-hashed passwords) are returned as notes.
pub fn parse(json: &[u8]) -> Result<(Vec<Imported>, Vec<String>), String> {
    let entries: Vec<Entry> = serde_json::from_slice(json)
        .map_err(|e| format!("not an rqlite auth file (a JSON array of users): {e}"))?;
    if entries.len() > ENTRIES_MAX {
        return Err(format!("{} entries; at most {ENTRIES_MAX}", entries.len()));
    }
    let mut users = Vec::new();
    let mut skipped = Vec::new();
    let mut names = BTreeSet::new();
    for (position, entry) in entries.into_iter().enumerate() {
        let which = format!("entry {} ({:?})", position + 1, entry.username);
        if entry.username == "*" {
            skipped.push(format!(
                "{which}: permissions for anyone, even without credentials, have no Shoal \
                 equivalent (only /livez and /readyz are open); skipped"
            ));
            continue;
        }
        check_name(&entry.username).map_err(|e| format!("{which}: {e}"))?;
        if !names.insert(entry.username.clone()) {
            return Err(format!("{which}: the user appears twice"));
        }
        let Some(password) = entry.password else {
            return Err(format!("{which}: no password"));
        };
        if password.starts_with("$2a$")
            || password.starts_with("$2b$")
            || password.starts_with("$2y$")
        {
            skipped.push(format!(
                "{which}: the password is a bcrypt hash, which cannot be turned into Shoal's \
                 secrets; skipped (add the user with `shoal user add`)"
            ));
            continue;
        }
        check_password(&password).map_err(|e| format!("{which}: {e}"))?;
        let mut user = Imported {
            name: entry.username,
            password,
            roles: BTreeSet::new(),
            permissions: BTreeSet::new(),
            notes: Vec::new(),
        };
        for perm in &entry.perms {
            map_permission(perm, &mut user).map_err(|e| format!("{which}: {e}"))?;
        }
        users.push(user);
    }
    Ok((users, skipped))
}

/// Adds what rqlite's permission `perm` allows to `user`.
fn map_permission(perm: &str, user: &mut Imported) -> Result<(), String> {
    use Permission::*;
    let mut grant = |permissions: &[Permission]| user.permissions.extend(permissions);
    match perm {
        "all" => {
            user.roles.insert("admin".into());
        }
        // rqlite's execute runs any statement, schema changes included.
        "execute" => grant(&[Write, Ddl]),
        "query" => grant(&[Read]),
        "load" => grant(&[Restore]),
        "backup" => grant(&[Backup]),
        "status" => grant(&[Status]),
        "join" => grant(&[Join]),
        "join-read-only" => grant(&[JoinReplica]),
        "remove" | "leader-ops" => {
            grant(&[Admin]);
            user.notes.push(format!(
                "{perm:?} became admin (Shoal's membership and leader operations need it)"
            ));
        }
        "ready" => user
            .notes
            .push("\"ready\" needs no permission in Shoal (/readyz is open)".into()),
        "snapshot" => user
            .notes
            .push("\"snapshot\" has no Shoal equivalent (snapshots are automatic)".into()),
        other => return Err(format!("unknown rqlite permission {other:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rqlite_permissions_become_roles_and_permissions() {
        let file = br#"[
            {"username": "bob", "password": "secret one", "perms": ["all"]},
            {"username": "mary", "password": "secret two", "perms": ["query", "backup", "join", "ready"]},
            {"username": "ci", "password": "secret three", "perms": ["execute", "remove"]},
            {"username": "old", "password": "$2a$10$abcdefghijklmnopqrstuv", "perms": ["query"]},
            {"username": "*", "perms": ["status", "ready"]}
        ]"#;
        let (users, skipped) = parse(file).unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(users[0].roles, BTreeSet::from(["admin".to_string()]));
        assert_eq!(
            users[1].permissions,
            BTreeSet::from([Permission::Read, Permission::Backup, Permission::Join])
        );
        assert!(users[2].permissions.contains(&Permission::Ddl));
        assert!(users[2].notes[0].contains("admin"));
        assert_eq!(skipped.len(), 2, "{skipped:?}");
    }

    #[test]
    fn one_bad_entry_refuses_the_whole_file() {
        for (file, expected) in [
            (&br#"{"username": "bob"}"#[..], "JSON array"),
            (br#"[{"username": "bob", "password": "short", "perms": []}]"#, "entry 1"),
            (br#"[{"username": "a", "password": "long enough", "perms": ["fly"]}]"#, "fly"),
            (br#"[{"username": "../x", "password": "long enough"}]"#, "user name"),
            (br#"[{"username": "a", "password": "long enough"}, {"username": "a", "password": "long enough"}]"#, "twice"),
            (br#"[{"username": "a"}]"#, "no password"),
        ] {
            let error = parse(file).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }
}
