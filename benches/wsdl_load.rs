//! WSDL load time (read + schema compile into the operation model), the cost paid once per
//! config load or reload: the NetSuite 2023.2 set (1 WSDL + 46 imported XSDs, 2.7 MB) and the
//! Salesforce partner WSDL (576 KB), against the small calculator WSDL as a baseline.

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use veneer::schema::wsdl::{self, ReadOptions};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsdl").join(rel)
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("wsdl load");
    group.sample_size(20);
    for (name, rel, ops) in [
        ("calculator (8.8 KB)", "calculator.wsdl", 4),
        ("salesforce partner v58 (576 KB)", "salesforce-partner-v58.wsdl", 63),
        ("netsuite 2023.2 (47 files, 2.7 MB)", "netsuite-2023_2/netsuite.wsdl", 42),
    ] {
        let path = fixture(rel);
        let bytes = std::fs::read(&path).expect("fixture");
        let base = path.parent().map(Path::to_path_buf);
        group.bench_function(name, |b| {
            b.iter(|| {
                // Imported XSDs are read from disk inside the measured call, as at config load.
                let model =
                    wsdl::read(&bytes, ReadOptions { base: base.clone(), ..Default::default() }).expect("loads");
                assert_eq!(model.operations.len(), ops);
                model
            })
        });
    }
    group.finish();
}

criterion_group!(wsdl, benches);
criterion_main!(wsdl);
