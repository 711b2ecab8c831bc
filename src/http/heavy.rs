//! Heavy requests — a policy's history page and its CSV download, which read segments, and the
//! whole alert history (`/api/v1/alerts` without `?open` or `?limit`), which decodes every
//! alert: at most
//! [`HEAVY_REQUESTS`] run at once (others wait up to [`HEAVY_WAIT`], then get 503 with
//! `Retry-After`), and a download is streamed: rows go to the client in [`CHUNK`]-byte pieces
//! through a channel of [`CHUNKS_IN_FLIGHT`], so a client that does not read holds the reading
//! thread (and its permit) still, not more memory, and is dropped after [`STALLED`].
//!
//! Invariants: the memory of heavy work is bounded by `HEAVY_REQUESTS` × (one month of one
//! policy's rows, sorted + `CHUNK` × `CHUNKS_IN_FLIGHT`), whatever the number of clients; the
//! light endpoints (`/healthz`, `/metrics`, `/api/v1/policies`, open alerts, a page of the alert
//! history) never wait for a permit.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// Heavy requests served at once (one per core of the machines this runs on).
pub const HEAVY_REQUESTS: usize = 2;
/// Time a heavy request waits for its turn before it is answered 503.
pub const HEAVY_WAIT: Duration = Duration::from_secs(20);
/// Bytes of one piece of a streamed download.
pub const CHUNK: usize = 64 * 1024;
/// Pieces written ahead of the client.
pub const CHUNKS_IN_FLIGHT: usize = 4;
/// Time a client may take to accept the next piece before the download is abandoned.
pub const STALLED: Duration = Duration::from_secs(30);

/// A response body: whole, or streamed (an error aborts the response, so a client never takes
/// a cut download for a complete one).
pub type Body = BoxBody<Bytes, io::Error>;

/// The permits of heavy work.
#[derive(Clone)]
pub struct Heavy(Arc<Semaphore>);

impl Default for Heavy {
    fn default() -> Self {
        Self(Arc::new(Semaphore::new(HEAVY_REQUESTS)))
    }
}

impl Heavy {
    /// A permit, waiting up to `HEAVY_WAIT`; none when every permit stayed taken.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        tokio::time::timeout(HEAVY_WAIT, Arc::clone(&self.0).acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Heavy requests being served now.
    pub fn in_flight(&self) -> usize {
        HEAVY_REQUESTS - self.0.available_permits()
    }
}

/// Streams what `produce` writes, on the blocking pool, holding `permit` until it is done.
/// An error from `produce` (or a client gone or stalled) ends the stream with an error.
pub fn streamed<F>(permit: OwnedSemaphorePermit, produce: F) -> Body
where
    F: FnOnce(&mut dyn Write) -> Result<(), String> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(CHUNKS_IN_FLIGHT);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut out = Pieces {
            tx,
            handle,
            buf: Vec::with_capacity(CHUNK),
        };
        let done = produce(&mut out).and_then(|()| out.flush().map_err(|e| e.to_string()));
        if let Err(e) = done {
            tracing::debug!(error = %e, "streamed download ended early");
            let _ = out.tx.blocking_send(Err(io::Error::other(e)));
        }
    });
    StreamBody::new(ReceiverStream::new(rx).map(|piece| piece.map(Frame::data))).boxed()
}

/// A writer that hands [`CHUNK`]-byte pieces to the response.
struct Pieces {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
    handle: tokio::runtime::Handle,
    buf: Vec<u8>,
}

impl Pieces {
    fn send(&mut self) -> io::Result<()> {
        let piece = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        let sent = self
            .handle
            .block_on(tokio::time::timeout(STALLED, self.tx.send(Ok(piece))));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took nothing for {} s", STALLED.as_secs()),
            )),
        }
    }
}

impl Write for Pieces {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            self.send()
        }
    }
}
