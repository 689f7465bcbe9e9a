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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

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

/// What a user may do. Roles bundle them; a user holds roles and may hold extra permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Queries.
    Read,
    /// INSERT, UPDATE, DELETE.
    Write,
    /// CREATE, DROP, ALTER.
    Ddl,
    /// Users, membership, leader operations.
    Admin,
    Backup,
    Restore,
    /// Status, nodes, metrics, alerts.
    Status,
    /// Joining as a voter.
    Join,
    /// Joining as a read replica.
    JoinReplica,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Permission::Read,
        Permission::Write,
        Permission::Ddl,
        Permission::Admin,
        Permission::Backup,
        Permission::Restore,
        Permission::Status,
        Permission::Join,
        Permission::JoinReplica,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Ddl => "ddl",
            Permission::Admin => "admin",
            Permission::Backup => "backup",
            Permission::Restore => "restore",
            Permission::Status => "status",
            Permission::Join => "join",
            Permission::JoinReplica => "join-replica",
        }
    }

    pub fn parse(text: &str) -> Result<Permission, String> {
        Permission::ALL
            .into_iter()
            .find(|p| p.name() == text)
            .ok_or_else(|| {
                format!(
                    "unknown permission {text:?} (one of {})",
                    Permission::ALL.map(Permission::name).join(", ")
                )
            })
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The built-in roles and what they grant.
pub fn role_permissions(role: &str) -> Option<&'static [Permission]> {
    use Permission::*;
    match role {
        "admin" => Some(&Permission::ALL),
        "writer" => Some(&[Read, Write, Ddl, Status]),
        "reader" => Some(&[Read, Status]),
        "operator" => Some(&[Status, Backup, Restore, Join, JoinReplica]),
        "node" => Some(&[Join, JoinReplica, Status]),
        _ => None,
    }
}

pub const ROLES: [&str; 5] = ["admin", "writer", "reader", "operator", "node"];

/// A user as stored (replicated).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// Argon2id, PHC string format (`$argon2id$v=19$m=…`).
    pub password_hash: String,
    /// SCRAM-SHA-256 verifier for PostgreSQL clients (`scram`); empty for a user whose
    /// password was set before verifiers were kept (PostgreSQL logins need a new password).
    #[serde(default)]
    pub scram_verifier: String,
    pub roles: BTreeSet<String>,
    pub permissions: BTreeSet<Permission>,
    /// Read/write on named tables, for what `permissions` and `roles` do not grant
    /// cluster-wide (`grants`).
    #[serde(default)]
    pub tables: grants::TableGrants,
    /// Permissions in one database only, by the database's group (so a renamed database keeps
    /// its grants, and a dropped one's name reused later starts with none).
    #[serde(default)]
    pub databases: DatabaseGrants,
}

/// Group of a database → what the user may do in it beyond its cluster-wide permissions.
pub type DatabaseGrants = BTreeMap<u64, BTreeSet<Permission>>;

/// The permissions that can be granted in one database.
pub const DATABASE_PERMISSIONS: [Permission; 5] = [
    Permission::Read,
    Permission::Write,
    Permission::Ddl,
    Permission::Backup,
    Permission::Restore,
];

/// Databases one user may hold grants in, at most (the user record stays small).
pub const DATABASE_GRANTS_MAX: usize = 1000;

impl fmt::Debug for User {
    /// Never the hash (log entries carrying users may be printed at debug level).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("permissions", &self.permissions)
            .field("tables", &self.tables)
            .field("databases", &self.databases)
            .finish_non_exhaustive()
    }
}

impl User {
    /// The user as requests to the database of group `group` see it: its cluster-wide
    /// permissions plus those granted in that database.
    pub fn in_database(&self, group: u64) -> User {
        let mut seen = self.clone();
        if let Some(granted) = self.databases.get(&group) {
            seen.permissions.extend(granted.iter().copied());
        }
        seen
    }

    /// Everything the user may do, through roles and directly.
    pub fn effective_permissions(&self) -> BTreeSet<Permission> {
        let mut all = self.permissions.clone();
        for role in &self.roles {
            all.extend(role_permissions(role).unwrap_or_default().iter().copied());
        }
        all
    }

    /// What the API shows: never the hash.
    pub fn public(&self) -> PublicUser {
        PublicUser {
            name: self.name.clone(),
            roles: self.roles.clone(),
            permissions: self.permissions.clone(),
            effective: self.effective_permissions(),
            tables: self.tables.clone(),
            databases: self
                .databases
                .iter()
                .map(|(group, permissions)| (group.to_string(), permissions.clone()))
                .collect(),
        }
    }
}

/// A user as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicUser {
    pub name: String,
    pub roles: BTreeSet<String>,
    pub permissions: BTreeSet<Permission>,
    pub effective: BTreeSet<Permission>,
    /// Per-table grants (table → read/write).
    #[serde(default)]
    pub tables: grants::TableGrants,
    /// Per-database grants (database name → permissions; the API names each database, a
    /// dropped one shows as `#<group>`).
    #[serde(default)]
    pub databases: BTreeMap<String, BTreeSet<Permission>>,
}

/// A change to the users, proposed through the log. Log entries are postcard-encoded (fields
/// by position, no names), so a layout once written is never changed: a user with new fields
/// is a new variant, appended, and older entries still decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserChange {
    /// A user in the first layout (no SCRAM verifier, no table grants): decoded from older
    /// logs and archives, never proposed now.
    PutFirstLayout(FirstLayoutUser),
    Remove(String),
    /// A user in the second layout (no database grants): decoded from older logs and
    /// archives, never proposed now.
    PutSecondLayout(SecondLayoutUser),
    /// A user in the current layout.
    Put(User),
}

impl UserChange {
    /// The name of the user the change is about.
    pub fn user_name(&self) -> &str {
        match self {
            UserChange::Put(user) => &user.name,
            UserChange::PutSecondLayout(user) => &user.name,
            UserChange::PutFirstLayout(user) => &user.name,
            UserChange::Remove(name) => name,
        }
    }

    /// The user a put stores, in the current layout.
    pub fn put_user(&self) -> Option<User> {
        match self {
            UserChange::Put(user) => Some(user.clone()),
            UserChange::PutSecondLayout(old) => Some(old.clone().into()),
            UserChange::PutFirstLayout(old) => Some(old.clone().into()),
            UserChange::Remove(_) => None,
        }
    }
}

/// [`User`] as log entries carried it before database grants.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondLayoutUser {
    pub name: String,
    pub password_hash: String,
    pub scram_verifier: String,
    pub roles: BTreeSet<String>,
    pub permissions: BTreeSet<Permission>,
    pub tables: grants::TableGrants,
}

impl fmt::Debug for SecondLayoutUser {
    /// Never the hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecondLayoutUser")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("permissions", &self.permissions)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl From<SecondLayoutUser> for User {
    /// No database grants.
    fn from(old: SecondLayoutUser) -> User {
        User {
            name: old.name,
            password_hash: old.password_hash,
            scram_verifier: old.scram_verifier,
            roles: old.roles,
            permissions: old.permissions,
            tables: old.tables,
            databases: Default::default(),
        }
    }
}

/// [`User`] as the first log entries carry it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstLayoutUser {
    pub name: String,
    pub password_hash: String,
    pub roles: BTreeSet<String>,
    pub permissions: BTreeSet<Permission>,
}

impl fmt::Debug for FirstLayoutUser {
    /// Never the hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirstLayoutUser")
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("permissions", &self.permissions)
            .finish_non_exhaustive()
    }
}

impl From<FirstLayoutUser> for User {
    /// No SCRAM verifier (PostgreSQL logins need a new password) and no table grants.
    fn from(old: FirstLayoutUser) -> User {
        User {
            name: old.name,
            password_hash: old.password_hash,
            scram_verifier: String::new(),
            roles: old.roles,
            permissions: old.permissions,
            tables: Default::default(),
            databases: Default::default(),
        }
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

/// The users in a database, by name.
pub type Users = BTreeMap<String, User>;

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
    fn user_changes_written_in_the_first_layout_still_decode() {
        // The layout the first log entries were written in (postcard: fields by position).
        #[derive(Serialize)]
        struct OldUser {
            name: String,
            password_hash: String,
            roles: BTreeSet<String>,
            permissions: BTreeSet<Permission>,
        }
        #[derive(Serialize)]
        enum OldChange {
            Put(OldUser),
            Remove(String),
        }
        let old = OldChange::Put(OldUser {
            name: "ana".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$x$y".into(),
            roles: ["reader".to_string()].into(),
            permissions: [Permission::Backup].into(),
        });
        let decoded: UserChange =
            postcard::from_bytes(&postcard::to_stdvec(&old).unwrap()).unwrap();
        let user = decoded.put_user().expect("a put");
        assert_eq!(user.name, "ana");
        assert_eq!(user.roles, ["reader".to_string()].into());
        assert_eq!(user.permissions, [Permission::Backup].into());
        assert!(user.scram_verifier.is_empty() && user.tables.is_empty());
        let removed: UserChange =
            postcard::from_bytes(&postcard::to_stdvec(&OldChange::Remove("ana".into())).unwrap())
                .unwrap();
        assert_eq!(removed, UserChange::Remove("ana".into()));
        // The second layout (before database grants), at the variant index `Put` had then.
        #[derive(Serialize)]
        struct SecondUser {
            name: String,
            password_hash: String,
            scram_verifier: String,
            roles: BTreeSet<String>,
            permissions: BTreeSet<Permission>,
            tables: grants::TableGrants,
        }
        #[derive(Serialize)]
        enum SecondChange {
            _First(OldUser),
            _Remove(String),
            Put(SecondUser),
        }
        let second = SecondChange::Put(SecondUser {
            name: "bo".into(),
            password_hash: "h".into(),
            scram_verifier: "v".into(),
            roles: Default::default(),
            permissions: [Permission::Read].into(),
            tables: [("t".to_string(), [Permission::Write].into())].into(),
        });
        let decoded: UserChange =
            postcard::from_bytes(&postcard::to_stdvec(&second).unwrap()).unwrap();
        let bo = decoded.put_user().expect("a put");
        assert_eq!(bo.scram_verifier, "v");
        assert_eq!(bo.tables.len(), 1);
        assert!(bo.databases.is_empty());
        // The current layout round-trips.
        let mut user = user;
        user.databases = [(7, [Permission::Write].into())].into();
        let current = UserChange::Put(user);
        let again: UserChange =
            postcard::from_bytes(&postcard::to_stdvec(&current).unwrap()).unwrap();
        assert_eq!(again, current);
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
