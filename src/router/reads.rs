//! Where a statement's reads of each group go: straight to the group at the request's read
//! consistency, or — inside an interactive transaction — into the group's rehearsal after
//! the transaction's earlier statements there (`interactive`), so it reads its own writes.

use crate::catalog::view::DatabaseEntry;
use crate::raft::types::{GroupId, Statement, StatementResult};
use crate::router::{Router, group_request};
use crate::service::{RequestKind, ServiceError, ServiceRequest};

/// Runs the reads a statement makes of each group (a scatter's parts, a gather's fetches).
#[async_trait::async_trait]
pub trait GroupReads: Send + Sync {
    /// The result of read-only `statement` in `group`.
    async fn read(
        &self,
        group: GroupId,
        statement: Statement,
    ) -> Result<StatementResult, ServiceError>;
}

/// Reads sent to each group as queries on behalf of `request`.
pub struct Direct<'a> {
    pub router: &'a Router,
    /// The catalog entry the statement was routed by (its slot map guards each read).
    pub database: &'a DatabaseEntry,
    pub request: &'a ServiceRequest,
}

#[async_trait::async_trait]
impl GroupReads for Direct<'_> {
    async fn read(
        &self,
        group: GroupId,
        statement: Statement,
    ) -> Result<StatementResult, ServiceError> {
        let query = group_request(self.request, RequestKind::Query, vec![statement], false);
        let response = self.router.send(self.database, group, query).await?;
        Ok(response.results.into_iter().next().unwrap_or_default())
    }
}
