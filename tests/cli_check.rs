//! `veneer check`: exit status and messages a person can act on (file, line, what to write).

use std::path::{Path, PathBuf};
use std::process::Command;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Copies the sample config into a temp dir, applying `edit` to (relative path, text).
fn variant(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for rel in ["gateway.yaml", "routes/items.yaml", "routes/production.yaml", "wsdl/sample-erp.wsdl"] {
        let text = std::fs::read_to_string(sample().join(rel)).expect("sample file");
        let target = dir.path().join(rel);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(target, edit(rel, text)).expect("write");
    }
    dir
}

/// 1-based line of the first line containing `needle`.
fn line_of(dir: &Path, rel: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(dir.join(rel)).expect("read");
    text.lines().position(|l| l.contains(needle)).expect("needle present") + 1
}

fn check(dir: &Path) -> (bool, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_veneer")).args(["check", "--config"]).arg(dir).output().expect("run veneer");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn sample_config_passes() {
    let (ok, out) = check(&sample());
    assert!(ok, "{out}");
    assert!(out.contains("OK (5 routes, 1 backend)"), "{out}");
    // As shipped, no client is registered: check says so, and what to do.
    assert!(out.contains("warning: auth: no caller can be authorised"), "{out}");
    assert!(out.contains("veneer client new"), "{out}");
}

/// With a registered client, the warning goes.
#[test]
fn a_registered_client_silences_the_auth_warning() {
    let hash = veneer::auth::clients::hash_secret("s3cret").expect("hash");
    let dir = variant(|rel, t| match rel {
        "gateway.yaml" => t
            .replace("  # issuer: \"https://veneer.example.com\"", "  issuer: \"https://veneer.example.com\"")
            .replace("  # signing_keys: keys/", "  signing_keys: keys/")
            .replace(
                "  clients: []",
                &format!("  clients:\n    - {{ id: line-3, secret_hash: \"{hash}\", scopes: [items:read] }}"),
            ),
        _ => t,
    });
    veneer::admin::new_key(&dir.path().join("keys"), "ES256").expect("key");
    let (ok, out) = check(dir.path());
    assert!(ok, "{out}");
    assert!(!out.contains("no caller can be authorised"), "{out}");
}

#[test]
fn unknown_key_names_file_and_line() {
    let dir =
        variant(|rel, t| if rel == "gateway.yaml" { t.replace("    timeout: 10s", "    timout: 10s") } else { t });
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(out.contains(&format!("gateway.yaml:{}:", line_of(dir.path(), "gateway.yaml", "timout:"))), "{out}");
    assert!(out.contains("unknown field `timout`") && out.contains("expected one of"), "{out}");
}

#[test]
fn every_route_problem_is_listed_with_its_line() {
    let dir = variant(|rel, t| match rel {
        "routes/items.yaml" => t.replace("operation: GetItem", "operation: GetItems"),
        "routes/production.yaml" => t
            .replace("backend: erp\n    operation: PostSensorReading", "backend: sap\n    operation: PostSensorReading")
            .replace("{path.no}", "{path.number}"),
        _ => t,
    });
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(out.contains("3 problems"), "{out}");
    assert!(
        out.contains(&format!("routes/items.yaml:{}:", line_of(dir.path(), "routes/items.yaml", "GetItems")))
            && out.contains("no operation \"GetItems\"")
            && out.contains("GetItem, ListProductionOrders"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "routes/production.yaml:{}:",
            line_of(dir.path(), "routes/production.yaml", "backend: sap")
        )) && out.contains("unknown backend \"sap\""),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "routes/production.yaml:{}:",
            line_of(dir.path(), "routes/production.yaml", "{path.number}")
        )) && out.contains("{path.number} is not a parameter"),
        "{out}"
    );
}

#[test]
fn unfilled_required_input_is_reported_with_a_fix() {
    let dir = variant(|rel, t| {
        if rel == "routes/items.yaml" {
            t.replace("      ItemNo: \"{path.no}\"\n", "      {}\n").replace("request:\n      {}", "request: {}")
        } else {
            t
        }
    });
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("requires element ItemNo") && out.contains("ItemNo: \"{query.itemNo}\""), "{out}");
}

#[test]
fn secrets_must_be_references() {
    let dir = variant(|rel, t| {
        if rel == "gateway.yaml" {
            t.replace(
                "    # auth:\n    #   basic: { username: svc-veneer, password_env: ERP_PASSWORD }",
                "    auth:\n      basic: { username: svc, password: hunter2 }",
            )
        } else {
            t
        }
    });
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(out.contains("unknown field `password`") && out.contains("password_env"), "{out}");

    let dir = variant(|rel, t| {
        if rel == "gateway.yaml" {
            t.replace(
                "    # auth:\n    #   basic: { username: svc-veneer, password_env: ERP_PASSWORD }",
                "    auth:\n      basic: { username: svc, password_env: VENEER_TEST_UNSET_VARIABLE }",
            )
        } else {
            t
        }
    });
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(out.contains("VENEER_TEST_UNSET_VARIABLE (password_env) is not set"), "{out}");
}

#[test]
fn broken_wsdl_and_bad_values_are_located() {
    let dir = variant(|rel, t| match rel {
        "wsdl/sample-erp.wsdl" => t.replace("</wsdl:types>", "</wsdl:typo>"),
        "gateway.yaml" => {
            t.replace("max_body: 1MiB", "max_body: a lot").replace("request_timeout: 30s", "request_timeout: soon")
        }
        _ => t,
    });
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(out.contains("wsdl/sample-erp.wsdl:") || out.contains("sample-erp.wsdl:"), "{out}");
    assert!(out.contains("gateway.yaml:4: server.max_body") && out.contains("512KiB"), "{out}");
    assert!(out.contains("gateway.yaml:5: server.request_timeout") && out.contains("5s"), "{out}");
}

#[test]
fn missing_directory_is_a_clear_error() {
    let (ok, out) = check(Path::new("/nonexistent/veneer-config"));
    assert!(!ok);
    assert!(out.contains("gateway.yaml") && out.contains("cannot read"), "{out}");
}

#[test]
fn wsdl_reading_options_are_checked() {
    // An unknown xsd_any mode: the YAML parser names its line and the values it takes.
    let dir = variant(|rel, t| {
        if rel == "gateway.yaml" { t.replace("    timeout: 10s", "    timeout: 10s\n    xsd_any: yaml") } else { t }
    });
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    let line = line_of(dir.path(), "gateway.yaml", "xsd_any:");
    assert!(out.contains(&format!("gateway.yaml:{line}:")) && out.contains("expected `json` or `xml`"), "{out}");
    // A port the WSDL does not have.
    let dir = variant(|rel, t| {
        if rel == "gateway.yaml" { t.replace("    timeout: 10s", "    timeout: 10s\n    port: NoSuchPort") } else { t }
    });
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("no SOAP port or service named \"NoSuchPort\"") && out.contains("(service/port):"), "{out}");
}

#[test]
fn bad_max_response_is_located() {
    for (value, expected) in
        [("lots", "\"lots\" is not a size; write e.g. 512KiB or 1MiB"), ("0", "refuse every response")]
    {
        let dir = variant(|rel, t| {
            if rel == "gateway.yaml" {
                t.replace("    timeout: 10s", &format!("    timeout: 10s\n    max_response: {value}"))
            } else {
                t
            }
        });
        let (ok, out) = check(dir.path());
        assert!(!ok, "{out}");
        let line = line_of(dir.path(), "gateway.yaml", "max_response:");
        assert!(out.contains(&format!("gateway.yaml:{line}: backend erp: max_response: ")), "{out}");
        assert!(out.contains(expected), "{out}");
    }
}

/// Lines come from the YAML parser's marks, so a problem names the key it is about, not the
/// first text that looks like it. The expected lines are written by hand against the shipped
/// gateway.yaml (kept in step by the first assertion).
#[test]
fn problems_point_at_their_key_not_at_a_comment_or_a_longer_key() {
    let shipped = std::fs::read_to_string(sample().join("gateway.yaml")).expect("gateway.yaml");
    let lines: Vec<&str> = shipped.lines().collect();
    assert!(lines[16].trim_start().starts_with("url:") && lines[15].contains("url_env"), "shipped file changed");
    assert!(lines[19].trim_start().starts_with("timeout:") && lines[20].contains("connect_timeout:"));
    assert!(lines[26].contains("status: 404"));
    let dir = variant(|rel, t| {
        if rel != "gateway.yaml" {
            return t;
        }
        t.replace("url: \"http://127.0.0.1:7047/erp\"", "url: \"ftp://127.0.0.1/erp\"")
            .replace("    timeout: 10s", "    timeout: soon")
            .replace(
                "      - { code: Client, reason: \"does not exist\", status: 404 }",
                "      - { code: Client, reason: \"does not exist\", status: 404 }\n      - { code: Server, status: 200 }\n      - { code: Busy, status: 99 }",
            )
    });
    let (ok, out) = check(dir.path());
    assert!(!ok);
    for expected in [
        "gateway.yaml:17: backend erp: \"ftp://127.0.0.1/erp\" is not an http(s) URL",
        "gateway.yaml:20: backend erp: timeout: ",
        "gateway.yaml:28: fault status 200 is not an HTTP error status",
        "gateway.yaml:29: fault status 99 is not an HTTP error status",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
}

/// A queued route whose duplicate refusals count as delivered must send the ERP a key that
/// names the caller: `check` passes but warns where one does not (no `{delivery.key}`, or
/// `{delivery.raw_key}`), and stays quiet where it does.
#[test]
fn check_warns_where_a_queued_routes_erp_key_does_not_name_the_caller() {
    let route = |name: &str, key: &str| {
        format!(
            "  - route: \"POST /{name}\"\n    backend: erp\n    operation: PostSensorReading\n    delivery: queued\n    duplicate_faults: [ {{ code: Client, reason: \"already exists\" }} ]\n    request: {{ SensorId: \"{key}\", Timestamp: \"{{body.at}}\", Value: \"{{body.value}}\", Unit: \"{{body.unit}}\" }}\n"
        )
    };
    let dir = variant(|rel, t| match rel {
        "routes/production.yaml" => format!(
            "{t}\n{}{}{}",
            route("scoped", "{delivery.key}"),
            route("raw", "{delivery.raw_key}"),
            route("none", "{body.sensor}")
        ),
        _ => t,
    });
    let (ok, out) = check(dir.path());
    assert!(ok, "warnings do not fail check: {out}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains("warning: route")).collect();
    assert_eq!(warnings.len(), 2, "{out}");
    assert!(warnings.iter().any(|w| w.contains("POST /raw") && w.contains("{delivery.raw_key}")), "{out}");
    assert!(warnings.iter().any(|w| w.contains("POST /none") && w.contains("map {delivery.key}")), "{out}");
    assert!(!out.contains("POST /scoped:"), "{out}");
}

/// The stores' bounds are checked where they are written.
#[test]
fn bad_store_bounds_are_located() {
    let dir = variant(|rel, t| {
        if rel == "gateway.yaml" {
            t.replace(
                "  data_dir: data\n",
                "  data_dir: data\n  max_items: 0\n  max_bytes: lots\n  keep_dead: forever\n",
            )
        } else {
            t
        }
    });
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    for (needle, says) in
        [("max_items: 0", "more than 0"), ("max_bytes: lots", "max_bytes"), ("keep_dead: forever", "keep_dead")]
    {
        let line = line_of(dir.path(), "gateway.yaml", needle);
        let at = format!("gateway.yaml:{line}:");
        assert!(out.lines().any(|l| l.contains(&at) && l.contains(says)), "{needle} at {at}: {out}");
    }
}

/// The whole sample (sensors too), with `edit` applied to each file's (relative path, text).
fn full_variant(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["", "routes", "sensors", "wsdl"] {
        for entry in std::fs::read_dir(sample().join(sub)).expect("sample dir") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                let rel = Path::new(sub).join(path.file_name().expect("name"));
                let rel = rel.to_str().expect("utf-8");
                let target = dir.path().join(rel);
                std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                std::fs::write(target, edit(rel, std::fs::read_to_string(&path).expect("read"))).expect("write");
            }
        }
    }
    dir
}

/// One broken backend is one problem: the routes on it and the sensors naming those routes
/// are not each reported again.
#[test]
fn a_broken_backend_is_one_problem_not_one_per_sensor() {
    let dir = full_variant(|rel, t| match rel {
        "gateway.yaml" => t.replace("wsdl: wsdl/sample-erp.wsdl", "wsdl: wsdl/missing.wsdl"),
        _ => t,
    });
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    assert!(out.contains("1 problem in"), "{out}");
    assert!(
        out.contains(&format!(
            "gateway.yaml:{}: backend erp: cannot read",
            line_of(dir.path(), "gateway.yaml", "missing.wsdl")
        )),
        "{out}"
    );
    // A sensor naming a route that was never declared is still its own problem.
    let dir = full_variant(|rel, t| match rel {
        "sensors/press-line.yaml" => {
            t.replacen("route: \"POST /sensor-readings/queued\"", "route: \"POST /nowhere\"", 1)
        }
        _ => t,
    });
    let (ok, out) = check(dir.path());
    assert!(!ok && out.contains("no route \"POST /nowhere\" is configured"), "{out}");
}

/// A key indented wrongly is blamed on its own line, with what to change.
#[test]
fn a_misindented_key_is_blamed_on_its_own_line() {
    let dir = variant(|rel, t| match rel {
        "routes/items.yaml" => t.replacen("    backend: erp", "  backend: erp", 1),
        _ => t,
    });
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    let line = line_of(dir.path(), "routes/items.yaml", "  backend: erp");
    assert!(out.contains(&format!("routes/items.yaml:{line}: ")), "{out}");
    assert!(out.contains("`backend:` indented by 2 spaces where the keys it belongs with are indented by 4"), "{out}");
}

/// A mapping value is one placeholder or a constant: text around a placeholder is named, not
/// sent to the ERP as the literal `x-{path.no}`.
#[test]
fn a_mapping_value_mixing_text_and_a_placeholder_is_a_problem() {
    let dir = variant(|rel, t| match rel {
        "routes/items.yaml" => t.replacen("ItemNo: \"{path.no}\"", "ItemNo: \"x-{path.no}\"", 1),
        _ => t,
    });
    let (ok, out) = check(dir.path());
    assert!(!ok, "{out}");
    let line = line_of(dir.path(), "routes/items.yaml", "x-{path.no}");
    assert!(
        out.contains(&format!("routes/items.yaml:{line}: ")) && out.contains("mixes text with a placeholder"),
        "{out}"
    );
}
