//! MQTT ingress end to end: a real Mosquitto broker, the gateway binary subscribed with a
//! persistent session and manual acks, spyne as the ERP (its `RecordMeasurement` refuses a
//! duplicate reading id, as ERPs refuse a duplicate document number). Counts are taken
//! inside the ERP; the crash is a kill -9.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ROUTES: &str = r#"
routes:
  - route: "POST /measurements"
    backend: plant
    operation: RecordMeasurement
    delivery: queued
    duplicate_faults:
      - { code: Client.Duplicate }
"#;

/// Temperatures in °F and pressures in psi, booked in °C and bar.
const SENSORS: &str = r#"
time_zone: UTC
shifts:
  - { name: day, start: "06:00" }
  - { name: night, start: "18:00" }
machines:
  M1: { work_center: WC-1 }
  M2: { work_center: WC-2 }
  M3: { work_center: WC-3 }
  M4: { work_center: WC-4 }
topics:
  - "factory/{plant}/{machine}/{sensor}"
sensors:
  - id: "T-*"
    quantity: temperature
    unit: "[degF]"
    erp_unit: Cel
    erp_unit_label: C
    decimals: 2
    range: [-100, 1000]
    route: "POST /measurements"
    body: &body
      readingId: "{key}"
      sensor: "{sensor}"
      machine: "{machine}"
      value: "{value}"
      unit: "{unit}"
      timestamp: "{timestamp}"
      workCenter: "{meta.work_center}"
      shift: "{shift}"
  - id: "P-*"
    quantity: pressure
    unit: "[psi]"
    erp_unit: bar
    decimals: 4
    route: "POST /measurements"
    body: *body
"#;

/// A config directory for spyne at `spyne` and the broker on `mqtt_port`; `extra` is added
/// to gateway.yaml and `mqtt_extra` to its `mqtt:` section.
async fn config(spyne: &str, mqtt_port: u16, extra: &str, mqtt_extra: &str) -> tempfile::TempDir {
    let wsdl = common::client().get(format!("{spyne}/?wsdl")).send().await.expect("WSDL").text().await.expect("text");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("plant.wsdl"), wsdl).expect("write wsdl");
    let gateway = format!(
        "delivery: {{ data_dir: data, backoff: 50ms, max_backoff: 500ms }}\n\
         mqtt: {{ url: \"mqtt://127.0.0.1:{mqtt_port}\", client_id: veneer-test, keep_alive: 5s{mqtt_extra} }}\n\
         backends:\n  plant:\n    url: \"{spyne}/\"\n    wsdl: plant.wsdl\n    timeout: 10s\n    connect_timeout: 1s\n{extra}"
    );
    std::fs::write(dir.path().join("gateway.yaml"), gateway).expect("write gateway");
    std::fs::create_dir(dir.path().join("routes")).expect("mkdir");
    std::fs::write(dir.path().join("routes/plant.yaml"), ROUTES).expect("write routes");
    std::fs::create_dir(dir.path().join("sensors")).expect("mkdir");
    std::fs::write(dir.path().join("sensors/line.yaml"), SENSORS).expect("write sensors");
    dir
}

fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
}

/// The ERP's own record: every booked measurement by reading id, and refused duplicates.
async fn measurements(spyne: &str) -> (BTreeMap<String, Value>, u64) {
    let Some(v) = common::spyne_stats(spyne, "MeasurementStats").await else { return (BTreeMap::new(), 0) };
    let booked = v["measurements"].as_object().cloned().unwrap_or_default().into_iter().collect();
    (booked, v["duplicates"].as_u64().unwrap_or(0))
}

/// A counter of the gateway's /metrics page (summed over its label sets matching `labels`).
async fn metric(base: &str, name: &str, labels: &str) -> f64 {
    let Ok(res) = common::client().get(format!("{base}/metrics")).send().await else { return 0.0 };
    let text = res.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// The readings of one test run: id → (topic, JSON payload, °F or psi value).
fn readings(n: usize) -> Vec<(String, String, String, f64)> {
    (0..n)
        .map(|i| {
            let machine = format!("M{}", i % 4 + 1);
            let (sensor, value) = if i % 2 == 0 {
                (format!("T-{}", i % 5), 32.0 + (i % 400) as f64 * 0.45)
            } else {
                (format!("P-{}", i % 3), 14.5 + (i % 50) as f64)
            };
            let id = format!("r{i}");
            let topic = format!("factory/P1/{machine}/{sensor}");
            // Timestamps an hour apart from 2026-01-01T00:00Z: day and night shifts both occur.
            let ts = 1_767_225_600_000u64 + (i as u64 % 48) * 3_600_000;
            let payload = json!({ "id": id, "value": value, "timestamp": ts }).to_string();
            (id, topic, payload, value)
        })
        .collect()
}

/// Publishes each reading on its topic (QoS 1), grouped per topic so one client sends each.
fn publish_all(port: u16, list: &[(String, String, String, f64)]) {
    let mut by_topic: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (_, topic, payload, _) in list {
        by_topic.entry(topic).or_default().push(payload.clone());
    }
    for (topic, messages) in by_topic {
        common::mosquitto_pub(port, topic, &messages);
    }
}

fn kill_9(mut gw: common::Veneer) {
    gw.child.kill().expect("kill -9");
    let _ = gw.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_readings_through_an_outage_and_a_kill_9_arrive_once_converted_and_enriched() {
    let broker = common::Mosquitto::start();
    // The ERP's WSDL first, then the ERP goes down for the first part of the run.
    let spyne = common::start_spyne();
    let spyne_base = spyne.base.clone();
    // The breaker opens during the outage; a short open time keeps the test about delivery,
    // not about waiting out the default 30 s (too slow for a loaded CI machine).
    let dir =
        config(&spyne_base, broker.port, "    circuit_breaker: { open_for: 1s }\ntelemetry: { max_age: 3650d }\n", "")
            .await;
    drop(spyne);
    let first = common::Veneer::serve(dir.path(), &[]);
    common::eventually("subscribed", Duration::from_secs(20), || async {
        metric(&first.base, "veneer_mqtt_messages_total", "event=\"connected\"").await >= 1.0
    })
    .await;
    // The subscription follows the connection within a second; a probe proves it is live.
    let probe = json!({ "id": "probe", "value": 50, "timestamp": 1_767_225_600_000u64 }).to_string();
    let port = broker.port;
    common::eventually("the subscription is live", Duration::from_secs(20), || {
        let (base, probe) = (first.base.clone(), probe.clone());
        async move {
            common::mosquitto_pub(port, "factory/P1/M1/T-9", &[probe]);
            metric(&base, "veneer_mqtt_messages_total", "event=\"acked\"").await >= 1.0
        }
    })
    .await;

    let list = readings(10_000);
    let publishing = {
        let list = list.clone();
        std::thread::spawn(move || publish_all(port, &list))
    };
    // Killed mid-stream, with messages received but not all acknowledged.
    common::eventually("a few thousand messages taken", Duration::from_secs(60), || async {
        metric(&first.base, "veneer_mqtt_messages_total", "event=\"acked\"").await >= 2_000.0
    })
    .await;
    kill_9(first);
    publishing.join().expect("published");
    // Restarted on the same data and client id: the broker hands over what was not acked.
    let second = common::Veneer::serve(dir.path(), &[]);
    let spyne = common::start_spyne_on(port_of(&spyne_base));
    // Every reading by id (a count would also take the probe for one of them).
    common::eventually("every reading booked", Duration::from_secs(240), || async {
        let booked = measurements(&spyne.base).await.0;
        list.iter().all(|(id, ..)| booked.contains_key(id))
    })
    .await;
    let (booked, duplicates) = measurements(&spyne.base).await;
    eprintln!("mqtt kill -9: {} booked, {duplicates} redelivered duplicates refused by the ERP", booked.len());
    for (id, _, _, sent) in &list {
        let m = booked.get(id).unwrap_or_else(|| panic!("reading {id} was never booked"));
        let value: f64 = m["Value"].as_str().and_then(|v| v.parse().ok()).expect("value");
        let want = if m["Unit"] == "C" {
            ((sent - 32.0) * 5.0 / 9.0 * 100.0).round() / 100.0
        } else {
            assert_eq!(m["Unit"], "bar");
            (sent * 0.0689475729316836 * 10_000.0).round() / 10_000.0
        };
        assert!((value - want).abs() < 1e-9, "{id}: sent {sent}, booked {value}, expected {want}");
        let machine = m["Machine"].as_str().expect("machine");
        assert_eq!(m["WorkCenter"].as_str(), Some(format!("WC-{}", &machine[1..]).as_str()), "{id} enriched");
        assert!(matches!(m["Shift"].as_str(), Some("day" | "night")), "{id} has a shift: {m}");
    }
    assert_eq!(booked.len(), list.len() + 1, "each reading (and the probe) booked exactly once");
    drop(second);
}

/// Waits until the gateway at `base` has taken `probe` (published on `topic`) into the ERP.
async fn until_booked(port: u16, spyne: &str, topic: &str, id: &str, payload: &str) {
    common::eventually(&format!("{id} on {topic} booked"), Duration::from_secs(30), || async {
        if measurements(spyne).await.0.contains_key(id) {
            return true;
        }
        common::mosquitto_pub(port, topic, &[payload.to_string()]);
        tokio::time::sleep(Duration::from_millis(400)).await;
        measurements(spyne).await.0.contains_key(id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sensor_file_subscribes_while_messages_flow() {
    let broker = common::Mosquitto::start();
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, broker.port, "", "").await;
    let gw = common::Veneer::serve(dir.path(), &[]);
    let port = broker.port;
    until_booked(port, &spyne.base, "factory/P1/M1/T-1", "start", r#"{"id":"start","value":70}"#).await;
    // Readings keep flowing on the old topic the whole time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flow = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<String> = (n..n + 20).map(|i| format!(r#"{{"id":"flow{i}","value":70}}"#)).collect();
                common::mosquitto_pub(port, "factory/P1/M2/T-2", &batch);
                sent.extend((n..n + 20).map(|i| format!("flow{i}")));
                n += 20;
                std::thread::sleep(Duration::from_millis(50));
            }
            sent
        })
    };
    // Not in the dictionary yet: nobody listens on the new topic.
    let vibration = r#"
topics:
  - "plant2/{machine}/vibration/{sensor}"
sensors:
  - id: "V-*"
    quantity: vibration
    unit: mm/s
    range: [0, 100]
    route: "POST /measurements"
    body: { readingId: "{key}", sensor: "{sensor}", machine: "{machine}", value: "{value}", unit: "{unit}", timestamp: "{timestamp}" }
"#;
    std::fs::write(dir.path().join("sensors/vibration.yaml"), vibration).expect("write the new file");
    until_booked(port, &spyne.base, "plant2/M7/vibration/V-1", "vib1", r#"{"id":"vib1","value":3.5}"#).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = flow.join().expect("flow");
    common::eventually("every flowing reading booked", Duration::from_secs(120), || async {
        let booked = measurements(&spyne.base).await.0;
        sent.iter().all(|id| booked.contains_key(id))
    })
    .await;
    let booked = measurements(&spyne.base).await.0;
    assert_eq!(booked["vib1"]["Machine"], "M7", "the topic named the machine");
    assert_eq!(booked["vib1"]["Unit"], "mm/s");
    // Without an id, two machines' readings of one sensor in one second (and a bare
    // number) are keyed by plant, machine, sensor and time: each is booked.
    let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    for (machine, value) in [("M7", 1.5), ("M8", 2.5)] {
        let payload = json!({ "value": value, "timestamp": at }).to_string();
        common::mosquitto_pub(port, &format!("plant2/{machine}/vibration/V-2"), &[payload]);
    }
    let keys = [format!("machine=M7/V-2@{at}"), format!("machine=M8/V-2@{at}")];
    common::eventually("both machines' readings booked", Duration::from_secs(30), || async {
        let booked = measurements(&spyne.base).await.0;
        keys.iter().all(|k| booked.contains_key(k))
    })
    .await;
    let (booked, duplicates) = measurements(&spyne.base).await;
    let machine = |k: &String| booked[k]["Machine"].as_str().map(str::to_string);
    assert_eq!(keys.each_ref().map(machine), [Some("M7".into()), Some("M8".into())]);
    assert_eq!(duplicates, 0, "neither was refused as the other's duplicate");
    assert!(sent.len() >= 20, "readings flowed during the reload ({} sent)", sent.len());
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_letters_with_reasons_and_the_subscription_goes_on() {
    let broker = common::Mosquitto::start();
    let spyne = common::start_spyne();
    let dir =
        config(&spyne.base, broker.port, "server: { max_body: 512KiB }\n", ", error_topic: veneer/rejected").await;
    let gw = common::Veneer::serve(dir.path(), &[]);
    let port = broker.port;
    until_booked(port, &spyne.base, "factory/P1/M1/T-1", "first", r#"{"id":"first","value":70}"#).await;
    // Everything rejected is also published on the error topic: listen before sending, and
    // know the listener is subscribed once it hears a probe.
    let mut listener = std::process::Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "veneer/rejected", "-W", "120"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs");
    let (heard_tx, heard) = std::sync::mpsc::channel::<String>();
    let out = listener.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
            let _ = heard_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        common::mosquitto_pub(port, "veneer/rejected", &["probe".to_string()]);
        if heard.recv_timeout(Duration::from_millis(200)).is_ok_and(|l| l == "probe") {
            break;
        }
        assert!(Instant::now() < deadline, "the error-topic listener never subscribed");
    }
    let next_year = (now_ms() + 365 * 86_400_000).to_string();
    let bad = [
        "not json at all".to_string(),
        r#"{"id":"b1","value":"hot"}"#.to_string(),
        "NaN".to_string(),
        format!(r#"{{"id":"b2","value":70,"timestamp":{next_year}}}"#),
    ];
    common::mosquitto_pub(port, "factory/P1/M1/T-1", &bad);
    // 1 MB, over server.max_body.
    let big = dir.path().join("big.json");
    std::fs::write(&big, format!(r#"{{"id":"b3","value":70,"pad":"{}"}}"#, "x".repeat(1024 * 1024))).expect("write");
    let status = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", "factory/P1/M1/T-1", "-f"])
        .arg(&big)
        .status()
        .expect("mosquitto_pub runs");
    assert!(status.success());
    until_booked(port, &spyne.base, "factory/P1/M1/T-1", "after", r#"{"id":"after","value":70}"#).await;
    let mut reasons = Vec::new();
    while reasons.len() < 5 {
        let line = heard.recv_timeout(Duration::from_secs(20)).expect("a report on the error topic");
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            reasons.push(v);
        }
    }
    let _ = listener.kill();
    let _ = listener.wait();
    let all = serde_json::to_string(&reasons).expect("json");
    for expected in ["not JSON", "value must be a number", "check the device clock", "server.max_body"] {
        assert!(all.contains(expected), "a reason says {expected:?}: {all}");
    }
    assert_eq!(metric(&gw.base, "veneer_mqtt_messages_total", "event=\"rejected\"").await, 5.0);
    let booked = measurements(&spyne.base).await.0;
    assert!(!booked.keys().any(|k| k.starts_with('b')), "no bad reading booked");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_split_a_shared_subscription_and_book_each_reading_once() {
    let broker = common::Mosquitto::start();
    let spyne = common::start_spyne();
    let port = broker.port;
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let dir = config(&spyne.base, port, "telemetry: { max_age: 3650d }\n", ", share: veneer").await;
        let yaml = std::fs::read_to_string(dir.path().join("gateway.yaml")).expect("read");
        std::fs::write(
            dir.path().join("gateway.yaml"),
            yaml.replace("client_id: veneer-test", &format!("client_id: veneer-{name}")),
        )
        .expect("write");
        let gw = common::Veneer::serve(dir.path(), &[]);
        replicas.push((dir, gw));
    }
    // Both subscribed: each has taken a probe of its own (the broker alternates between them).
    let bases: Vec<String> = replicas.iter().map(|(_, gw)| gw.base.clone()).collect();
    let mut probes = 0;
    common::eventually("both replicas take messages", Duration::from_secs(30), || {
        probes += 1;
        let (bases, probe) =
            (bases.clone(), format!(r#"{{"id":"probe{probes}","value":50,"timestamp":1767225600000}}"#));
        async move {
            common::mosquitto_pub(port, "factory/P1/M1/T-1", &[probe]);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut all = true;
            for b in &bases {
                all &= metric(b, "veneer_mqtt_messages_total", "event=\"acked\"").await >= 1.0;
            }
            all
        }
    })
    .await;
    let list = readings(2_000);
    publish_all(port, &list);
    common::eventually("every reading booked", Duration::from_secs(120), || async {
        let booked = measurements(&spyne.base).await.0;
        list.iter().all(|(id, ..)| booked.contains_key(id))
    })
    .await;
    let (booked, duplicates) = measurements(&spyne.base).await;
    assert_eq!(duplicates, 0, "no reading reached both replicas");
    let mut taken = Vec::new();
    for b in &bases {
        taken.push(metric(b, "veneer_readings_total", "outcome=\"queued\"").await);
    }
    assert!(taken.iter().all(|n| *n >= 100.0), "both replicas took a share: {taken:?}");
    assert_eq!(taken.iter().sum::<f64>() as usize, booked.len(), "each booked reading was taken by one replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_the_brokers_ca_and_a_client_certificate() {
    let pki = tempfile::tempdir().expect("tempdir");
    common::pki(pki.path(), "edge-ca", "server");
    common::pki(pki.path(), "edge-ca", "client-veneer");
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let p = |f: &str| pki.path().join(f).display().to_string();
    // Plain for the publisher, TLS with required client certificates for the gateway.
    let broker = common::Mosquitto::start_with(
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port(),
        &format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            p("edge-ca.pem"),
            p("server.pem"),
            p("server.key")
        ),
    );
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, broker.port, "", "").await;
    let yaml = std::fs::read_to_string(dir.path().join("gateway.yaml")).expect("read");
    let tls = format!(
        "url: \"mqtts://127.0.0.1:{tls_port}\", tls: {{ ca_file: \"{}\", client_cert_file: \"{}\", client_key_file: \"{}\" }}",
        p("edge-ca.pem"),
        p("client-veneer.pem"),
        p("client-veneer.key")
    );
    let yaml = yaml.replace(&format!("url: \"mqtt://127.0.0.1:{}\"", broker.port), &tls);
    std::fs::write(dir.path().join("gateway.yaml"), &yaml).expect("write");
    let gw = common::Veneer::serve(dir.path(), &[]);
    until_booked(broker.port, &spyne.base, "factory/P1/M1/T-1", "over-tls", r#"{"id":"over-tls","value":212}"#).await;
    assert_eq!(measurements(&spyne.base).await.0["over-tls"]["Value"], "100");
    drop(gw);

    // Without its client certificate the broker refuses the gateway; it keeps retrying.
    let without = yaml.replace(
        &format!(", client_cert_file: \"{}\", client_key_file: \"{}\"", p("client-veneer.pem"), p("client-veneer.key")),
        "",
    );
    assert_ne!(without, yaml);
    std::fs::write(dir.path().join("gateway.yaml"), without.replace("veneer-test", "veneer-nocert")).expect("write");
    let refused = common::Veneer::serve(dir.path(), &[]);
    common::eventually("connection errors counted", Duration::from_secs(20), || async {
        metric(&refused.base, "veneer_mqtt_messages_total", "event=\"connection_error\"").await >= 1.0
    })
    .await;
    assert_eq!(metric(&refused.base, "veneer_mqtt_connected", "").await, 0.0);
}

#[test]
fn mqtt_settings_are_checked_with_their_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("wsdl")).expect("mkdir");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/wsdl/sample-erp.wsdl"),
        dir.path().join("wsdl/sample-erp.wsdl"),
    )
    .expect("copy");
    // Line 1 is mqtt:; every problem of the section is reported at once.
    let gateway = "mqtt:\n  url: \"mqtts://broker.local\"\n  client_id: \"\"\n  password_env: VENEER_TEST_UNSET_PASSWORD\n  share: \"a/b\"\n  error_topic: \"errors/#\"\n  keep_alive: 0s\nbackends:\n  erp:\n    url: \"http://127.0.0.1:9/erp\"\n    wsdl: wsdl/sample-erp.wsdl\n";
    std::fs::write(dir.path().join("gateway.yaml"), gateway).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["check", "--config"])
        .arg(dir.path())
        .output()
        .expect("veneer check runs");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    for (line, expected) in [
        (2, "mqtts needs tls.ca_file"),
        (3, "client_id must be 1 to 128 characters"),
        (4, "VENEER_TEST_UNSET_PASSWORD"),
        (5, "must be a plain group name"),
        (6, "without wildcards"),
        (7, "keep_alive must be at least 1s"),
    ] {
        assert!(
            text.lines().any(|l| l.contains(&format!("gateway.yaml:{line}: mqtt: ")) && l.contains(expected)),
            "line {line}: {expected}\n{text}"
        );
    }
}

/// A message larger than any reading (17 MiB, over rumqttc's old 16 MiB packet limit) is
/// read, kept as a dead letter cut to `delivery.max_dead_input` with its size, and
/// acknowledged: the connection stays up and the next reading is booked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_17_mib_message_is_a_dead_letter_and_the_subscription_goes_on() {
    let broker = common::Mosquitto::start();
    let spyne = common::start_spyne();
    let dir = config(&spyne.base, broker.port, "", "").await;
    let gw = common::Veneer::serve(dir.path(), &[]);
    let port = broker.port;
    until_booked(port, &spyne.base, "factory/P1/M1/T-1", "before", r#"{"id":"before","value":70}"#).await;
    let huge = dir.path().join("huge.json");
    let size = 17 * 1024 * 1024;
    std::fs::write(&huge, format!(r#"{{"id":"h1","value":70,"pad":"{}"}}"#, "x".repeat(size))).expect("write");
    let status = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", "factory/P1/M1/T-1", "-f"])
        .arg(&huge)
        .status()
        .expect("mosquitto_pub runs");
    assert!(status.success());
    common::eventually("the huge message rejected", Duration::from_secs(30), || async {
        metric(&gw.base, "veneer_mqtt_messages_total", "event=\"rejected\"").await >= 1.0
    })
    .await;
    until_booked(port, &spyne.base, "factory/P1/M1/T-1", "after", r#"{"id":"after","value":70}"#).await;
    assert_eq!(metric(&gw.base, "veneer_mqtt_messages_total", "event=\"connected\"").await, 1.0, "never reconnected");
    kill_9(gw);
    // The dead letter, read from the store itself: cut, with its real size.
    let store = veneer::delivery::store::Store::open(&dir.path().join("data")).expect("the store opens");
    let mut dead = Vec::new();
    store
        .each(veneer::delivery::store::Table::Items, |_, bytes| {
            dead.push(serde_json::from_slice::<Value>(bytes).expect("an item"));
            true
        })
        .expect("read");
    let letter = dead.iter().find(|i| i["state"] == "dead").expect("a dead letter");
    assert_eq!(letter["input"]["bytes"].as_u64(), Some(size as u64 + 31), "{}", letter["input"]["bytes"]);
    assert_eq!(letter["input"]["truncated"], true);
    assert_eq!(letter["input"]["payload"].as_str().map(str::len), Some(64 * 1024));
}
