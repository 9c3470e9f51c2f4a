//! deploy/ against DESIGN §13: the alert rules parse and name only §13's metrics (one rule for
//! each failure §13 names), the Grafana dashboard names only §13's metrics, and the follow
//! Deployment probes /healthz and /readyz and is scraped on the port its pipeline's
//! `[service] listen` names (tests/deploy_check.py, with PyYAML; `promtool` is not at hand).

use std::path::Path;

use serde_json::Value;

#[test]
fn alerts_dashboard_and_probes_use_the_service_of_design_13() {
    let root = env!("CARGO_MANIFEST_DIR");
    let o = std::process::Command::new("python3")
        .arg(Path::new(root).join("tests/deploy_check.py"))
        .arg(root)
        .output()
        .expect("python3 (with PyYAML: .ci/run installs it)");
    assert!(
        o.status.success(),
        "deploy/ does not match DESIGN §13 (python3 -m pip install PyYAML):\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    // The ConfigMap's pipeline file parses with the product's own parser, and its service
    // listens on the port the probes and the scrape annotation use.
    let env = |_: &str| Some("x".to_string());
    let p = gladly_wfm::config::Pipeline::parse(
        Path::new("cronjob-acme.yaml#pipeline.toml"),
        v["pipeline"].as_str().unwrap(),
        &env,
    )
    .unwrap();
    let listen = p
        .service
        .expect("[service] in the ConfigMap's pipeline")
        .listen;
    assert!(
        listen.ip().is_unspecified(),
        "reachable by the kubelet: {listen}"
    );
    assert_eq!(
        v["ports"],
        serde_json::json!([listen.port()]),
        "the container port is the service's"
    );
}
