//! Set workload: each client inserts unique integers. At the end every acknowledged insert must
//! be present, and nothing may be present that was never attempted or that certainly failed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::json;

use super::{RunContext, final_read, final_read_at, integers};
use crate::client::Reply;
use crate::history::{History, Outcome};

pub const SCHEMA: &str = "CREATE TABLE set_elements(v INTEGER PRIMARY KEY)";

pub struct Workload {
    pub history: History<i64, ()>,
    /// `&db=…` of the database the set lives in (empty: the default database).
    database: String,
}

impl Workload {
    pub fn new(context: &RunContext) -> Arc<Workload> {
        Workload::in_database(context, None)
    }

    /// The set in database `database` (whose `set_elements` table the caller created).
    pub fn in_database(context: &RunContext, database: Option<&str>) -> Arc<Workload> {
        Arc::new(Workload {
            history: History::new(context.start, super::HISTORY_CAPACITY),
            database: database.map(|db| format!("?db={db}")).unwrap_or_default(),
        })
    }

    pub async fn client(self: Arc<Self>, context: Arc<RunContext>, id: usize) {
        let mut rng = context.rng("set", id);
        for sequence in 0i64.. {
            if !context.running() {
                return;
            }
            let value = ((id as i64) << 32) | sequence;
            let url = context.pick_node(&mut rng);
            let invoked = self.history.now();
            let body = json!([["INSERT INTO set_elements(v) VALUES(?)", value]]);
            let path = format!("/db/execute{}", self.database);
            let outcome = match context.client.send(&url, &path, &body).await {
                Reply::Ok(_) => Outcome::Ok(()),
                Reply::Fail(e) => Outcome::Fail(e),
                Reply::Unknown(e) => Outcome::Unknown(e),
            };
            if !self.history.record(id, value, invoked, outcome) {
                return;
            }
            context.think(&mut rng).await;
        }
    }

    pub async fn check(&self, context: &RunContext) -> Result<String, String> {
        let read = if self.database.is_empty() {
            final_read(context, "SELECT v FROM set_elements").await?
        } else {
            let path = format!("/db/query{}&level=linearizable", self.database);
            final_read_at(context, &path, "SELECT v FROM set_elements").await?
        };
        let present: BTreeSet<i64> = integers(&read).into_iter().collect();
        let attempts: HashMap<i64, Outcome<()>> = self
            .history
            .ops()
            .into_iter()
            .map(|op| (op.input, op.outcome))
            .collect();
        let lost: Vec<i64> = attempts
            .iter()
            .filter(|(v, o)| matches!(o, Outcome::Ok(_)) && !present.contains(v))
            .map(|(v, _)| *v)
            .collect();
        let unexpected: Vec<(i64, Option<&Outcome<()>>)> = present
            .iter()
            .filter_map(|v| match attempts.get(v) {
                Some(Outcome::Ok(_) | Outcome::Unknown(_)) => None,
                other => Some((*v, other)),
            })
            .collect();
        if !lost.is_empty() || !unexpected.is_empty() {
            return Err(format!(
                "set: {} acknowledged inserts lost (first: {:?}); {} elements present that were never acknowledged or certainly failed (first: {:?})",
                lost.len(),
                &lost[..lost.len().min(5)],
                unexpected.len(),
                &unexpected[..unexpected.len().min(5)]
            ));
        }
        let (ok, fail, unknown) = self.history.tally();
        Ok(format!(
            "set: all {ok} acknowledged inserts present ({} elements); {fail} failed, {unknown} unknown",
            present.len()
        ))
    }
}
