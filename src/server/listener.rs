//! The accept loop, plain or TLS, with the limits a public listener needs: a cap on open
//! connections (past it, new ones wait in the kernel's backlog), a deadline for each
//! request's headers (hyper's timer: a client that trickles half a request line, or idles on
//! a keep-alive connection, is closed), a TLS handshake deadline, and a graceful drain.
//!
//! Each request learns its peer's address (`ConnectInfo<SocketAddr>`), which the token
//! endpoint's failed-login limit uses.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum_server::tls_rustls::RustlsConfig;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use super::stack::App;

/// Connection-level limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to receive a request's headers; also the longest keep-alive idle time.
    pub header_timeout: Duration,
    /// One slot per open connection, shared by every runtime that accepts on the listener.
    pub slots: Arc<Semaphore>,
}

impl Limits {
    /// Limits allowing `max_connections` open connections.
    pub fn new(header_timeout: Duration, max_connections: usize) -> Self {
        Limits { header_timeout, slots: Arc::new(Semaphore::new(max_connections)) }
    }
}

/// Serves `app` on `listener` (through TLS when `tls` is set) until `shutdown` resolves,
/// then stops accepting and gives open connections `drain` to finish.
pub async fn serve(
    listener: TcpListener,
    app: App,
    tls: Option<RustlsConfig>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    // HTTP/2 pings find dead peers; an unanswered ping closes the connection.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout)
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let slots = limits.slots.clone();
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // Take a slot before accepting: at the cap, connections wait in the backlog.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(tls) => {
                    let Some(stream) = handshake(stream, &tls, header_timeout, peer).await else { return };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => {
            tracing::warn!("drain deadline reached; exiting with requests still in flight");
        }
    }
    Ok(())
}

/// The TLS handshake with the listener's current certificates, within the header deadline.
async fn handshake(
    stream: TcpStream,
    tls: &RustlsConfig,
    deadline: Duration,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.get_inner());
    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// How serving ends: accepting stops when `stop` turns true, in-flight requests get `drain`
/// to finish, and the threads' runtimes stay up until `release` turns true.
pub(crate) struct Ending {
    /// Stop accepting.
    pub stop: watch::Receiver<bool>,
    /// Let the serving threads' runtimes go.
    pub release: watch::Receiver<bool>,
    /// How long in-flight requests may take once accepting stopped.
    pub drain: Duration,
}

/// Serves `app` on `listener` from one current-thread runtime per core: this task's runtime
/// and `threads - 1` more, each on a thread of its own, all accepting on the same socket,
/// until `stop` turns true. Work-stealing across threads cost more than it saved on the load
/// harness: here a request, its backend call and their wakeups stay on one thread (README,
/// Performance). Connection slots are shared. The extra runtimes outlive their accept loops
/// until `release` turns true, so tasks they started (pooled backend connections, calls
/// finishing on their own task) live as long as the rest of the gateway; [`Threads::join`]
/// waits for them.
pub(crate) async fn serve_on_threads(
    listener: TcpListener,
    app: App,
    tls: Option<RustlsConfig>,
    limits: Limits,
    ending: Ending,
    threads: usize,
) -> (std::io::Result<()>, Threads) {
    let Ending { stop, release, drain } = ending;
    let mut helpers = Threads(Vec::new());
    let socket = match listener.into_std() {
        Ok(s) => s,
        Err(e) => return (Err(e), helpers),
    };
    for i in 1..threads.max(1) {
        let clone = match socket.try_clone() {
            Ok(c) => c,
            Err(e) => return (Err(e), helpers),
        };
        let (app, tls, limits, stop, release) =
            (app.clone(), tls.clone(), limits.clone(), stop.clone(), release.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
        let spawned = std::thread::Builder::new().name(format!("veneer-serve-{i}")).spawn(move || {
            crate::backend::client::use_pool(i);
            let served = tokio::runtime::Builder::new_current_thread().enable_all().build().and_then(|rt| {
                rt.block_on(async move {
                    let served = serve(TcpListener::from_std(clone)?, app, tls, limits, until(stop), drain).await;
                    until(release).await;
                    served
                })
            });
            let _ = done_tx.send(served);
        });
        match spawned {
            Ok(_) => helpers.0.push(done_rx),
            Err(e) => return (Err(e), helpers),
        }
    }
    let served = match TcpListener::from_std(socket) {
        Ok(l) => serve(l, app, tls, limits, until(stop), drain).await,
        Err(e) => Err(e),
    };
    (served, helpers)
}

/// Resolves once `flag` turns true (or its sender is gone).
async fn until(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

/// The extra serving threads of [`serve_on_threads`].
pub struct Threads(Vec<tokio::sync::oneshot::Receiver<std::io::Result<()>>>);

impl Threads {
    /// Waits for every thread to finish (after `release`), logging any that failed.
    pub async fn join(self) {
        for helper in self.0 {
            if let Ok(Err(e)) = helper.await {
                tracing::error!(error = %e, "a serving thread failed");
            }
        }
    }
}
