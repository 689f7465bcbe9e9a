//! openraft's state machine and snapshot builder on top of [`Database`] and [`SnapshotStore`].

use std::io;
use std::sync::Arc;

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};

use crate::db::database::Database;
use crate::db::snapshot_store::{SnapshotFile, SnapshotStore, hash_file};
use crate::types::{Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig};

type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, SnapshotFile>;

/// The state machine of one Raft group. Cheap to clone; all clones share the database.
#[derive(Clone)]
pub struct StateMachine {
    database: Arc<Database>,
    snapshots: SnapshotStore,
}

impl StateMachine {
    pub fn new(database: Arc<Database>, snapshots: SnapshotStore) -> Self {
        Self {
            database,
            snapshots,
        }
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.database
    }
}

fn blocking_error(error: tokio::task::JoinError) -> io::Error {
    io::Error::other(format!("state machine task failed: {error}"))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (database, store) = (self.database.clone(), self.snapshots.clone());
        let started = std::time::Instant::now();
        let (manifest, path) = tokio::task::spawn_blocking(move || store.build(&database))
            .await
            .map_err(blocking_error)??;
        let metrics = crate::metrics::metrics();
        metrics.snapshots.inc();
        metrics
            .snapshot_duration
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(last_log_id = ?manifest.meta.last_log_id, size_bytes = manifest.size_bytes, "snapshot built");
        let file = tokio::fs::File::open(&path).await?;
        Ok(Snapshot {
            meta: manifest.meta,
            snapshot: SnapshotFile {
                file,
                path,
                size_bytes: manifest.size_bytes,
                sha256: manifest.sha256,
            },
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let database = self.database.clone();
        let state = tokio::task::spawn_blocking(move || database.applied_state())
            .await
            .map_err(blocking_error)??;
        Ok((state.last_applied, state.membership))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        let mut responders = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            batch.push(entry);
            responders.push(responder);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let responses = if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            // On this thread: a hand-off to the blocking pool and back costs more than applying
            // a small entry. So does `block_in_place`, which hands this worker's queue to a
            // thread of the blocking pool on every call (measured: reads on the node stalled
            // around each apply, INSERT p50 0.96 -> 0.86 ms without it); it is kept for
            // batches big enough that the apply could hold the worker for long.
            if is_small(&batch) {
                self.database.apply(&batch)?
            } else {
                tokio::task::block_in_place(|| self.database.apply(&batch))?
            }
        } else {
            let database = self.database.clone();
            tokio::task::spawn_blocking(move || database.apply(&batch))
                .await
                .map_err(blocking_error)??
        };
        for (responder, response) in responders.into_iter().zip(responses) {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> Result<(), io::Error> {
        let (database, store, meta) = (self.database.clone(), self.snapshots.clone(), meta.clone());
        tokio::task::spawn_blocking(move || -> Result<(), io::Error> {
            let (size, sha) = hash_file(&snapshot.path)?;
            if size != snapshot.size_bytes || sha != snapshot.sha256 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "received snapshot does not match its checksum",
                ));
            }
            let image_state = crate::db::database::read_image_state(&snapshot.path)?;
            if image_state.last_applied != meta.last_log_id {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "snapshot image holds log id {:?} but its metadata says {:?}",
                        image_state.last_applied, meta.last_log_id
                    ),
                ));
            }
            drop(snapshot.file);
            // Keep the image as the current snapshot first: if we crash before the database
            // swap, start-up restores from it (`recover_from_snapshot`).
            let (_, kept) = store.keep(&snapshot.path, meta)?;
            database.import_image(&kept)?;
            Ok(())
        })
        .await
        .map_err(blocking_error)??;
        tracing::info!("snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        Ok(self
            .snapshots
            .open_current()
            .await?
            .map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

/// Most statements, and bytes of SQL text and parameters, a batch may carry and still be
/// applied on the async worker itself (see `apply`): a few single-row statements, which apply
/// in tens of microseconds. Statement text is no bound on running time (one short UPDATE can
/// visit every row), but the writer's runaway-statement limit bounds each statement, and
/// only one worker is held at a time.
const INLINE_APPLY_STATEMENTS_MAX: usize = 64;
const INLINE_APPLY_BYTES_MAX: usize = 64 * 1024;

/// Whether `batch` is small enough to apply without leaving the async worker.
fn is_small(batch: &[Entry]) -> bool {
    let mut statements = 0usize;
    let mut bytes = 0usize;
    for entry in batch {
        match &entry.payload {
            EntryPayload::Blank | EntryPayload::Membership(_) => {}
            EntryPayload::Normal(command) => {
                if command.load.is_some() || command.users.is_some() {
                    return false;
                }
                for statement in command.batches.iter().flat_map(|b| &b.statements) {
                    statements += 1;
                    bytes += statement.sql.len() + statement.params.approximate_bytes();
                }
            }
        }
        if statements > INLINE_APPLY_STATEMENTS_MAX || bytes > INLINE_APPLY_BYTES_MAX {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::StoredMembership;

    fn machine(dir: &std::path::Path) -> StateMachine {
        let database = Database::open(&dir.join("db.sqlite"), 98, 2).expect("db");
        let snapshots = SnapshotStore::open(&dir.join("snapshots")).expect("snapshots");
        StateMachine::new(Arc::new(database), snapshots)
    }

    /// How many tables named `only_on_source` the machine's database holds (0 or 1).
    async fn source_tables(machine: &StateMachine) -> crate::types::value::SqlValue {
        let statements = vec![crate::types::Statement::plain(
            "SELECT count(*) FROM sqlite_master WHERE name = 'only_on_source'",
        )];
        machine
            .database
            .query(statements, std::time::Duration::from_secs(5))
            .await
            .expect("query")
            .remove(0)
            .rows
            .expect("rows")
            .values[0][0]
            .clone()
    }

    fn entry_of(statements: Vec<crate::types::Statement>) -> Entry {
        let mut entry = openraft::testing::blank_ent::<TypeConfig>(1, 1, 1);
        entry.payload = EntryPayload::Normal(crate::types::Command {
            timestamp_ms: 0,
            batches: vec![crate::types::StatementBatch::new(statements, false)],
            load: None,
            users: None,
            shard: None,
        });
        entry
    }

    #[test]
    fn single_row_writes_apply_on_the_worker_and_big_batches_do_not() {
        use crate::types::Statement;
        let insert = || Statement::plain("INSERT INTO t VALUES (1)");
        assert!(is_small(&[
            entry_of(vec![insert()]),
            entry_of(vec![insert()])
        ]));
        assert!(!is_small(&[entry_of((0..100).map(|_| insert()).collect())]));
        let huge = Statement::plain(format!("SELECT '{}'", "x".repeat(100_000)));
        assert!(!is_small(&[entry_of(vec![huge])]));
    }

    /// A snapshot whose bytes do not match its checksum is refused and changes nothing.
    #[tokio::test]
    async fn corrupted_snapshot_is_refused_and_leaves_the_database_alone() {
        let source_dir = tempfile::tempdir().unwrap();
        let target_dir = tempfile::tempdir().unwrap();
        let mut source = machine(source_dir.path());
        let mut target = machine(target_dir.path());
        {
            let writer = source.database.clone();
            tokio::task::spawn_blocking(move || {
                let connection = rusqlite::Connection::open(writer.path()).unwrap();
                connection
                    .execute_batch("CREATE TABLE only_on_source(x)")
                    .unwrap();
            })
            .await
            .unwrap();
        }
        let snapshot = source.build_snapshot().await.unwrap();
        let corrupted = target_dir.path().join("corrupted.db");
        let mut bytes = std::fs::read(&snapshot.snapshot.path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&corrupted, &bytes).unwrap();
        let file = SnapshotFile {
            file: tokio::fs::File::open(&corrupted).await.unwrap(),
            path: corrupted.clone(),
            size_bytes: snapshot.snapshot.size_bytes,
            sha256: snapshot.snapshot.sha256.clone(),
        };
        let meta = SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
        };
        let error = target.install_snapshot(&meta, file).await.unwrap_err();
        assert!(error.to_string().contains("checksum"), "{error}");
        assert_eq!(
            source_tables(&target).await,
            crate::types::value::SqlValue::Integer(0)
        );
        // The intact image installs (from a copy: installing consumes the file).
        let copy = target_dir.path().join("incoming.db");
        std::fs::copy(&snapshot.snapshot.path, &copy).unwrap();
        let intact = SnapshotFile {
            file: tokio::fs::File::open(&copy).await.unwrap(),
            path: copy,
            size_bytes: snapshot.snapshot.size_bytes,
            sha256: snapshot.snapshot.sha256.clone(),
        };
        target
            .install_snapshot(&snapshot.meta, intact)
            .await
            .unwrap();
        assert_eq!(
            source_tables(&target).await,
            crate::types::value::SqlValue::Integer(1)
        );
    }
}
