//! Connections a handler can cut: how the simulator resets a connection without answering.
//!
//! Owns: [`CutListener`] (a TCP listener for `axum::serve`), [`CutIo`] (the stream it yields),
//! and [`Conn`] (the per-connection handle a handler gets through `ConnectInfo`).
//!
//! May not: decide when to cut (the handlers do, from the fault plan).
//!
//! Why: an ambiguous submit must create and bill the task and then vanish without an HTTP
//! answer. axum always writes the response a handler returns, so the handler instead flips the
//! connection's switch; the next write (the response) fails, hyper drops the connection, and the
//! socket is closed with `SO_LINGER` 0 so the client sees a reset, not an answer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A listener whose connections can be cut from inside a handler.
#[derive(Debug)]
pub struct CutListener {
    inner: TcpListener,
}

impl CutListener {
    pub fn new(inner: TcpListener) -> CutListener {
        CutListener { inner }
    }
}

/// The peer address and the cut switch of one connection.
#[derive(Debug, Clone)]
pub struct Conn {
    pub remote: SocketAddr,
    switch: Arc<AtomicBool>,
}

impl Conn {
    /// Cut this connection: nothing more is written, the peer gets a reset.
    pub fn cut(&self) {
        tracing::debug!("sim: cutting the connection from {}", self.remote);
        self.switch.store(true, Ordering::SeqCst);
    }
}

impl Listener for CutListener {
    type Io = CutIo;
    type Addr = Conn;

    async fn accept(&mut self) -> (CutIo, Conn) {
        loop {
            match self.inner.accept().await {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    let switch = Arc::new(AtomicBool::new(false));
                    let conn = Conn {
                        remote,
                        switch: switch.clone(),
                    };
                    return (
                        CutIo {
                            inner: stream,
                            switch,
                        },
                        conn,
                    );
                }
                // Per-connection errors (the peer left before accept) are not the listener's;
                // anything else (out of file descriptors) gets a breather, as axum's own does.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!("sim: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Conn> {
        Ok(Conn {
            remote: self.inner.local_addr()?,
            switch: Arc::default(),
        })
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl Connected<IncomingStream<'_, CutListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, CutListener>) -> Conn {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that fails every operation once its connection was cut.
#[derive(Debug)]
pub struct CutIo {
    inner: TcpStream,
    switch: Arc<AtomicBool>,
}

impl CutIo {
    fn check(&self) -> io::Result<()> {
        if self.switch.load(Ordering::SeqCst) {
            // Zero linger: closing sends RST, so the client cannot mistake it for a clean end.
            let _ = self.inner.set_zero_linger();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "sim: connection cut on purpose",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for CutIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CutIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
