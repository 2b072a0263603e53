//! Translation cost: encode + decode of the `GET /items/{no}` message (a decimal, a boolean,
//! a dateTime and a 3-element array), and decoding a ~1 MB response of 5,000 rows; each decode
//! both into a `Value` tree and straight into JSON text (what the request path runs).
//! Beside each decode, quick-xml's reader alone over the same document (every event read,
//! nothing done with it): the floor any decoder built on it stands on.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use veneer::schema::wsdl::{self, ReadOptions};
use veneer::translate::decode;
use veneer::translate::encode;

// The allocator the gateway ships with (src/main.rs), so the figures are the request path's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/messages.rs"]
mod messages;
use messages::{events_only, item_response};

const WSDL: &str = include_str!("../config/wsdl/sample-erp.wsdl");

fn benches(c: &mut Criterion) {
    let model = wsdl::read(WSDL.as_bytes(), ReadOptions::default()).expect("sample WSDL");
    let op = model.operation("GetItem").expect("GetItem");
    let input = json!({"itemNo": "1000"});
    let small = item_response(3);
    c.bench_function("encode+decode GetItem (3 locations)", |b| {
        b.iter(|| {
            let env = encode::envelope(op, &model.schema, &input, None).expect("encode");
            let out = decode::response(&op.output, &model.schema, small.as_bytes()).expect("decode");
            (env, out)
        })
    });
    c.bench_function("encode GetItem", |b| {
        b.iter(|| encode::envelope(op, &model.schema, &input, None).expect("encode"))
    });
    c.bench_function("decode GetItem (3 locations)", |b| {
        b.iter(|| decode::response(&op.output, &model.schema, small.as_bytes()).expect("decode"))
    });
    // What the request path runs: straight to JSON text, no tree.
    let json = |xml: &str| decode::response_json(&op.output, &op.faults, &model.schema, xml.as_bytes(), &[]);
    c.bench_function("encode+decode GetItem to JSON text (3 locations)", |b| {
        b.iter(|| {
            let env = encode::envelope(op, &model.schema, &input, None).expect("encode");
            (env, json(&small).expect("decode"))
        })
    });
    c.bench_function("decode GetItem to JSON text (3 locations)", |b| b.iter(|| json(&small).expect("decode")));
    c.bench_function("quick-xml events alone, GetItem (3 locations)", |b| {
        b.iter(|| events_only(std::hint::black_box(&small)))
    });
    let large = item_response(5_000);
    let mut g = c.benchmark_group("large");
    g.throughput(Throughput::Bytes(large.len() as u64));
    g.sample_size(20);
    g.bench_function(format!("decode {} KiB, 5000 rows", large.len() / 1024), |b| {
        b.iter(|| decode::response(&op.output, &model.schema, large.as_bytes()).expect("decode"))
    });
    g.bench_function(format!("decode {} KiB, 5000 rows, to JSON text", large.len() / 1024), |b| {
        b.iter(|| json(&large).expect("decode"))
    });
    g.bench_function(format!("quick-xml events alone, {} KiB, 5000 rows", large.len() / 1024), |b| {
        b.iter(|| events_only(std::hint::black_box(&large)))
    });
    g.finish();
}

criterion_group!(translate, benches);
criterion_main!(translate);
