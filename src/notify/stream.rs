//! The gRPC `WatchAlerts` stream (`proto/alerts.proto`) on the appliance's own gRPC endpoint:
//! replays the outbox after the client's last `event_id`, then follows it live. Each stream
//! reads the outbox by sequence, so replay and live events meet with no gap and no repeat.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use super::Wakeup;
use crate::domain::AlertEvent;
use crate::store::catalog::Catalog;

/// Code generated from `proto/alerts.proto`.
#[allow(
    missing_docs,
    clippy::pedantic,
    clippy::unwrap_used,
    reason = "generated code"
)]
pub mod proto {
    tonic::include_proto!("dictmon.alerts.v1");
}

use proto::alert_service_server::{AlertService, AlertServiceServer};

/// Events sent per outbox read.
const READ_BATCH: usize = 256;

/// The service: the catalog to read, the signal of new events, and the appliance's shutdown
/// (which ends every stream, so the server can stop).
pub struct AlertStream {
    catalog: Arc<Catalog>,
    wakeup: Wakeup,
    shutdown: watch::Receiver<bool>,
}

impl AlertStream {
    /// The tonic service to add to a server.
    pub fn service(
        catalog: Arc<Catalog>,
        wakeup: Wakeup,
        shutdown: watch::Receiver<bool>,
    ) -> AlertServiceServer<Self> {
        AlertServiceServer::new(Self {
            catalog,
            wakeup,
            shutdown,
        })
    }
}

/// The wire form of an event.
pub fn to_proto(seq: u64, e: &AlertEvent) -> proto::AlertEvent {
    proto::AlertEvent {
        event_id: e.event_id.to_string(),
        event_type: e.event_type.as_str().to_owned(),
        timestamp: Some(prost_types::Timestamp {
            seconds: e.timestamp.timestamp(),
            nanos: i32::try_from(e.timestamp.timestamp_subsec_nanos()).unwrap_or(0),
        }),
        endpoint_id: e.endpoint_id.as_str().to_owned(),
        severity: e.severity.as_str().to_owned(),
        available_tokens: e.available_tokens,
        capacity: e.capacity,
        utilization_percent: e.utilization_percent,
        recovery_eta_seconds: e.recovery_eta_seconds,
        exhaustion_projection_seconds: e.exhaustion_projection_seconds,
        psp_category: e.psp_category.to_string(),
        message: e.message.clone(),
        category_change: e.category_change.as_ref().map(|c| proto::CategoryChange {
            from: c.from.to_string(),
            to: c.to.to_string(),
            policies: c
                .policies
                .iter()
                .map(|b| proto::BucketChange {
                    endpoint_id: b.endpoint_id.as_str().to_owned(),
                    old_capacity: b.old_capacity,
                    new_capacity: b.new_capacity,
                    old_refill_tokens: b.old_refill_tokens,
                    new_refill_tokens: b.new_refill_tokens,
                    refill_period_sec: b.refill_period_sec,
                })
                .collect(),
        }),
        sequence: seq,
    }
}

fn internal(e: &crate::store::catalog::CatalogError) -> Status {
    Status::unavailable(format!("cannot read the outbox: {e}"))
}

#[tonic::async_trait]
impl AlertService for AlertStream {
    type WatchAlertsStream =
        tokio_stream::wrappers::ReceiverStream<Result<proto::AlertEvent, Status>>;

    async fn watch_alerts(
        &self,
        request: Request<proto::WatchAlertsRequest>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        let after = request.into_inner().after_event_id;
        let catalog = self.catalog.clone();
        let mut next = if after.trim().is_empty() {
            let c = catalog.clone();
            run_blocking(move || c.next_event_seq()).await?
        } else {
            let id: uuid::Uuid = after.trim().parse().map_err(|_| {
                Status::invalid_argument(format!("after_event_id {after:?} is not a UUID"))
            })?;
            let c = catalog.clone();
            match run_blocking(move || c.event_seq(id)).await? {
                Some(seq) => seq + 1,
                None => {
                    return Err(Status::not_found(format!(
                        "event {id} is not in the outbox (deleted by retention, or from another appliance); reconnect with an empty after_event_id to follow new events"
                    )));
                }
            }
        };
        let (tx, rx) = mpsc::channel(64);
        let mut wake = self.wakeup.subscribe();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let c = catalog.clone();
                let batch = match run_blocking(move || c.events_from(next, READ_BATCH)).await {
                    Ok(b) => b,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if batch.is_empty() {
                    if wait(&mut wake, &mut shutdown, &tx).await {
                        return;
                    }
                    continue;
                }
                for (seq, event) in &batch {
                    tokio::select! {
                        sent = tx.send(Ok(to_proto(*seq, event))) => {
                            if sent.is_err() {
                                return; // The client went away.
                            }
                        }
                        // A client that stops reading must not hold the appliance's shutdown.
                        _ = shutdown.changed() => return,
                    }
                    next = seq + 1;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}

/// Waits for new events; true when the client went away or the appliance stops.
async fn wait(
    wake: &mut watch::Receiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
    tx: &mpsc::Sender<Result<proto::AlertEvent, Status>>,
) -> bool {
    tokio::select! {
        r = wake.changed() => {
            if r.is_err() {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            false
        }
        () = tokio::time::sleep(Duration::from_secs(5)) => false,
        () = tx.closed() => true,
        _ = shutdown.changed() => true,
    }
}

async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::catalog::CatalogError> + Send + 'static,
) -> Result<T, Status> {
    super::blocking(f).await.map_err(|e| internal(&e))
}
