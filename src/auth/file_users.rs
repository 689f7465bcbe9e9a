//! `serve --auth-file FILE`: rqlite's `-auth` file read at start. The users it lists are kept
//! as the file says — created, or their password, roles and permissions set back — by this
//! node whenever it leads; users it does not list are left to `shoal user`. Users replicate,
//! so every node should be given the same file (the last leader's file wins otherwise).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::rqlite::Imported;
use crate::auth::{PasswordSecrets, User, UserChange, verify_password};
use crate::catalog::databases::Databases;
use crate::service::Service;

/// How often a node checks whether it leads (and so whether the file's users need keeping).
const LEADERSHIP_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Reads and checks the file; the notes say what of it has no Shoal equivalent.
pub fn load(path: &Path) -> Result<(Vec<Imported>, Vec<String>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    crate::auth::rqlite::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Keeps the file's users while this node leads the group the users are kept in (the
/// catalog's, or the default database's before they moved), once per term it leads in; runs
/// until that group stops.
pub fn spawn_keeper(databases: Arc<Databases>, users: Vec<Imported>) {
    tokio::spawn(async move {
        let mut kept_in_term = None;
        let mut first = true;
        loop {
            if !std::mem::take(&mut first) {
                tokio::time::sleep(LEADERSHIP_CHECK_INTERVAL).await;
            }
            let Ok(service) = databases.users_service() else {
                continue; // moving into the catalog: next round
            };
            if service.group.stopped().is_some() {
                return;
            }
            let term = (service.group.id, service.group.metrics().current_term);
            if !service.group.raft.is_leader() || kept_in_term == Some(term) {
                continue;
            }
            match keep(&service, &users).await {
                Ok(changed) => {
                    if changed > 0 {
                        tracing::info!(
                            changed,
                            "users of --auth-file brought in line with the file"
                        );
                    }
                    kept_in_term = Some(term);
                }
                Err(error) => {
                    tracing::warn!(%error, "could not apply --auth-file's users; will retry")
                }
            }
        }
    });
}

/// Proposes a change for every listed user that differs from the file; returns how many.
/// Every password is hashed before the first change is proposed, so the users arrive together
/// (hashing takes a while; a client may log in as soon as the first one is there).
async fn keep(service: &Service, users: &[Imported]) -> Result<usize, String> {
    let current = service
        .group
        .database
        .clone()
        .users()
        .await
        .map_err(|e| e.to_string())?;
    let mut changes = Vec::new();
    for wanted in users {
        let existing = current.get(&wanted.name).cloned();
        let password = wanted.password.clone();
        let hash = existing.as_ref().map(|user| user.password_hash.clone());
        let same_password = tokio::task::spawn_blocking(move || {
            hash.is_some_and(|hash| verify_password(&hash, &password))
        })
        .await
        .map_err(|e| e.to_string())?;
        let same = same_password
            && existing.as_ref().is_some_and(|user| {
                user.roles == wanted.roles && user.permissions == wanted.permissions
            });
        if same {
            continue;
        }
        let password = wanted.password.clone();
        let secrets = tokio::task::spawn_blocking(move || PasswordSecrets::derive(&password))
            .await
            .map_err(|e| e.to_string())??;
        let user = User {
            name: wanted.name.clone(),
            password_hash: secrets.hash,
            scram_verifier: secrets.scram_verifier,
            roles: wanted.roles.clone(),
            permissions: wanted.permissions.clone(),
            tables: existing
                .as_ref()
                .map(|user| user.tables.clone())
                .unwrap_or_default(),
            databases: existing.map(|user| user.databases).unwrap_or_default(),
        };
        changes.push(user);
    }
    for user in &changes {
        service
            .propose_user_change(UserChange::Put(user.clone()))
            .await
            .map_err(|e| format!("user {:?}: {e}", user.name))?;
        tracing::info!(target: "audit", event = "user_set_from_auth_file", user = %user.name, "user set from --auth-file");
    }
    Ok(changes.len())
}
