//! MQTT ingress from the edge broker (rumqttc, QoS 1, persistent session, manual acks).
//!
//! A message is acknowledged only after every reading in it is durably queued (or the
//! message is stored as a dead letter with its reasons), and acknowledgements go out in
//! arrival order, as the protocol and the crate require. A crash before the ack makes the
//! broker send the message again (`dup`); the readings' stable keys let the ERP refuse the
//! second booking. Subscriptions follow the dictionary: a reload that adds a sensor file
//! with new topics subscribes to them without reconnecting.

use std::sync::Arc;
use std::time::Duration;

/// What MQTT ingress reads from the serving config snapshot for each message, current
/// across reloads; the snapshot implements it (`config::Gateway`, behind its `ArcSwap`).
pub trait Current: Send + Sync + 'static {
    /// The data dictionary (topics, sensors, `telemetry:` settings).
    fn dictionary(&self) -> std::sync::Arc<crate::ingest::dictionary::Dictionary>;
    /// `server.max_body`: a larger message is refused as a whole.
    fn max_body(&self) -> usize;
    /// `delivery.max_dead_input`: how much of a refused message its dead letter keeps.
    fn max_dead_input(&self) -> u64;
}

/// `mqtt:` from gateway.yaml, compiled.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS (`mqtts://`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Stable client id (the broker keeps the session under it).
    pub client_id: String,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Shared-subscription group (`$share/GROUP/…`).
    pub share: Option<String>,
    /// Rejected messages are published here too.
    pub error_topic: Option<String>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
}

impl MqttSettings {
    /// The filter subscribed for a topic template's filter.
    pub fn subscription(&self, filter: &str) -> String {
        match &self.share {
            Some(group) => format!("$share/{group}/{filter}"),
            None => filter.to_string(),
        }
    }
}

#[cfg(feature = "mqtt")]
pub use run::start;

#[cfg(feature = "mqtt")]
mod run {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use futures_util::StreamExt;
    use futures_util::stream::FuturesOrdered;
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
    use serde_json::{Value, json};
    use tokio::sync::{mpsc, watch};

    use super::{Current, MqttSettings};
    use crate::delivery::{Item, Services, State};
    use crate::ingest::dictionary::Dictionary;
    use crate::ingest::intake::{Intake, Outcome, Submitter};
    use crate::ingest::reading::{self, Context, Rejected};
    use crate::telemetry;

    /// Largest packet the client reads. A larger one breaks the connection before anyone
    /// can see it, and the broker resends it after every reconnect: so the limit is far above
    /// any reading, big messages are read and dead-lettered (cut) by the gateway's own
    /// `max_body`, and the broker's `message_size_limit` should be set below this.
    const MAX_PACKET: usize = 32 * 1024 * 1024;
    /// A connection that stayed up this long resets the reconnect backoff; one dropped
    /// sooner (a message the client cannot read, a broker refusing it) keeps doubling it.
    const STABLE: Duration = Duration::from_secs(30);
    /// First and longest wait between reconnects.
    const FIRST_BACKOFF: Duration = Duration::from_millis(500);
    const MAX_BACKOFF: Duration = Duration::from_secs(30);
    /// Messages being processed at once (acks still go out in arrival order).
    const IN_FLIGHT: usize = 512;
    /// QoS 0 messages waiting at most; more are dropped and counted.
    const MAX_QOS0_BACKLOG: usize = 10_000;

    /// What every message's processing shares: the snapshot's view, the settings, where
    /// readings go, the broker connection and the stop signal.
    #[derive(Clone)]
    struct Ingress {
        gateway: Arc<dyn Current>,
        settings: MqttSettings,
        services: Services,
        intake: Arc<Intake>,
        client: AsyncClient,
        stop: watch::Receiver<bool>,
    }

    /// Connects to the broker and takes messages until `stop` turns true; returns the task.
    pub fn start(
        settings: MqttSettings,
        gateway: Arc<dyn Current>,
        services: Services,
        intake: Arc<Intake>,
        stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let mut opts = MqttOptions::new(settings.client_id.clone(), settings.host.clone(), settings.port);
        opts.set_keep_alive(settings.keep_alive)
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_inflight(100);
        if let Some((user, password)) = &settings.credentials {
            opts.set_credentials(user.clone(), password.clone());
        }
        if let Some(tls) = &settings.tls {
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls.clone())));
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        // Unbounded on purpose: the poller must never wait for the processor, or acks (which
        // the event loop sends) would wait for the poller: a deadlock. The broker bounds it:
        // it sends at most its inflight window of unacknowledged messages.
        let (tx, rx) = mpsc::unbounded_channel::<(Publish, Instant)>();
        let (connected_tx, connected_rx) = watch::channel(0u64);
        tracing::info!(broker = %format!("{}:{}", settings.host, settings.port), client_id = %settings.client_id, "MQTT ingress starting");

        // The event loop: reads packets, reconnects with backoff (rumqttc reconnects on the
        // next poll after an error).
        let mut poll_stop = stop.clone();
        let backlog = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = backlog.clone();
        let poller = tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            let mut connects = 0u64;
            let mut up_since: Option<Instant> = None;
            loop {
                // Not stopped by the signal: the processor acknowledges what it stored and
                // disconnects first, and those packets go out through this loop.
                let event = eventloop.poll().await;
                if matches!(event, Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) {
                    break;
                }
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        telemetry::mqtt("received");
                        // QoS 0 has no inflight window to bound the backlog: past a cap it is
                        // dropped, as at-most-once allows.
                        let waiting = counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if p.qos == QoS::AtMostOnce && waiting >= MAX_QOS0_BACKLOG {
                            counted.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                            telemetry::mqtt("dropped_qos0");
                            continue;
                        }
                        if tx.send((p, Instant::now())).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        up_since = Some(Instant::now());
                        connects += 1;
                        telemetry::mqtt_connected(true);
                        telemetry::mqtt("connected");
                        tracing::info!(session_present = ack.session_present, "MQTT connected");
                        let _ = connected_tx.send(connects);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        telemetry::mqtt_connected(false);
                        telemetry::mqtt("connection_error");
                        if up_since.take().is_some_and(|t| t.elapsed() >= STABLE) {
                            backoff = FIRST_BACKOFF;
                        }
                        let text = e.to_string();
                        if text.contains("ayload size limit") {
                            tracing::error!(error = %text, max_bytes = MAX_PACKET, retry_in = ?backoff, "an MQTT message is larger than the gateway reads; the broker resends it after every reconnect: set the broker's message_size_limit below this");
                        } else {
                            tracing::warn!(error = %text, retry_in = ?backoff, "MQTT connection failed");
                        }
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {},
                            () = stopped(&mut poll_stop) => break,
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        });
        tokio::spawn(subscriptions(gateway.clone(), settings.clone(), client.clone(), connected_rx, stop.clone()));
        let ingress = Ingress { gateway, settings, services, intake, client, stop };
        let processor = tokio::spawn(process(ingress, rx, backlog));
        Some(tokio::spawn(async move {
            let _ = processor.await;
            // The acks and the disconnect leave through the poller; it gets a moment for them.
            let abort = poller.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), poller).await.is_err() {
                abort.abort();
            }
        }))
    }

    /// Resolves once the gateway is stopping (the watch guard is dropped inside, so the
    /// future stays `Send`).
    async fn stopped(rx: &mut watch::Receiver<bool>) {
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Keeps the subscriptions equal to the dictionary's topics: on every (re)connect, and
    /// after a reload adds or removes topics.
    async fn subscriptions(
        gateway: Arc<dyn Current>,
        settings: MqttSettings,
        client: AsyncClient,
        mut connected: watch::Receiver<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut subscribed: BTreeSet<String> = BTreeSet::new();
        loop {
            tokio::select! {
                changed = connected.changed() => {
                    if changed.is_err() { return; }
                    // A new connection: subscribe again (the broker may have lost the session).
                    subscribed.clear();
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = stopped(&mut stop) => return,
            }
            if *connected.borrow() == 0 {
                continue;
            }
            let wanted: BTreeSet<String> =
                gateway.dictionary().topics.iter().map(|t| settings.subscription(&t.filter())).collect();
            for filter in wanted.difference(&subscribed).cloned().collect::<Vec<_>>() {
                if client.subscribe(filter.clone(), QoS::AtLeastOnce).await.is_ok() {
                    tracing::info!(%filter, "MQTT subscribed");
                    subscribed.insert(filter);
                }
            }
            for filter in subscribed.difference(&wanted).cloned().collect::<Vec<_>>() {
                if client.unsubscribe(filter.clone()).await.is_ok() {
                    tracing::info!(%filter, "MQTT unsubscribed");
                    subscribed.remove(&filter);
                }
            }
        }
    }

    /// Processes messages concurrently and acknowledges them in arrival order. On stop it
    /// takes no new message, acknowledges the ones already stored (in order, up to the first
    /// that is not) and disconnects; the rest come back from the broker.
    #[allow(clippy::too_many_arguments)]
    async fn process(
        ingress: Ingress,
        mut rx: mpsc::UnboundedReceiver<(Publish, Instant)>,
        backlog: Arc<std::sync::atomic::AtomicUsize>,
    ) {
        let Ingress { settings, client, stop, .. } = ingress.clone();
        let who = Submitter { client: format!("mqtt:{}", settings.client_id), request_id: String::new() };
        let mut inflight = FuturesOrdered::new();
        let mut stopping = stop.clone();
        let ack = |publish: Publish, arrived: Instant| {
            let client = client.clone();
            async move {
                if client.ack(&publish).await.is_ok() {
                    telemetry::mqtt("acked");
                    telemetry::mqtt_ack_lag(arrived.elapsed().as_secs_f64());
                }
            }
        };
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut stopping) => break,
                Some(done) = inflight.next(), if !inflight.is_empty() => {
                    let Some((publish, arrived)): Option<(Publish, Instant)> = done else { continue };
                    ack(publish, arrived).await;
                }
                msg = rx.recv(), if inflight.len() < IN_FLIGHT => {
                    let Some((publish, arrived)) = msg else { return };
                    backlog.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    // Retained copies (sent on every subscribe) were taken when first
                    // published; the gateway's own error reports are not readings.
                    let skip = publish.retain || settings.error_topic.as_deref() == Some(publish.topic.as_str());
                    if skip {
                        telemetry::mqtt("skipped");
                        inflight.push_back(Box::pin(std::future::ready(Some((publish, arrived))))
                            as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>);
                        continue;
                    }
                    let job = one(ingress.clone(), who.clone(), publish);
                    inflight.push_back(Box::pin(async move { job.await.map(|p| (p, arrived)) }));
                }
            }
        }
        // Stopping: in-flight messages finish storing or give up (they watch the signal too).
        while let Some(done) = inflight.next().await {
            match done {
                Some((publish, arrived)) => ack(publish, arrived).await,
                None => break,
            }
        }
        let _ = client.disconnect().await;
    }

    /// One message, until it is stored (readings queued, or a dead letter) or the gateway
    /// stops; `None` when stopping first (then it is not acknowledged).
    async fn one(ingress: Ingress, who: Submitter, publish: Publish) -> Option<Publish> {
        let Ingress { gateway, settings, services, intake, client, stop } = ingress;
        let (ctx, mut pending, mut rejected) = prepare(&gateway.dictionary(), gateway.max_body(), &publish);
        let mut backoff = Duration::from_millis(200);
        loop {
            if !pending.is_empty() {
                let dictionary = gateway.dictionary();
                let results =
                    crate::ingest::take(&intake, &dictionary, Some(&services), &who, &ctx, pending.clone()).await;
                crate::ingest::count("mqtt", &results);
                let mut retry = Vec::new();
                for (pointer, result) in results {
                    match result {
                        Ok(Outcome::Queued(_) | Outcome::Delivered(_)) => {}
                        Ok(Outcome::Failed { retryable: true, .. }) => retry.push(pointer),
                        Ok(Outcome::Failed { reason, .. }) => rejected.push(Rejected::at(&pointer, reason)),
                        Err(r) => rejected.push(r),
                    }
                }
                // Only the readings that could not be stored are tried again.
                pending.retain(|(p, _)| retry.contains(p));
            }
            if pending.is_empty() {
                if rejected.is_empty() {
                    return Some(publish);
                }
                let max_input = gateway.max_dead_input();
                if bury(&services, &settings, &who, &publish, &rejected, max_input).await {
                    publish_error(&client, &settings, &publish, &rejected);
                    return Some(publish);
                }
            }
            telemetry::mqtt("retrying");
            let mut stop = stop.clone();
            tokio::select! {
                () = tokio::time::sleep(backoff) => {},
                () = stopped(&mut stop) => return None,
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// The message's topic levels, its readings, and what is wrong with it as a whole.
    fn prepare(dict: &Dictionary, max_body: usize, publish: &Publish) -> (Context, Vec<reading::Item>, Vec<Rejected>) {
        let topic = &publish.topic;
        let mut ctx = Context { topic: Vec::new(), now: chrono::Utc::now() };
        let Some(captured) = dict.topics.iter().find_map(|t| t.capture(topic)) else {
            return (
                ctx,
                Vec::new(),
                vec![Rejected::at("", format!("topic {topic} fits none of the dictionary's topics"))],
            );
        };
        ctx.topic = captured;
        let (size, max) = (publish.payload.len(), max_body);
        if size > max {
            return (
                ctx,
                Vec::new(),
                vec![Rejected::at("", format!("{size} bytes is more than server.max_body ({max})"))],
            );
        }
        match reading::split(&publish.payload, false) {
            Ok(list) if list.len() > dict.settings.max_readings => {
                let why = format!(
                    "{} readings in one message; at most {} (telemetry.max_readings)",
                    list.len(),
                    dict.settings.max_readings
                );
                (ctx, Vec::new(), vec![Rejected::at("", why)])
            }
            Ok(list) if list.is_empty() => (ctx, Vec::new(), vec![Rejected::at("", "no readings")]),
            Ok(list) => (ctx, list, Vec::new()),
            Err(r) => (ctx, Vec::new(), vec![r]),
        }
    }

    /// Keeps a rejected message as a dead letter with its reasons; false when the store
    /// could not take it (the message is then not acknowledged, and tried again).
    async fn bury(
        services: &Services,
        settings: &MqttSettings,
        who: &Submitter,
        publish: &Publish,
        rejected: &[Rejected],
        max_input: u64,
    ) -> bool {
        telemetry::mqtt("rejected");
        let reasons: Vec<Value> = rejected.iter().map(|r| json!({"pointer": r.pointer, "reason": r.reason})).collect();
        let listed = Value::Array(reasons.clone());
        tracing::warn!(topic = %publish.topic, reasons = %listed, "MQTT message rejected");
        let Some(queue) = &services.queue else {
            // No store: nothing to keep it in; the log line above is the record.
            return true;
        };
        // The message, so a refused reading can be recovered from its dead letter; one
        // larger than `delivery.max_dead_input` is cut there (its size is kept).
        let keep = usize::try_from(max_input).unwrap_or(usize::MAX);
        let shown = &publish.payload[..publish.payload.len().min(keep)];
        let input = json!({
            "topic": publish.topic,
            "payload": String::from_utf8_lossy(shown),
            "bytes": publish.payload.len(),
            "truncated": shown.len() < publish.payload.len(),
            "client_id": settings.client_id,
        });
        let item = Item {
            state: State::Dead,
            last_error: Some(json!({ "title": "Invalid readings", "readings": reasons })),
            ..Item::new(format!("MQTT {}", publish.topic), "mqtt".into(), who.client.clone(), input)
        };
        queue.bury(item).await.is_ok()
    }

    /// Publishes the reasons to `mqtt.error_topic`, when configured (best effort: the
    /// dead letter is the record).
    fn publish_error(client: &AsyncClient, settings: &MqttSettings, publish: &Publish, rejected: &[Rejected]) {
        let Some(topic) = &settings.error_topic else { return };
        let body = json!({
            "topic": publish.topic,
            "rejected": rejected.iter().map(|r| json!({"pointer": r.pointer, "reason": r.reason})).collect::<Vec<_>>(),
        });
        let _ = client.try_publish(topic.clone(), QoS::AtLeastOnce, false, body.to_string());
    }
}
