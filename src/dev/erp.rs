//! A small manufacturing ERP: items with stock locations, production orders, sensor
//! readings and output reporting. It parses requests and writes responses with Veneer's
//! own translators against its WSDL, so it speaks exactly what the WSDL says.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::schema::wsdl::{self, ReadOptions};
use crate::schema::{Operation, ServiceModel};
use crate::translate::decode::{self, Decoded};
use crate::translate::encode;
use crate::translate::xmltext::escape_into;

const WSDL: &str = include_str!("../../config/wsdl/sample-erp.wsdl");

/// A running sample ERP.
#[derive(Debug, Clone)]
pub struct SampleErp {
    /// Its SOAP endpoint.
    pub url: String,
}

struct Erp {
    model: ServiceModel,
    data: Mutex<Data>,
}

struct Data {
    orders: Vec<Value>,
    next_entry: u64,
}

/// Starts the ERP on a free loopback port; it runs until the process ends.
pub async fn start() -> std::io::Result<SampleErp> {
    let model = wsdl::read(WSDL.as_bytes(), ReadOptions::default()).map_err(std::io::Error::other)?;
    let erp = Arc::new(Erp { model, data: Mutex::new(Data { orders: orders(), next_entry: 1 }) });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/erp", listener.local_addr()?);
    let app = Router::new().route("/erp", post(soap)).with_state(erp);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "sample ERP stopped");
        }
    });
    Ok(SampleErp { url })
}

async fn soap(State(erp): State<Arc<Erp>>, headers: HeaderMap, body: Bytes) -> Response {
    let action = headers.get("soapaction").and_then(|v| v.to_str().ok()).unwrap_or("").trim_matches('"');
    let Some(op) = erp.model.operations.iter().find(|o| o.soap_action == action) else {
        return fault("Client", &format!("unknown SOAPAction {action:?}"));
    };
    let input = match decode::response(&op.input, &erp.model.schema, &body) {
        Ok(Decoded::Body(v)) => v,
        Ok(Decoded::Fault(_)) => return fault("Client", "a request cannot be a Fault"),
        Err(e) => return fault("Client", &format!("invalid request: {e}")),
    };
    let result = match op.name.as_str() {
        "GetItem" => get_item(&input),
        "ListProductionOrders" => erp.list_orders(&input),
        "PostSensorReading" => erp.post_reading(),
        "ReportOutput" => erp.report_output(&input),
        other => Err(format!("operation {other} is not implemented")),
    };
    match result {
        Ok(output) => respond(&erp, op, &output),
        Err(reason) => fault("Client", &reason),
    }
}

fn respond(erp: &Erp, op: &Operation, output: &Value) -> Response {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>"#,
    );
    if let Err(errors) = encode::body_element(&mut xml, &op.output, &erp.model.schema, output) {
        let why: Vec<String> =
            errors.iter().map(|e| format!("{}: {}", e.pointer.as_deref().unwrap_or(""), e.detail)).collect();
        return fault("Server", &format!("response does not match the WSDL: {}", why.join("; ")));
    }
    xml.push_str("</soap:Body></soap:Envelope>");
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

fn fault(code: &str, reason: &str) -> Response {
    let mut xml = format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:{code}</faultcode><faultstring>"#
    );
    escape_into(&mut xml, reason);
    xml.push_str("</faultstring></soap:Fault></soap:Body></soap:Envelope>");
    (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

fn get_item(input: &Value) -> Result<Value, String> {
    let no = input["itemNo"].as_str().unwrap_or_default();
    let item = match no {
        "1000" => json!({
            "no": "1000", "description": "Hydraulic pump HP-200", "baseUnitOfMeasure": "PCS",
            "inventory": 1520.25, "unitPrice": "12345678901234567.123456", "blocked": false,
            "lastDateModified": "2026-11-20T14:03:11Z", "safetyLeadTime": null,
            "location": [
                {"code": "MAIN", "bin": "A-01-03", "quantity": 1200.0},
                {"code": "LINE3", "bin": "L3-FEED", "quantity": 320.25}
            ]
        }),
        "1001" => json!({
            "no": "1001", "description": "Seal kit for HP-200", "baseUnitOfMeasure": "SET",
            "inventory": 42, "unitPrice": 18.9, "blocked": true,
            "lastDateModified": "2026-10-02T09:15:00Z",
            "location": [{"code": "MAIN", "quantity": 42}]
        }),
        "2000" => json!({
            "no": "2000", "description": "Pump housing (phased out)", "baseUnitOfMeasure": "PCS",
            "inventory": 0, "unitPrice": 310.5, "blocked": true,
            "lastDateModified": "2025-01-31T23:59:59Z", "location": []
        }),
        _ => return Err(format!("Item {no} does not exist")),
    };
    Ok(json!({ "getItemResult": item }))
}

fn orders() -> Vec<Value> {
    vec![
        json!({"no": "PO-1001", "status": "Released", "sourceNo": "1000", "quantity": 50, "finishedQuantity": 12, "dueDate": "2026-12-01"}),
        json!({"no": "PO-1002", "status": "Released", "sourceNo": "1001", "quantity": 400, "finishedQuantity": 0, "dueDate": "2026-12-03"}),
        json!({"no": "PO-1003", "status": "Planned", "sourceNo": "1000", "quantity": 20, "finishedQuantity": 0, "dueDate": "2027-01-15"}),
    ]
}

impl Erp {
    fn list_orders(&self, input: &Value) -> Result<Value, String> {
        let status = input["status"].as_str().unwrap_or_default();
        let max = input["maxRows"].as_u64().unwrap_or(u64::MAX);
        let data = self.data.lock().map_err(|_| "ERP state poisoned".to_string())?;
        let found: Vec<Value> =
            data.orders.iter().filter(|o| o["status"] == status).take(max as usize).cloned().collect();
        Ok(json!({ "productionOrder": found }))
    }

    fn post_reading(&self) -> Result<Value, String> {
        let mut data = self.data.lock().map_err(|_| "ERP state poisoned".to_string())?;
        let entry = data.next_entry;
        data.next_entry += 1;
        Ok(json!({ "entryNo": entry, "accepted": true }))
    }

    fn report_output(&self, input: &Value) -> Result<Value, String> {
        let no = input["orderNo"].as_str().unwrap_or_default();
        let qty: f64 = input["quantity"].to_string().parse().map_err(|_| "Quantity is not a number".to_string())?;
        let mut data = self.data.lock().map_err(|_| "ERP state poisoned".to_string())?;
        let order = data
            .orders
            .iter_mut()
            .find(|o| o["no"] == no)
            .ok_or_else(|| format!("Production order {no} does not exist"))?;
        if order["status"] != "Released" {
            return Err(format!("Production order {no} is not released"));
        }
        let done: f64 = order["finishedQuantity"].to_string().parse().unwrap_or(0.0);
        order["finishedQuantity"] = json!(done + qty);
        Ok(json!({ "reportOutputResult": order.clone() }))
    }
}
