//! `xsd:import`/`xsd:include` from files: NetSuite's WSDL with 46 schemas imported by
//! relative paths loads (quickly) and imports into a config that checks; absolute-URL
//! schema locations are never fetched, and resolve through a catalog. Locations cannot reach
//! outside the config directory, and only regular files of bounded size are read.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use veneer::schema::wsdl::{self, ReadOptions};

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wsdl")
}

#[test]
fn netsuite_relative_imports_load_and_import() {
    let wsdl = fixtures().join("netsuite-2023_2/netsuite.wsdl");
    let bytes = std::fs::read(&wsdl).expect("wsdl");
    let options = ReadOptions { base: wsdl.parent().map(Path::to_path_buf), ..Default::default() };
    let model = wsdl::read(&bytes, options).expect("NetSuite loads with its imported schemas");
    assert_eq!(model.operations.len(), 42);
    let get = model.operation("get").expect("get");
    assert_eq!(get.input.name, "get");
    // The passport soap:header is not mistaken for the body.
    assert!(model.operations.iter().all(|o| !o.input.name.eq_ignore_ascii_case("passport")));

    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path();
    std::fs::create_dir_all(conf.join("routes")).expect("mkdir");
    std::fs::create_dir_all(conf.join("wsdl/xsd")).expect("mkdir");
    std::fs::copy(&wsdl, conf.join("wsdl/netsuite.wsdl")).expect("copy");
    for f in std::fs::read_dir(fixtures().join("netsuite-2023_2/xsd")).expect("xsd dir").flatten() {
        std::fs::copy(f.path(), conf.join("wsdl/xsd").join(f.file_name())).expect("copy xsd");
    }
    std::fs::write(conf.join("gateway.yaml"), "{}\n").expect("write");
    let veneer = env!("CARGO_BIN_EXE_veneer");
    let out = Command::new(veneer)
        .args([
            "import-wsdl",
            &conf.join("wsdl/netsuite.wsdl").to_string_lossy(),
            "--backend",
            "netsuite",
            "--endpoint",
            "http://127.0.0.1:9/ns",
        ])
        .args(["--out", &conf.join("routes/netsuite.yaml").to_string_lossy()])
        .output()
        .expect("import");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = Command::new(veneer).args(["check", "--config", &conf.to_string_lossy()]).output().expect("check");
    let text = String::from_utf8_lossy(&check.stdout).into_owned() + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success() && text.contains("OK (42 routes, 1 backend)"), "{text}");
}

#[test]
fn absolute_schema_locations_need_a_catalog_and_are_never_fetched() {
    let wsdl = fixtures().join("nav-b2b-wcf/B2BService.wsdl");
    let bytes = std::fs::read(&wsdl).expect("wsdl");
    let base = wsdl.parent().map(Path::to_path_buf);
    let err = wsdl::read(&bytes, ReadOptions { base: base.clone(), ..Default::default() })
        .expect_err("a URL without a catalog entry");
    assert!(err.to_string().contains("catalog") && err.to_string().contains("never fetches"), "{err}");

    // The Visual Studio service map: xsd0 → B2BService1.xsd, xsd1 → B2BService2.xsd, xsd2 → B2BService.xsd.
    let dir = fixtures().join("nav-b2b-wcf");
    let catalog: BTreeMap<String, std::path::PathBuf> =
        [("xsd0", "B2BService1.xsd"), ("xsd1", "B2BService2.xsd"), ("xsd2", "B2BService.xsd")]
            .into_iter()
            .map(|(k, f)| (format!("http://localhost:35798/B2BService.svc?xsd={k}"), dir.join(f)))
            .collect();
    let err = wsdl::read(&bytes, ReadOptions { base, catalog, ..Default::default() }).expect_err("abstract WSDL");
    // With the catalog every schema loads; what remains is that this WSDL has no binding at all.
    assert!(err.to_string().contains("no SOAP binding"), "{err}");
}

#[test]
fn every_binding_of_the_soap_version_counts() {
    // Siebel's order service binds two portTypes (Order and OrderItem), with odd formatting.
    let bytes = std::fs::read(fixtures().join("siebel-order.wsdl")).expect("wsdl");
    let model = wsdl::read(&bytes, ReadOptions::default()).expect("Siebel loads");
    let names: Vec<&str> = model.operations.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names.len(), 12, "{names:?}");
    assert!(names.contains(&"GetOrderById") && names.contains(&"GetOrderItemById"), "{names:?}");
}

#[test]
fn wsdl_import_joins_split_documents() {
    // WCF and Java tools publish the binding in one document and the portType in another.
    let wsdl = fixtures().join("split-calculator/calculator.wsdl");
    let bytes = std::fs::read(&wsdl).expect("wsdl");
    let options = ReadOptions { base: wsdl.parent().map(Path::to_path_buf), ..Default::default() };
    let model = wsdl::read(&bytes, options).expect("the imported abstract part is read");
    assert_eq!(model.operations.len(), 4);
    let add = model.operation("Add").expect("Add");
    assert_eq!(add.input.namespace.as_deref(), Some("http://tempuri.org/"));
    assert_eq!(model.endpoint.as_deref(), Some("http://www.dneonline.com/calculator.asmx"));

    // Without the file beside it, the error names what is missing.
    let err = wsdl::read(&bytes, ReadOptions::default()).expect_err("relative import, no base");
    assert!(err.to_string().contains("calculator-abstract.wsdl"), "{err}");
}

#[test]
fn a_port_or_service_can_be_chosen() {
    let bytes = std::fs::read(fixtures().join("calculator.wsdl")).expect("wsdl");
    let read = |port: &str| wsdl::read(&bytes, ReadOptions { port: Some(port.into()), ..Default::default() });
    let soap12 = read("CalculatorSoap12").expect("the SOAP 1.2 port");
    assert!(soap12.operations.iter().all(|o| o.soap_version == veneer::schema::SoapVersion::V12));
    assert_eq!(soap12.operations.len(), 4);
    let service = read("Calculator").expect("a service name takes its first SOAP port");
    assert!(service.operations.iter().all(|o| o.soap_version == veneer::schema::SoapVersion::V11));
    assert_eq!(service.endpoint.as_deref(), Some("http://www.dneonline.com/calculator.asmx"));
    let err = read("CalculatorHttpGet").expect_err("no such SOAP port");
    assert!(err.to_string().contains("Calculator/CalculatorSoap, Calculator/CalculatorSoap12"), "{err}");

    // GlobalWeather's HTTP GET/POST ports are not SOAP ports, so they cannot be chosen.
    let weather = std::fs::read(fixtures().join("globalweather.wsdl")).expect("wsdl");
    let err = wsdl::read(&weather, ReadOptions { port: Some("GlobalWeatherHttpGet".into()), ..Default::default() })
        .expect_err("HTTP port");
    assert!(err.to_string().contains("GlobalWeatherSoap12"), "{err}");
}

#[test]
fn a_broken_operation_in_an_imported_file_is_located_in_that_file() {
    // Break Add's output message in the imported abstract document: the other three
    // operations load, Add is skipped with the imported file's name and line, and a route
    // that names it fails `veneer check` pointing there.
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path();
    std::fs::create_dir_all(conf.join("wsdl")).expect("mkdir");
    std::fs::create_dir_all(conf.join("routes")).expect("mkdir");
    let split = fixtures().join("split-calculator");
    std::fs::copy(split.join("calculator.wsdl"), conf.join("wsdl/calculator.wsdl")).expect("copy");
    let abstract_part = std::fs::read_to_string(split.join("calculator-abstract.wsdl")).expect("read");
    let broken = abstract_part.replacen("message=\"tns:AddSoapOut\"", "message=\"tns:Gone\"", 1);
    assert!(broken != abstract_part, "the fixture names AddSoapOut");
    std::fs::write(conf.join("wsdl/calculator-abstract.wsdl"), &broken).expect("write");
    let line = broken.lines().position(|l| l.contains("tns:Gone")).expect("line") + 1;

    let wsdl = conf.join("wsdl/calculator.wsdl");
    let bytes = std::fs::read(&wsdl).expect("wsdl");
    let model = wsdl::read(&bytes, ReadOptions { base: wsdl.parent().map(Path::to_path_buf), ..Default::default() })
        .expect("the rest loads");
    assert_eq!(model.operations.len(), 3);
    let skipped = &model.skipped[0];
    assert_eq!((skipped.operation.as_str(), skipped.line), ("Add", line), "{skipped:?}");
    assert!(skipped.location().contains("calculator-abstract.wsdl"), "{skipped:?}");

    std::fs::write(conf.join("gateway.yaml"), "{}\n").expect("write");
    std::fs::write(
        conf.join("routes/calc.yaml"),
        "backends:\n  calc:\n    url: http://127.0.0.1:9/calc\n    wsdl: wsdl/calculator.wsdl\nroutes:\n  - route: POST /add\n    backend: calc\n    operation: Add\n    request: \"{body}\"\n",
    )
    .expect("write");
    let check = Command::new(env!("CARGO_BIN_EXE_veneer"))
        .args(["check", "--config", &conf.to_string_lossy()])
        .output()
        .expect("check");
    let text = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(!check.status.success(), "{text}");
    assert!(
        text.contains("routes/calc.yaml:8")
            && text.contains(&format!("calculator-abstract.wsdl, line {line}"))
            && text.contains("Gone"),
        "{text}"
    );
}

/// A config with the calculator WSDL, one route, and `extra` inserted into its inline schema.
fn calculator_config(extra: &str, catalog: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path();
    std::fs::create_dir_all(conf.join("wsdl")).expect("mkdir");
    std::fs::create_dir_all(conf.join("routes")).expect("mkdir");
    let wsdl = std::fs::read_to_string(fixtures().join("calculator.wsdl")).expect("read");
    let anchor = "<s:schema elementFormDefault=\"qualified\" targetNamespace=\"http://tempuri.org/\">";
    assert!(wsdl.contains(anchor), "the fixture's schema start tag");
    std::fs::write(conf.join("wsdl/calculator.wsdl"), wsdl.replacen(anchor, &format!("{anchor}\n{extra}"), 1))
        .expect("write");
    std::fs::write(conf.join("gateway.yaml"), "{}\n").expect("write");
    std::fs::write(
        conf.join("routes/calc.yaml"),
        format!("backends:\n  calc:\n    url: http://127.0.0.1:9/calc\n    wsdl: wsdl/calculator.wsdl\n{catalog}routes:\n  - route: POST /add\n    backend: calc\n    operation: Add\n    request: \"{{body}}\"\n"),
    )
    .expect("write");
    dir
}

#[test]
fn check_refuses_imports_outside_the_config_directory() {
    // A WSDL's locations come from whoever wrote the WSDL (often a remote server): they may
    // not make `check` or `serve` read /etc/passwd or /dev/zero, however they are written.
    let escape = "../".repeat(12) + "etc/passwd";
    let cases = [
        (escape.clone(), escape.clone(), "leads outside"),
        ("/dev/zero".into(), "/dev/zero".into(), "is an absolute path"),
        ("&#47;dev&#47;zero".into(), "/dev/zero".into(), "is an absolute path"),
        ("/etc/passwd".into(), "/etc/passwd".into(), "is an absolute path"),
        ("xsd/../../../etc/passwd".into(), "xsd/../../../etc/passwd".into(), "leads outside"),
    ];
    for (written, decoded, why) in cases {
        let dir = calculator_config(&format!("<s:import namespace=\"urn:x\" schemaLocation=\"{written}\"/>"), "");
        let (ok, text) = common::bounded_check(dir.path());
        assert!(!ok, "{written}: {text}");
        assert!(
            text.contains(&format!("schemaLocation {decoded:?} {why}")) && text.contains("calculator.wsdl"),
            "{written}: the error names the file and the location: {text}"
        );
    }
}

#[test]
fn imports_may_climb_between_folders_inside_the_config_directory() {
    // A schema in wsdl/xsd/ importing ../common/b.xsd stays inside the config: allowed.
    let dir = calculator_config("<s:import namespace=\"urn:a\" schemaLocation=\"xsd/a.xsd\"/>", "");
    let conf = dir.path();
    std::fs::create_dir_all(conf.join("wsdl/xsd")).expect("mkdir");
    std::fs::create_dir_all(conf.join("wsdl/common")).expect("mkdir");
    std::fs::write(
        conf.join("wsdl/xsd/a.xsd"),
        r#"<s:schema xmlns:s="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:a"><s:import namespace="urn:b" schemaLocation="../common/b.xsd"/></s:schema>"#,
    )
    .expect("write");
    std::fs::write(
        conf.join("wsdl/common/b.xsd"),
        r#"<s:schema xmlns:s="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:b"><s:element name="B" type="s:string"/></s:schema>"#,
    )
    .expect("write");
    let (ok, text) = common::bounded_check(conf);
    assert!(ok && text.contains("OK (1 route, 1 backend)"), "{text}");
}

#[test]
fn only_regular_files_of_bounded_size_are_read() {
    // A symbolic link inside the config that points at a device leads outside it.
    let dir = calculator_config("<s:import namespace=\"urn:x\" schemaLocation=\"zero.xsd\"/>", "");
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("wsdl/zero.xsd")).expect("symlink");
    let (ok, text) = common::bounded_check(dir.path());
    assert!(!ok && text.contains("schemaLocation \"zero.xsd\" leads outside"), "{text}");

    // A directory inside the config is not a file.
    let dir = calculator_config("<s:import namespace=\"urn:x\" schemaLocation=\"folder.xsd\"/>", "");
    std::fs::create_dir_all(dir.path().join("wsdl/folder.xsd")).expect("mkdir");
    let (ok, text) = common::bounded_check(dir.path());
    assert!(!ok && text.contains("not a regular file"), "{text}");

    // Catalog entries are the admin's, but a device is still not read.
    let catalog = "    catalog:\n      \"http://erp.example/zero.xsd\": /dev/zero\n";
    let dir =
        calculator_config("<s:import namespace=\"urn:x\" schemaLocation=\"http://erp.example/zero.xsd\"/>", catalog);
    let (ok, text) = common::bounded_check(dir.path());
    assert!(!ok && text.contains("/dev/zero: not a regular file"), "{text}");

    // A file over the cap is refused by its size, before anything is read (sparse here).
    let dir = calculator_config("<s:import namespace=\"urn:x\" schemaLocation=\"huge.xsd\"/>", "");
    let huge = std::fs::File::create(dir.path().join("wsdl/huge.xsd")).expect("create");
    huge.set_len(veneer::schema::imports::MAX_FILE_BYTES + 1).expect("set_len");
    let (ok, text) = common::bounded_check(dir.path());
    assert!(!ok && text.contains("larger than 64 MiB"), "{text}");
}
