//! The floor for `benches/load.sh`: a bare hyper-in / hyper-out pass-through on the same
//! stack Veneer stands on (tokio, hyper 1, hyper-util's client, mimalloc). Each
//! `GET /items/{no}` POSTs the harness's fixed GetItem envelope to the backend, reads the
//! whole SOAP answer and returns a fixed JSON body: no auth, no limits, no translation. What
//! it costs is what the HTTP hops cost; what Veneer costs beyond it is Veneer's own work.
//!
//! `FLOOR=1 benches/load.sh` builds and measures it in place of Veneer.

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::var("FLOOR_LISTEN").unwrap_or_else(|_| "127.0.0.1:18090".into());
    let backend: hyper::Uri =
        std::env::var("FLOOR_BACKEND").unwrap_or_else(|_| "http://127.0.0.1:18080/erp/soap".into()).parse()?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (client, backend) = (client.clone(), backend.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (client, backend) = (client.clone(), backend.clone());
                async move {
                    let health = req.uri().path() == "/healthz";
                    let call = Request::post(backend)
                        .header("content-type", "text/xml; charset=utf-8")
                        .header("soapaction", "\"urn:example:erp/GetItem\"")
                        .body(Full::new(Bytes::from_static(ENVELOPE)));
                    let status = match call {
                        _ if health => 200,
                        Ok(call) => match client.request(call).await {
                            Ok(res) => match res.into_body().collect().await {
                                Ok(_) => 200,
                                Err(_) => 502,
                            },
                            Err(_) => 502,
                        },
                        Err(_) => 500,
                    };
                    let mut res = Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
                    *res.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
                    res.headers_mut()
                        .insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
                    Ok::<_, Infallible>(res)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
