//! The client connection: plain TCP, or TLS after STARTTLS / on the
//! implicit listener.
//!
//! An idle session holds no read buffer: it waits for the socket to become
//! readable and only then lends a buffer to a read that does not wait
//! ([`ClientStream::try_read_buf`]). For TLS the same holds: the read is
//! polled once (rustls decrypts what arrived, or keeps a partial record in
//! its own small buffer) and the session goes back to waiting on the socket.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while a STARTTLS handshake owns the socket, or after it failed.
    Closed,
}

fn closed() -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::NotConnected)
}

impl ClientStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, ClientStream::Tls(_))
    }

    /// The server name the client asked for in its ClientHello.
    pub fn sni(&self) -> Option<String> {
        match self {
            ClientStream::Tls(tls) => tls.get_ref().1.server_name().map(str::to_string),
            _ => None,
        }
    }

    /// Takes the TCP socket out (for the STARTTLS handshake).
    pub fn take_plain(&mut self) -> Option<TcpStream> {
        match std::mem::replace(self, ClientStream::Closed) {
            ClientStream::Plain(tcp) => Some(tcp),
            other => {
                *self = other;
                None
            }
        }
    }

    /// Waits until the socket has bytes (or EOF), without a buffer.
    pub async fn readable(&self) -> std::io::Result<()> {
        match self {
            ClientStream::Plain(tcp) => tcp.readable().await,
            ClientStream::Tls(tls) => tls.get_ref().0.readable().await,
            ClientStream::Closed => Err(closed()),
        }
    }

    /// Reads what is available now into `buf`; `WouldBlock` when nothing is.
    /// A TLS peer's close without `close_notify` reads as EOF (0).
    pub fn try_read_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            ClientStream::Plain(tcp) => tcp.try_read_buf(buf),
            ClientStream::Tls(tls) => {
                let read = std::pin::pin!(tls.read_buf(buf));
                // Polled once: Pending means the socket had no complete
                // record; the caller waits for readability and tries again.
                match read.poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
                }
            }
            ClientStream::Closed => Err(closed()),
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            ClientStream::Plain(tcp) => {
                tcp.write_all(bytes).await?;
                tcp.flush().await
            }
            ClientStream::Tls(tls) => {
                tls.write_all(bytes).await?;
                tls.flush().await
            }
            ClientStream::Closed => Err(closed()),
        }
    }

    /// Closes the write side (TLS: `close_notify` first).
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            ClientStream::Plain(tcp) => tcp.shutdown().await,
            ClientStream::Tls(tls) => tls.shutdown().await,
            ClientStream::Closed => Ok(()),
        }
    }
}
