//! The floor for `benches/load.sh`: a bare hyper-in / hyper-out pass-through on the same
//! stack Veneer stands on (tokio, hyper 1, hyper-util's client, mimalloc). Each
//! `GET /items/{no}` POSTs the harness's fixed GetItem envelope to the backend, reads the
//! whole SOAP answer and returns a fixed JSON body: no auth, no limits, no translation. What
//! it costs is what the HTTP hops cost; what Veneer costs beyond it is Veneer's own work.
//!
//! `FLOOR=1 benches/load.sh` builds and measures it in place of Veneer; `FLOOR_CLIENT=reqwest`
//! swaps hyper's client for reqwest and `FLOOR_SERVER=axum` serves through axum, so each
//! layer Veneer stands on is measured by itself.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ENVELOPE: &[u8] = include_bytes!("../benches/load/backend/getitem-request.xml");
const ANSWER: &str = r#"{"no":"1000","description":"City Bike 28\" & Lights (Ø 622 mm)","unitOfMeasure":"PCS","inventory":125.5,"blocked":true,"lastModified":"2024-05-17T09:31:04Z","locations":[{"code":"MAIN","quantity":100},{"code":"EAST","quantity":20.5},{"code":"WEST","quantity":5}]}"#;

/// The backend client under test: `FLOOR_CLIENT=hyper` (default) or `reqwest`.
#[derive(Clone)]
enum Backend {
    Hyper(Box<Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>>, hyper::Uri),
    Reqwest(reqwest::Client, reqwest::Url),
}

impl Backend {
    /// POSTs the envelope and reads the whole answer; the status to give the caller.
    async fn call(&self) -> u16 {
        match self {
            Backend::Hyper(client, uri) => {
                let call = Request::post(uri.clone())
                    .header("content-type", "text/xml; charset=utf-8")
                    .header("soapaction", "\"urn:example:erp/GetItem\"")
                    .body(Full::new(Bytes::from_static(ENVELOPE)));
                let Ok(call) = call else { return 500 };
                match client.request(call).await {
                    Ok(res) => match res.into_body().collect().await {
                        Ok(_) => 200,
                        Err(_) => 502,
                    },
                    Err(_) => 502,
                }
            }
            Backend::Reqwest(client, url) => {
                let call = client
                    .post(url.clone())
                    .header("content-type", "text/xml; charset=utf-8")
                    .header("soapaction", "\"urn:example:erp/GetItem\"")
                    .body(Bytes::from_static(ENVELOPE));
                match call.send().await {
                    Ok(res) => match res.bytes().await {
                        Ok(_) => 200,
                        Err(_) => 502,
                    },
                    Err(_) => 502,
                }
            }
        }
    }
}

fn answer(status: u16) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
    *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    res.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    res
}

/// `FLOOR_RUNTIME=per-core`: one current-thread runtime per core, each with its own
/// `SO_REUSEPORT` listener and its own client pool, against tokio's multi-thread default.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var("FLOOR_RUNTIME").as_deref() != Ok("per-core") {
        return tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve());
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(|| -> Result<(), String> {
                let rt =
                    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
                rt.block_on(serve()).map_err(|e| e.to_string())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "a runtime thread panicked")??;
    }
    Ok(())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let listen: std::net::SocketAddr =
        std::env::var("FLOOR_LISTEN").unwrap_or_else(|_| "127.0.0.1:18090".into()).parse()?;
    let url = std::env::var("FLOOR_BACKEND").unwrap_or_else(|_| "http://127.0.0.1:18080/erp/soap".into());
    let backend = match std::env::var("FLOOR_CLIENT").as_deref() {
        Ok("reqwest") => Backend::Reqwest(reqwest::Client::builder().no_proxy().build()?, url.parse()?),
        _ => Backend::Hyper(Box::new(Client::builder(TokioExecutor::new()).build_http()), url.parse()?),
    };
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(listen)?;
    let listener = socket.listen(1024)?;
    // FLOOR_SERVER=axum: the same handler behind an axum Router (what Veneer serves with).
    if std::env::var("FLOOR_SERVER").as_deref() == Ok("axum") {
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let backend = backend.clone();
            async move { answer(if req.uri().path() == "/healthz" { 200 } else { backend.call().await }) }
        });
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|s| {
            let _ = s.set_nodelay(true);
        });
        axum::serve(listener, app).await?;
        return Ok(());
    }
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let backend = backend.clone();
                async move {
                    let status = if req.uri().path() == "/healthz" { 200 } else { backend.call().await };
                    Ok::<_, Infallible>(answer(status))
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
