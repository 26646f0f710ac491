//! `pillion check`: bad files are reported as `FILE:LINE:COL: message`, good ones pass.

use pillion_e2e::process::pillion_check;

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pillion.yaml");
    std::fs::write(&file, text).unwrap();
    let (ok, out) = pillion_check(&file);
    (ok, out.replace(&file.display().to_string(), "FILE"))
}

#[test]
fn unknown_key_is_reported_at_its_line_and_column() {
    let (ok, out) = check("admin:\n  bind: \"127.0.0.1:15020\"\n  colour: red\n");
    assert!(!ok);
    assert!(out.starts_with("FILE:3:3: admin: unknown field `colour`"), "{out}");
}

#[test]
fn bad_duration_is_reported_at_the_value() {
    let (ok, out) = check("services:\n  - name: a\n    connect_timeout: 5 parsecs\n");
    assert!(!ok);
    assert!(out.starts_with("FILE:3:22: "), "{out}");
    assert!(out.contains("unknown unit"), "{out}");
}

#[test]
fn route_to_a_missing_service_is_reported_at_the_reference() {
    let text = "\
services:
  - {name: orders, endpoints: [{addr: \"127.0.0.1:8080\"}]}
routes:
  - name: canary
    backends:
      - {service: orders, weight: 90}
      - {service: orders-v2, weight: 10}
";
    let (ok, out) = check(text);
    assert!(!ok);
    assert_eq!(out.trim(), "FILE:7:19: routes[0].backends[1].service: unknown service \"orders-v2\"");
}

#[test]
fn every_problem_is_listed_and_a_good_file_passes() {
    let text = "\
services:
  - {name: a, endpoints: [{addr: \"nowhere\", weight: 0}]}
  - {name: a}
routes:
  - {name: r, match: {path_regex: \"(\"}, backends: []}
";
    let (ok, out) = check(text);
    assert!(!ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(
        out.contains("FILE:2:34: services[0].endpoints[0].addr: \"nowhere\" is not an IP:port address"),
        "{out}"
    );
    assert!(out.contains("services[0].endpoints[0].weight: weight must be at least 1"), "{out}");
    assert!(
        out.contains("FILE:3:12: services[1].name: service \"a\" is already defined at services[0]"),
        "{out}"
    );
    assert!(
        out.contains("routes[0].match.path_regex: invalid regular expression \"(\": unclosed group"),
        "{out}"
    );
    assert!(out.contains("routes[0].backends: a route needs at least one backend"), "{out}");

    let (ok, out) = check("services:\n  - {name: a, endpoints: [{addr: \"127.0.0.1:1\"}]}\n");
    assert!(ok, "{out}");
}

#[test]
fn the_example_kubernetes_config_is_valid() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes/configmap.yaml"))
            .unwrap();
    let body = manifest.split("config.yaml: |\n").nth(1).expect("a config.yaml key");
    let config: String = body.lines().map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l))).collect();
    let (ok, out) = check(&config);
    assert!(ok, "{out}");
}
