//! Serving an axum `Router` over real TLS (tokio-rustls + hyper-util), stoppably.
//!
//! `axum::serve` has no TLS, so this is the accept loop shared by the pods and the
//! API server. Stopping a server is what a pod replacement looks like on the wire:
//! the listener closes and every open connection ends at once (a killed container
//! does not drain its connections politely).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// A running server. Dropping it stops it too (abruptly, without waiting).
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

/// A TLS handshake that has not finished by then is abandoned (a stuck client must
/// not hold a task forever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, close every connection, and wait until the listener is gone.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serve `router` over TLS on `listener` until the handle is stopped or dropped.
pub fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    name: String,
) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        // The connections live in this set: when the accept task is aborted, the set
        // is dropped and aborts them all, which closes their sockets.
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            tracing::warn!(server = %name, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    // As real servers do (nginx's tcp_nodelay): a response written after the
                    // TLS session tickets must not wait for the client's delayed ACK.
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let service = TowerToHyperService::new(router.clone());
                    let name = name.clone();
                    conns.spawn(async move {
                        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(server = %name, %peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(server = %name, %peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let builder = Builder::new(TokioExecutor::new());
                        if let Err(e) = builder.serve_connection(TokioIo::new(tls), service).await {
                            tracing::debug!(server = %name, %peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    Ok(ServerHandle {
        addr,
        task: Some(task),
    })
}
