//! The deployment files as shipped: Kubernetes manifests against the API schemas
//! (`kubernetes-validate --strict`), the agent configuration inside the ConfigMap through
//! `driftwatch validate`, and the Dockerfile through `hadolint`. The linters come from
//! `scripts/install-deps.sh` (a virtual environment in `~/.cache/driftwatch-tools`).

use std::path::PathBuf;
use std::process::Command;

use crate::agent::root;

fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("DRIFTWATCH_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/driftwatch-tools"));
    let path = dir.join("bin").join(name);
    assert!(path.exists(), "{} is missing: run scripts/install-deps.sh", path.display());
    path
}

/// A `key: |` block of the ConfigMap, unindented.
fn config_map_file(text: &str, key: &str) -> String {
    let head = format!("  {key}: |\n");
    let start = text.find(&head).unwrap_or_else(|| panic!("no {key} in the ConfigMap")) + head.len();
    text[start..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.get(4..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn kubernetes_manifests_pass_strict_schema_validation() {
    let kustomization = std::fs::read_to_string(root().join("deploy/kustomization.yaml")).expect("kustomization");
    let mut files: Vec<String> = kustomization
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|f| f.ends_with(".yaml"))
        .map(String::from)
        .collect();
    assert!(files.len() >= 6, "{files:?}");
    files.sort();
    let out = Command::new(tool("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.37"])
        .args(files.iter().map(|f| root().join("deploy").join(f)))
        .output()
        .expect("kubernetes-validate runs");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    for kind in
        ["daemonset/driftwatch", "configmap/driftwatch-config", "secret/driftwatch-credentials", "service/driftwatch"]
    {
        assert!(report.contains(&format!("passed for resource {kind}")), "{kind} not validated:\n{report}");
    }
    // The DaemonSet keeps to the restricted Pod Security Standard and outlives the agent's
    // shutdown deadline.
    let ds = std::fs::read_to_string(root().join("deploy/daemonset.yaml")).expect("daemonset");
    for needle in [
        "runAsNonRoot: true", "readOnlyRootFilesystem: true", "allowPrivilegeEscalation: false", "drop: [\"ALL\"]",
        "type: RuntimeDefault", "maxUnavailable: 1", "terminationGracePeriodSeconds: 60", "path: /readyz",
    ] {
        assert!(ds.contains(needle), "{needle} missing from the DaemonSet");
    }
    // The ConfigMap is mounted as a folder: a subPath mount never sees updates, so hot
    // reload would not either.
    assert!(!ds.contains("subPath"), "the DaemonSet mounts with subPath");
}

#[test]
fn the_configmaps_agent_configuration_is_valid() {
    let text = std::fs::read_to_string(root().join("deploy/configmap.yaml")).expect("configmap");
    let dir = tempfile::tempdir().expect("tmp");
    for key in ["agent.toml", "credit-risk.rules.toml"] {
        std::fs::write(dir.path().join(key), config_map_file(&text, key)).expect("write");
    }
    let agent = dir.path().join("agent.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
        .args(["validate", "--no-baselines", "--config"])
        .arg(&agent)
        .output()
        .expect("validate runs");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Its shutdown deadline is below the pod's grace period.
    let cfg = driftwatch::config::parse(&agent, &config_map_file(&text, "agent.toml")).expect("parses");
    assert!(cfg.agent.shutdown_timeout < std::time::Duration::from_secs(60));
}

#[test]
fn the_dockerfile_is_hadolint_clean() {
    let out = Command::new(tool("hadolint"))
        .args(["--no-color", "--failure-threshold", "info"])
        .arg(root().join("Dockerfile"))
        .output()
        .expect("hadolint runs");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    assert!(text.contains("USER 65532"), "runs as a non-root user");
    assert_eq!(text.matches("\nFROM ").count() + usize::from(text.starts_with("FROM ")), 2, "multi-stage");
}
