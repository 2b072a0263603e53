// The integration guide's MQTT-to-HTTP bridge, the baseline of benches/telemetry.sh:
// subscribe QoS 1 to factory/+/+/+, and for each message convert °F to °C and POST
// {sensorId, timestamp, value, unit} to Veneer's per-reading queued route. Exits once it
// has POSTed COUNT messages, printing one JSON line: ok (202s), failed, when it finished
// (epoch ms), its CPU time since subscribing, its peak RSS and the POSTs' p50/p99.
//
// Usage: node bridge.mjs   Env: BROKER (mqtt://127.0.0.1:1883) URL (Veneer's route)
//        COUNT (messages to wait for) SOCKETS (HTTP keep-alive sockets to Veneer, 64)
// Prints "subscribed" once the subscription is granted.
import http from 'node:http';
import mqtt from 'mqtt';
import axios from 'axios';

const BROKER = process.env.BROKER ?? 'mqtt://127.0.0.1:1883';
const URL = process.env.URL ?? 'http://127.0.0.1:8080/sensor-readings/queued';
const COUNT = Number(process.env.COUNT ?? 50000);
// The snippet uses axios' defaults; a bounded keep-alive pool keeps 50 000 POSTs from
// opening 50 000 sockets at once (the fair, tuned version of it).
const api = axios.create({
  httpAgent: new http.Agent({ keepAlive: true, maxSockets: Number(process.env.SOCKETS ?? 64) }),
  timeout: 30000,
  validateStatus: () => true,
});

let ok = 0;
let failed = 0;
let cpuStart = null;
const latencies = [];
const errors = new Map();

function done() {
  if (ok + failed < COUNT) return;
  const finished = Date.now();
  const cpu = process.cpuUsage(cpuStart);
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] : 0;
  console.log(JSON.stringify({
    ok, failed, finished_ms: finished,
    cpu_us: cpu.user + cpu.system,
    max_rss_kb: process.resourceUsage().maxRSS,
    p50_ms: pct(0.5), p99_ms: pct(0.99),
    errors: Object.fromEntries(errors),
  }));
  client.end(true, () => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
}

const client = mqtt.connect(BROKER, { clientId: `node-bridge-${process.pid}`, clean: true });
client.on('error', (e) => { console.error(`mqtt: ${e.message}`); process.exit(1); });
client.on('connect', () => {
  client.subscribe('factory/+/+/+', { qos: 1 }, (err) => {
    if (err) { console.error(`subscribe: ${err.message}`); process.exit(1); }
    cpuStart = process.cpuUsage();
    console.log('subscribed');
  });
});

client.on('message', async (topic, payload) => {
  const started = performance.now();
  try {
    const m = JSON.parse(payload.toString());
    const [, , , sensorId] = topic.split('/');
    const res = await api.post(URL, {
      sensorId: m.sensor ?? sensorId,
      timestamp: new Date(m.timestamp).toISOString(),
      value: Math.round(((m.value - 32) * 5) / 9 * 100) / 100,
      unit: 'C',
    });
    if (res.status === 202) {
      ok += 1;
    } else {
      failed += 1;
      const k = `HTTP ${res.status}`;
      errors.set(k, (errors.get(k) ?? 0) + 1);
    }
  } catch (e) {
    failed += 1;
    const k = e.code ?? e.message;
    errors.set(k, (errors.get(k) ?? 0) + 1);
  }
  latencies.push(performance.now() - started);
  done();
});
