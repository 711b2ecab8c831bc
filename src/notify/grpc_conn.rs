//! The gRPC endpoint's connections: at most [`MAX_GRPC_CONNECTIONS`] at once (more are closed
//! as soon as they are accepted, so idle sockets cannot take the process's file descriptors
//! and with them HTTP), and a connection that sends nothing for [`GRPC_IDLE`] is closed. The
//! server pings every [`GRPC_PING`] (HTTP/2 keep-alive), so a live watcher — even one that
//! waits hours for an alert — answers and stays; a socket that never speaks goes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// gRPC connections served at once.
pub const MAX_GRPC_CONNECTIONS: usize = 64;
/// Time a connection may send nothing before it is closed.
pub const GRPC_IDLE: Duration = Duration::from_secs(30);
/// Interval of the server's HTTP/2 pings (a client answers each: it is not idle).
pub const GRPC_PING: Duration = Duration::from_secs(10);

/// The accepted connections of `listener`, within the cap.
pub fn incoming(listener: TcpListener) -> Incoming {
    Incoming {
        listener,
        permits: Arc::new(Semaphore::new(MAX_GRPC_CONNECTIONS)),
        backoff: None,
    }
}

/// The stream of accepted connections (see [`incoming`]).
pub struct Incoming {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    /// After a failed accept (out of file descriptors…): a pause rather than a spin.
    backoff: Option<Pin<Box<Sleep>>>,
}

impl Stream for Incoming {
    type Item = io::Result<Connection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(backoff) = self.backoff.as_mut() {
                if backoff.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.backoff = None;
            }
            match self.listener.poll_accept(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    tracing::warn!(error = %e, "gRPC accept failed");
                    self.backoff = Some(Box::pin(tokio::time::sleep(Duration::from_millis(100))));
                }
                Poll::Ready(Ok((stream, peer))) => {
                    let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                        tracing::debug!(%peer, "{MAX_GRPC_CONNECTIONS} gRPC connections open: closing a new one");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    return Poll::Ready(Some(Ok(Connection {
                        stream,
                        idle: Box::pin(tokio::time::sleep(GRPC_IDLE)),
                        _permit: permit,
                    })));
                }
            }
        }
    }
}

/// An accepted connection: its permit, and the deadline of its silence.
pub struct Connection {
    stream: TcpStream,
    idle: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.idle.as_mut().reset(Instant::now() + GRPC_IDLE);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing received for {} s", GRPC_IDLE.as_secs()),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
