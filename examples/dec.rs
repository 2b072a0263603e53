use std::path::Path;
use veneer::schema::wsdl::{self, ReadOptions};
use veneer::translate::decode::{self, Decoded};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let p = Path::new(&a[1]);
    let m = wsdl::read(
        &std::fs::read(p).unwrap(),
        ReadOptions { base: p.parent().map(Path::to_path_buf), ..Default::default() },
    )
    .unwrap();
    let op = m.operation(&a[2]).unwrap();
    let el = if a[4] == "in" { &op.input } else { &op.output };
    match decode::response(el, &m.schema, &std::fs::read(&a[3]).unwrap()).unwrap() {
        Decoded::Body(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap()),
        f => println!("{f:?}"),
    }
    for h in &op.headers {
        println!("header {}", h.name);
    }
}
