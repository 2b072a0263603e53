//! Dev mode: the sample manufacturing ERP, in-process, speaking SOAP from its own WSDL.

mod erp;

use std::net::SocketAddr;

pub use erp::{SampleErp, start};

/// Prints how to try the gateway, with commands that work as printed.
pub fn print_welcome(addr: SocketAddr, erp: &SampleErp) {
    println!(
        "\nVeneer dev mode: sample ERP (SOAP) at {erp}, gateway at http://{addr}\n\n\
         Try:\n  \
         curl -s http://{addr}/items/1000\n  \
         curl -s 'http://{addr}/production-orders?status=Released'\n  \
         curl -s -X POST http://{addr}/sensor-readings -H 'content-type: application/json' \\\n    \
         -d '{{\"sensorId\":\"T-100\",\"timestamp\":\"2026-11-25T08:00:00Z\",\"value\":71.25,\"unit\":\"C\"}}'\n  \
         curl -s http://{addr}/items/9999      # a SOAP fault, mapped to 404\n",
        erp = erp.url
    );
}
