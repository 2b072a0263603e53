//! Calls that become queue items: the one constructor for an item made from a route's call,
//! storing it, and the writes the gateway makes itself on a caller's behalf (readings from
//! the data dictionary), queued or sent at once.

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use super::{Item, Services, erp_key};
use crate::backend;
use crate::error::GatewayError;
use crate::route::Route;
use crate::route::exchange::{self, Call};
use crate::route::inputs::RequestValues;

/// Whose call it is and how the ERP will know it: what a queued item keeps besides the call.
pub(crate) struct Origin {
    /// Who owns the delivery (the throttle's caller key); they may read its status.
    pub client: String,
    /// `{delivery.key}` as sent to the ERP.
    pub key: String,
    /// An ordered route's partition.
    pub partition: Option<String>,
    /// The request id, carried to the ERP on every attempt.
    pub request_id: String,
}

/// The queue item for a call through `route`, queued now.
pub(crate) fn item_for(route: &Route, call: Call, origin: Origin) -> Item {
    Item {
        key: origin.key,
        partition: origin.partition,
        route_header: call.route_header,
        request_id: origin.request_id,
        ..Item::new(route.id.clone(), route.backend.name().to_string(), origin.client, call.input)
    }
}

/// Stores an item for the delivery workers; its id once the store has committed it.
pub(crate) async fn enqueue(services: Option<&Services>, item: Item) -> Result<String, GatewayError> {
    let queue = services.and_then(|s| s.queue.as_ref()).ok_or(GatewayError::StoreUnavailable)?;
    let id = item.id.clone();
    queue.accept(item).await?;
    Ok(id)
}

/// What became of a call the gateway made on a caller's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Submitted {
    /// Stored for delivery under this id.
    Queued(String),
    /// Sent at once; the ERP answered with this status.
    Answered(StatusCode),
}

/// A write the gateway makes itself on a caller's behalf (a reading from the data
/// dictionary): the route's mapping, XSD validation, then its queue, or a direct call.
/// `client` owns the delivery (it may read its status); `key` is `{delivery.raw_key}`, and
/// `{delivery.key}` is it scoped to the client and route.
pub(crate) async fn submit(
    services: Option<&Services>,
    route: &Arc<Route>,
    body: Value,
    key: &str,
    client: &str,
    request_id: &str,
) -> Result<Submitted, GatewayError> {
    let headers = HeaderMap::new();
    let delivery_key = erp_key(client, &route.id, key);
    let values = RequestValues {
        path: &[],
        query: &[],
        headers: &headers,
        body: Some(&body),
        delivery_key: &delivery_key,
        raw_key: key,
    };
    let call = exchange::encode_call(route, &values)?;
    if route.queued.is_some() {
        let partition = exchange::partition(route, &values);
        let origin = Origin {
            client: client.to_string(),
            key: delivery_key.clone(),
            partition,
            request_id: request_id.to_string(),
        };
        return enqueue(services, item_for(route, call, origin)).await.map(Submitted::Queued);
    }
    let answer = exchange::fetch(route, call.envelope, backend::Forward::default()).await?;
    Ok(Submitted::Answered(answer.status))
}
