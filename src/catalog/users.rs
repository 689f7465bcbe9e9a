//! Moving the users into the catalog. Before there were databases the users lived in the
//! default database's group; they belong with the catalog, which every node holds and which
//! knows the databases they are granted. The catalog's leader copies every user of the
//! default database it has not copied before (a cluster of an earlier version, or the first
//! admin a new cluster creates at start), records each name as copied, and marks the users as
//! kept in the catalog; from then on user changes go to the catalog and logins read it. A name
//! is copied once only, so a user removed in the catalog is never brought back by the copy.

use crate::catalog::databases::Databases;
use crate::catalog::view::positional;
use crate::raft::types::Statement;
use crate::service::ServiceError;
use crate::types::users::UserChange;
use crate::types::value::SqlValue;

/// Copies into the catalog the users of the default database not copied yet, and marks the
/// users as kept in the catalog. Runs on the catalog's leader (elsewhere it does nothing);
/// `seen_version`: the default database's users version when this last found nothing to do.
pub async fn move_into_catalog(
    databases: &Databases,
    seen_version: &mut Option<u64>,
) -> Result<(), String> {
    let catalog = databases.catalog().map_err(|e| e.to_string())?;
    if !catalog.group.leads() {
        return Ok(());
    }
    let default = databases.default_service().clone();
    let version = default.group.database.users_version();
    if databases.view().users_in_catalog && *seen_version == Some(version) {
        return Ok(()); // nothing new in the default database since the last round
    }
    // The view as of everything this leader applied (the names copied in the last round).
    let view = databases.refresh().await.map_err(|e| e.to_string())?;
    if !view.ready {
        return Ok(());
    }
    // Everything the default database's leader committed, applied here first: no user it
    // holds is missed.
    databases
        .catch_up_replica(&default)
        .await
        .map_err(|e| format!("catching up with the default database: {e}"))?;
    let users = default
        .group
        .database
        .users()
        .await
        .map_err(|e| format!("reading the default database's users: {e}"))?;
    let mut copied = 0;
    for user in users.values() {
        if view.users_copied.contains(&user.name) {
            continue;
        }
        catalog
            .propose_user_change(UserChange::Put(user.clone()))
            .await
            .map_err(|e| format!("copying user {:?}: {e}", user.name))?;
        databases
            .write_catalog(vec![
                Statement::plain(CREATE_COPIED_TABLE),
                positional(
                    "INSERT OR IGNORE INTO users_copied (name) VALUES (?1)",
                    vec![SqlValue::Text(user.name.clone())],
                ),
            ])
            .await
            .map_err(|e| {
                format!(
                    "recording user {:?} as copied: {}",
                    user.name,
                    ServiceError::from(e)
                )
            })?;
        copied += 1;
    }
    if !view.users_in_catalog {
        databases
            .write_catalog(vec![
                Statement::plain(CREATE_COPIED_TABLE),
                Statement::plain(
                    "INSERT OR REPLACE INTO catalog_meta (key, value) VALUES ('users_in_catalog', 1)",
                ),
            ])
            .await
            .map_err(|e| {
                format!(
                    "marking the users as kept in the catalog: {}",
                    ServiceError::from(e)
                )
            })?;
        tracing::info!(target: "audit", event = "users_moved", copied, "the users are kept in the cluster catalog from now on");
    } else if copied > 0 {
        tracing::info!(
            copied,
            "users created in the default database copied into the catalog"
        );
    }
    *seen_version = Some(version);
    Ok(())
}

const CREATE_COPIED_TABLE: &str = "CREATE TABLE IF NOT EXISTS users_copied (name TEXT PRIMARY KEY)";
