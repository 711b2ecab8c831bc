//! What became of an alert's events at each sink, for `dictmon query alerts`: computed from
//! the outbox and the sinks' progress in the catalog (read-only, works on a copy).

use std::collections::HashMap;
use std::hash::BuildHasher;

use uuid::Uuid;

use crate::domain::{Alert, AlertEvent, AlertEventType};
use crate::store::catalog::SinkProgress;

/// The state of one event at one sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventState {
    /// The sink acknowledged it.
    Delivered,
    /// Waiting; the sink's last attempt succeeded or there was none yet.
    Pending,
    /// Waiting, and the sink's last attempt failed.
    Failing,
    /// In the outbox before the sink was configured: not for this sink.
    NotSent,
    /// Not in the outbox (imported history, or deleted by retention).
    Unknown,
}

impl EventState {
    /// One word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Pending => "pending",
            Self::Failing => "failing",
            Self::NotSent => "not-sent",
            Self::Unknown => "-",
        }
    }
}

/// The outbox's sequence numbers by event id.
pub fn sequences(outbox: &[(u64, AlertEvent)]) -> HashMap<Uuid, u64> {
    outbox.iter().map(|(seq, e)| (e.event_id, *seq)).collect()
}

fn state(seq: Option<u64>, sink: &SinkProgress) -> EventState {
    match seq {
        None => EventState::Unknown,
        Some(s) if s < sink.since_seq => EventState::NotSent,
        Some(s) if s < sink.next_seq => EventState::Delivered,
        Some(_) if sink.failures > 0 => EventState::Failing,
        Some(_) => EventState::Pending,
    }
}

/// Per sink (in the order given), the alert's state there in one word, or
/// `created:<state>,resolved:<state>` when its two events differ.
pub fn delivery_of<H: BuildHasher>(
    alert: &Alert,
    sequences: &HashMap<Uuid, u64, H>,
    sinks: &[(String, SinkProgress)],
) -> Vec<(String, String)> {
    // A category notice has one event, which stands for both.
    let notice = sequences
        .get(&AlertEvent::id_for(
            alert.id,
            AlertEventType::CategoryChanged,
        ))
        .copied();
    let created = sequences
        .get(&AlertEvent::id_for(alert.id, AlertEventType::Created))
        .copied()
        .or(notice);
    let resolved = alert.resolved_at.filter(|_| notice.is_none()).map(|_| {
        sequences
            .get(&AlertEvent::id_for(alert.id, AlertEventType::Resolved))
            .copied()
    });
    sinks
        .iter()
        .map(|(name, sink)| {
            let c = state(created, sink);
            let text = match resolved.map(|r| state(r, sink)) {
                Some(r) if r != c => format!("created:{},resolved:{}", c.as_str(), r.as_str()),
                _ => c.as_str().to_owned(),
            };
            (name.clone(), text)
        })
        .collect()
}
