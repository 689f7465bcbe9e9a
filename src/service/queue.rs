//! Queued writes (rqlite's `queue`): requests are acknowledged at once with a sequence number
//! and written in the background, many requests to one log entry, for bulk throughput.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::raft::types::StatementBatch;
use crate::service::{
    ReadConsistency, RequestKind, Service, ServiceError, ServiceRequest, WriteConcern,
};

/// Queue limits and batching.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Requests waiting at most; beyond it a queued write is refused (HTTP 503).
    pub capacity: usize,
    /// Requests per log entry at most.
    pub batch_max: usize,
    /// How long the first request of a batch waits for others.
    pub linger: Duration,
    /// Time allowed to write one batch.
    pub write_timeout: Duration,
    /// How long a batch that found no leader is tried again (every `retry_interval`), as
    /// rqlite retries queued writes until they land; other failures are not retried (the
    /// write may have been applied).
    pub retry_for: Duration,
    pub retry_interval: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            capacity: 8192,
            batch_max: 512,
            linger: Duration::from_millis(10),
            write_timeout: Duration::from_secs(30),
            retry_for: Duration::from_secs(120),
            retry_interval: Duration::from_secs(1),
        }
    }
}

/// Completes once a queued request with `wait` has been written (or has failed).
pub type QueueCompletion = oneshot::Receiver<Result<(), ServiceError>>;

struct Queued {
    batch: StatementBatch,
    sequence: u64,
    done: Option<oneshot::Sender<Result<(), ServiceError>>>,
}

/// Handle for enqueueing writes.
pub struct WriteQueue {
    sender: mpsc::Sender<Queued>,
    next_sequence: AtomicU64,
}

impl WriteQueue {
    /// Starts the background writer for `service`.
    pub fn start(service: Arc<Service>, settings: QueueSettings) -> Arc<WriteQueue> {
        let (sender, receiver) = mpsc::channel(settings.capacity.max(1));
        tokio::spawn(flush_loop(service, receiver, settings));
        // Sequence numbers start from the wall clock so they keep increasing across restarts.
        let start = crate::service::unix_now_ms().max(0) as u64 * 1000;
        Arc::new(WriteQueue {
            sender,
            next_sequence: AtomicU64::new(start),
        })
    }

    /// Enqueues `batch`; returns its sequence number and, when `wait` is set, a receiver
    /// that completes once the batch is written.
    pub fn enqueue(
        &self,
        batch: StatementBatch,
        wait: bool,
    ) -> Result<(u64, Option<QueueCompletion>), ServiceError> {
        let sequence = self.next_sequence.fetch_add(1, Ordering::Relaxed);
        let (done, receiver) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.sender
            .try_send(Queued {
                batch,
                sequence,
                done,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    ServiceError::Unavailable("the write queue is full; retry shortly".into())
                }
                mpsc::error::TrySendError::Closed(_) => {
                    ServiceError::Unavailable("the write queue has stopped".into())
                }
            })?;
        Ok((sequence, receiver))
    }
}

/// Writes `request`, trying again while no leader is known or the known one cannot be
/// reached (the write certainly did not run), up to `settings.retry_for`.
async fn write_retrying(
    service: &Service,
    request: ServiceRequest,
    settings: &QueueSettings,
) -> Result<(), ServiceError> {
    let give_up_at = tokio::time::Instant::now() + settings.retry_for;
    loop {
        match service.handle(request.clone()).await {
            Ok(_) => return Ok(()),
            Err(error)
                if crate::service::peer::never_reached_the_leader(&error)
                    && tokio::time::Instant::now() + settings.retry_interval < give_up_at =>
            {
                tracing::debug!("queued writes found no leader; trying again");
                tokio::time::sleep(settings.retry_interval).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn flush_loop(
    service: Arc<Service>,
    mut receiver: mpsc::Receiver<Queued>,
    settings: QueueSettings,
) {
    while let Some(first) = receiver.recv().await {
        let mut pending = vec![first];
        let linger_until = tokio::time::Instant::now() + settings.linger;
        while pending.len() < settings.batch_max {
            match tokio::time::timeout_at(linger_until, receiver.recv()).await {
                Ok(Some(next)) => pending.push(next),
                Ok(None) | Err(_) => break,
            }
        }
        let request = ServiceRequest {
            kind: RequestKind::Execute,
            batches: pending.iter().map(|q| q.batch.clone()).collect(),
            read: ReadConsistency::default(),
            write_concern: WriteConcern::Majority,
            write_concern_timeout: Duration::ZERO,
            timeout: settings.write_timeout,
            forward_to_leader: true,
        };
        let outcome = write_retrying(&service, request, &settings).await;
        let (first, last) = (pending[0].sequence, pending[pending.len() - 1].sequence);
        match &outcome {
            Ok(()) => tracing::debug!(
                requests = pending.len(),
                first,
                last,
                "queued writes applied"
            ),
            Err(error) => {
                tracing::warn!(requests = pending.len(), first, last, %error, "queued writes failed")
            }
        }
        for queued in pending {
            if let Some(done) = queued.done {
                let _ = done.send(outcome.clone());
            }
        }
    }
}
