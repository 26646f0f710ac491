//! Parsing, merging and validating config directories.

use std::path::PathBuf;

use super::*;

fn files(list: &[(&str, &str)]) -> Texts {
    list.iter().map(|(n, t)| (PathBuf::from(n), (*t).to_owned())).collect()
}

fn err(list: &[(&str, &str)]) -> Vec<String> {
    load(files(list)).unwrap_err().problems.iter().map(ToString::to_string).collect()
}

const SERVICES: &str = "\
services:
  - name: orders
    endpoints: [{addr: \"127.0.0.1:1\"}]
";

const WEB: &str = "\
workloads:
  - name: web
    identity: \"spiffe://cluster.local/ns/shop/sa/web\"
    inbound:
      ports:
        - {port: 8080, allow: [\"spiffe://cluster.local/ns/shop/*\"]}
";

#[test]
fn merges_files_in_order() {
    let routes = "routes:\n  - {name: r, backends: [{service: orders}]}\n";
    let mesh = load(files(&[("a.yaml", SERVICES), ("b.yaml", routes), ("c.yml", WEB)])).unwrap();
    assert_eq!(mesh.services.len(), 1);
    assert_eq!(mesh.routes[0].1, Origin { file: 1, index: 0 });
    assert_eq!(mesh.workloads["web"].0.inbound.ports[0].port, 8080);
}

#[test]
fn empty_and_comment_only_files_are_fine() {
    let mesh = load(files(&[("a.yaml", ""), ("b.yaml", "# nothing yet\n")])).unwrap();
    assert!(mesh.workloads.is_empty());
}

#[test]
fn syntax_and_unknown_keys_are_located_in_their_file() {
    let e = err(&[("a.yaml", SERVICES), ("b.yaml", "routes:\n  - name: r\n    colour: red\n")]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("b.yaml:3:5: "), "{e:?}");
    assert!(e[0].contains("unknown field `colour`"), "{e:?}");

    let e = err(&[("bad.yaml", "services:\n  - name: [unclosed\n")]);
    assert!(e[0].starts_with("bad.yaml:"), "{e:?}");
    assert!(!e[0].starts_with("bad.yaml:0:0"), "{e:?}");
}

#[test]
fn duplicate_names_across_files_point_at_both() {
    let e = err(&[("a.yaml", SERVICES), ("b.yaml", SERVICES)]);
    assert_eq!(e, ["b.yaml:2:11: service \"orders\" is already defined at a.yaml:2:11"]);
    let e = err(&[("a.yaml", WEB), ("b.yaml", WEB)]);
    assert_eq!(e, ["b.yaml:2:11: workload \"web\" is already defined at a.yaml:2:11"]);
}

#[test]
fn a_route_naming_a_missing_service_is_reported_at_the_reference() {
    let routes = "routes:\n  - name: r\n    backends:\n      - service: nowhere\n";
    let e = err(&[("a.yaml", SERVICES), ("b.yaml", routes), ("c.yaml", WEB)]);
    assert_eq!(e, ["b.yaml:4:18: routes[0].backends[0].service: unknown service \"nowhere\""]);
}

#[test]
fn proxy_validation_errors_map_back_to_the_file() {
    let bad = "services:\n  - name: x\n    endpoints: [{addr: \"nope\"}]\n";
    let e = err(&[("a.yaml", SERVICES), ("b.yaml", bad)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("b.yaml:3:24: services[0].endpoints[0].addr: "), "{e:?}");

    let bad_allow = WEB.replace("spiffe://cluster.local/ns/shop/*", "not-an-id");
    let e = err(&[("w.yaml", &bad_allow)]);
    assert!(e[0].starts_with("w.yaml:6:32: workloads[0].inbound.ports[0].allow[0]: "), "{e:?}");

    let bad_id = WEB.replace("spiffe://cluster.local/ns/shop/sa/web", "web");
    let e = err(&[("w.yaml", &bad_id)]);
    assert!(e[0].starts_with("w.yaml:3:15: workloads[0].identity: "), "{e:?}");
}

#[test]
fn service_visibility_is_checked() {
    let two = "services:\n  - {name: a, endpoints: []}\n  - {name: b, endpoints: []}\n";
    let mixed = "routes:\n  - name: split\n    backends: [{service: a}, {service: b}]\n";
    let only_a = "workloads:\n  - {name: w, identity: \"spiffe://td/ns/n/sa/w\", services: [a, zzz]}\n";
    let e = err(&[("a.yaml", two), ("b.yaml", mixed), ("c.yaml", only_a)]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].contains("b.yaml:3:40: route \"split\" sends to service \"b\""), "{e:?}");
    assert!(e[1].starts_with("c.yaml:2:64: unknown service \"zzz\""), "{e:?}");

    // A route entirely for other workloads is simply not in this one's view.
    let only_b = "routes:\n  - {name: to-b, backends: [{service: b}]}\n";
    let ok = "workloads:\n  - {name: w, identity: \"spiffe://td/ns/n/sa/w\", services: [a]}\n";
    let mesh = load(files(&[("a.yaml", two), ("b.yaml", only_b), ("c.yaml", ok)])).unwrap();
    let v = crate::view::view(&mesh, Some(&mesh.workloads["w"].0));
    assert_eq!((v.services, v.routes), (vec![0], vec![]));
}

#[test]
fn reads_only_yaml_files_sorted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.yml"), WEB).unwrap();
    std::fs::write(dir.path().join("a.yaml"), SERVICES).unwrap();
    std::fs::write(dir.path().join(".a.yaml.swp"), "junk").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "junk").unwrap();
    let texts = read_dir(dir.path()).unwrap();
    let names: Vec<_> = texts.iter().map(|(p, _)| p.file_name().unwrap().to_owned()).collect();
    assert_eq!(names, ["a.yaml", "b.yml"]);
    assert!(load_dir(dir.path()).is_ok());
}
