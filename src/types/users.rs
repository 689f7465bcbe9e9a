//! Users as replicated: their records, permissions, built-in roles and grants, and the log's
//! `UserChange` in each layout it was ever written in. Checking passwords and requests is
//! `crate::auth`'s; this is the data the state machine stores.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

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
    pub tables: TableGrants,
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
    pub tables: TableGrants,
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
    pub tables: TableGrants,
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

/// Table name → `read` and/or `write`. Names are kept lower-case: SQLite compares them so.
pub type TableGrants = BTreeMap<String, BTreeSet<Permission>>;

/// The users in a database, by name.
pub type Users = BTreeMap<String, User>;

#[cfg(test)]
mod tests {
    use super::*;

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
            tables: TableGrants,
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
}
