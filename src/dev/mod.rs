//! Dev mode: the sample manufacturing ERP, in-process, speaking SOAP from its own WSDL, and
//! a demo OAuth2 client granted every scope the sample routes use.

mod erp;

use std::net::SocketAddr;

pub use erp::SampleErp;
pub use erp::start;

/// Where dev mode looks for an MQTT broker (Mosquitto's default).
pub(crate) const DEV_BROKER: &str = "127.0.0.1:1883";

/// The broker on [`DEV_BROKER`], when one answers: dev mode then subscribes to the sample
/// dictionary's topics.
pub(crate) fn local_broker() -> Option<SocketAddr> {
    let addr: SocketAddr = DEV_BROKER.parse().ok()?;
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)).ok().map(|_| addr)
}

/// MQTT settings for dev mode's broker.
pub(crate) fn mqtt_settings(broker: SocketAddr) -> crate::ingest::mqtt::MqttSettings {
    crate::ingest::mqtt::MqttSettings {
        host: broker.ip().to_string(),
        port: broker.port(),
        tls: None,
        client_id: "veneer-dev".into(),
        credentials: None,
        share: None,
        error_topic: None,
        keep_alive: std::time::Duration::from_secs(30),
    }
}

/// client_id of the dev-mode demo client.
pub const DEMO_CLIENT: &str = "demo";

/// client_id of the dev-mode operator (scope `veneer:admin`).
pub(crate) const ADMIN_CLIENT: &str = "dev-admin";

/// Prints how to try the gateway at `base` (the URL clients reach), with commands that work
/// as printed.
///
/// The text is formatted first and written in one call, and a closed stdout is ignored:
/// `println!` would write it piece by piece and panic on a reader that stopped after the
/// address line (`veneer serve --dev | head -2`, a test harness), taking the gateway down.
pub(crate) fn print_welcome(
    base: &str,
    local: SocketAddr,
    erp: &SampleErp,
    (secret, admin_secret): (&str, &str),
    data: &std::path::Path,
    mqtt: Option<SocketAddr>,
) {
    use std::io::Write;
    let text = format!(
        "\nVeneer dev mode: sample ERP (SOAP) at {erp}, gateway at {base}\n{bound}\
         Demo OAuth2 client: client_id={DEMO_CLIENT} client_secret={secret}\n\
         Operator (scope veneer:admin): client_id={ADMIN_CLIENT} client_secret={admin_secret}\n\
         (set VENEER_DEV_SECRET and VENEER_DEV_ADMIN_SECRET to choose the secrets)\n\n\
         Get a token, then call a route with it:\n  \
         TOKEN=$(curl -s -u {DEMO_CLIENT}:{secret} -d grant_type=client_credentials {base}/oauth2/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n  \
         curl -s -H \"Authorization: Bearer $TOKEN\" {base}/items/1000\n\n\
         More:\n  \
         curl -s -H \"Authorization: Bearer $TOKEN\" '{base}/production-orders?status=Released'\n  \
         curl -s -H \"Authorization: Bearer $TOKEN\" -X POST {base}/sensor-readings -H 'content-type: application/json' \\\n    \
         -d '{{\"sensorId\":\"T-100\",\"timestamp\":\"2026-11-25T08:00:00Z\",\"value\":71.25,\"unit\":\"C\"}}'\n  \
         curl -s -H \"Authorization: Bearer $TOKEN\" -X POST {base}/sensor-readings/queued -H 'content-type: application/json' \\\n    \
         -d '{{\"sensorId\":\"T-100\",\"timestamp\":\"2026-11-25T08:00:00Z\",\"value\":71.25,\"unit\":\"C\"}}'   # 202; GET its Location\n  \
         curl -s -H \"Authorization: Bearer $TOKEN\" {base}/items/9999      # a SOAP fault, mapped to 404\n\n\
         Telemetry: many readings at once, checked and converted by the data dictionary (°F → °C, psi → bar):\n  \
         curl -s -H \"Authorization: Bearer $TOKEN\" -X POST {base}/telemetry -H 'content-type: application/json' \\\n    \
         -d '[{{\"sensor\":\"T-100\",\"value\":212}},{{\"sensor\":\"P-7\",\"value\":14.5}},{{\"sensor\":\"T-100\",\"value\":\"hot\"}}]'\n\n\
         Operations: dead letters, retry, pause (an operator's token):\n  \
         ADMIN=$(curl -s -u {ADMIN_CLIENT}:{admin_secret} -d grant_type=client_credentials {base}/oauth2/token | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')\n  \
         curl -s -H \"Authorization: Bearer $ADMIN\" '{base}/admin/deliveries?state=dead'\n  \
         curl -s -H \"Authorization: Bearer $ADMIN\" -X POST {base}/admin/backends/erp/pause\n\n\
         {mqtt_text}\n\
         Queued writes are kept in {data} (--data or VENEER_DATA moves it).\n\n",
        erp = erp.url,
        bound = if base == format!("http://{local}") { String::new() } else { format!("(listening on {local})\n") },
        data = data.display(),
        mqtt_text = match mqtt {
            Some(broker) => format!(
                "MQTT: subscribed to factory/+/+/+ on the broker at {broker}; publish a reading:\n  \
                 mosquitto_pub -h {} -p {} -q 1 -t factory/P1/PRESS-01/T-100 -m '{{\"value\": 212}}'\n",
                broker.ip(),
                broker.port()
            ),
            None => format!(
                "MQTT: start a broker on {DEV_BROKER} (apt-get install mosquitto) before veneer to try MQTT ingress.\n"
            ),
        }
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
