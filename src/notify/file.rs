//! The JSON-lines file sink (`serve --events-file`): each event on its own line, appended and
//! fsynced before it counts as delivered, for collection in air-gapped networks. The file is
//! opened for each batch, so a log rotation that renames it is followed without a restart.
//! A failed write is cut back, so the file holds whole lines only; after a crash the last
//! batch may appear twice (same `event_id`s).

use std::io::Write;

use super::{DeliveryError, FileSinkConfig, Sink};
use crate::domain::AlertEvent;

pub struct EventsFile {
    path: std::path::PathBuf,
}

impl EventsFile {
    pub fn new(c: &FileSinkConfig) -> Self {
        Self {
            path: c.path.clone(),
        }
    }

    fn append(&self, events: &[(u64, AlertEvent)]) -> std::io::Result<()> {
        let mut lines = Vec::new();
        for (_, event) in events {
            serde_json::to_writer(&mut lines, event)?;
            lines.push(b'\n');
        }
        let created = !self.path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let before = file.metadata()?.len();
        if let Err(e) = file.write_all(&lines).and_then(|()| file.sync_data()) {
            // No half line may stay (a full disk): the retry appends the whole batch again.
            let _ = file.set_len(before);
            return Err(e);
        }
        if created {
            // A new file's directory entry must be durable too.
            let dir = match self.path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl Sink for EventsFile {
    fn batch_size(&self) -> usize {
        256
    }

    async fn deliver(&mut self, events: &[(u64, AlertEvent)]) -> Result<(), DeliveryError> {
        tokio::task::block_in_place(|| self.append(events)).map_err(|error| DeliveryError::Io {
            path: self.path.display().to_string(),
            error,
        })
    }
}
