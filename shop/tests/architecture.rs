//! The crate graph keeps its shape (read from `cargo metadata`): only `shop` depends on a role
//! crate, the test kit is a dev-dependency only, and `domain` does no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Crates that are roles: only the composition root wires them.
const ROLES: [&str; 5] = ["command-api", "query-api", "saga", "notifier", "kafka-adapter"];

/// What `domain` may depend on: no database, network, runtime or HTTP crate.
const DOMAIN_MAY_USE: [&str; 8] = ["async-trait", "chrono", "cqrs-es", "schemars", "serde", "serde_json", "thiserror", "uuid"];

/// Every workspace crate with its normal (not dev, not build) dependencies.
fn normal_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let mut graph = BTreeMap::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name").to_owned();
        let deps = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("dependency name").to_owned())
            .collect();
        graph.insert(name, deps);
    }
    graph
}

#[test]
fn only_shop_depends_on_a_role_crate() {
    let graph = normal_dependencies();
    assert!(graph.len() >= 14, "the workspace was read: {graph:?}");
    for (krate, deps) in &graph {
        if krate == "shop" || krate == "testkit" {
            continue;
        }
        let roles: Vec<&String> = deps.iter().filter(|d| ROLES.contains(&d.as_str())).collect();
        assert!(roles.is_empty(), "{krate} depends on role crate(s) {roles:?}; only shop may wire roles together");
    }
}

#[test]
fn the_test_kit_is_only_ever_a_dev_dependency() {
    for (krate, deps) in normal_dependencies() {
        assert!(!deps.contains("testkit"), "{krate} links the test kit into its build");
    }
}

#[test]
fn the_domain_does_no_io() {
    let graph = normal_dependencies();
    let domain = graph.get("domain").expect("domain crate");
    let extra: Vec<&String> = domain.iter().filter(|d| !DOMAIN_MAY_USE.contains(&d.as_str())).collect();
    assert!(extra.is_empty(), "domain depends on {extra:?}");
}

#[test]
fn the_kits_depend_on_no_role_and_on_each_other_only_downwards() {
    let graph = normal_dependencies();
    for kit in ["http-kit", "mailer", "worker-kit"] {
        let deps = graph.get(kit).expect("kit crate");
        for other in ["projections", "http-kit", "mailer", "worker-kit"] {
            assert!(other == kit || !deps.contains(other), "{kit} depends on {other}: the kits stand side by side");
        }
    }
}
