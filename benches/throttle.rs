//! Limiter cost per request: one in-process GCRA check (hot key), and the same across
//! 10,000 distinct keys.

use criterion::{Criterion, criterion_group, criterion_main};
use veneer::throttle::local::LocalLimiter;
use veneer::throttle::rate::Rate;

fn benches(c: &mut Criterion) {
    // A rate so high the bucket never empties: the measured path is the admit path.
    let limiter = LocalLimiter::new(Rate::parse("1000000000/s", Some(1_000_000)).expect("rate"));
    c.bench_function("gcra check, one client", |b| b.iter(|| limiter.check("line-3-edge")));
    let keys: Vec<String> = (0..10_000).map(|i| format!("client-{i}")).collect();
    let mut i = 0;
    c.bench_function("gcra check, 10k clients", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            limiter.check(&keys[i])
        })
    });
}

criterion_group!(throttle, benches);
criterion_main!(throttle);
