//! One golden test per fixture directory: every `fixtures/config/invalid/NAME.toml` must
//! produce exactly the messages in `NAME.expected` (phases 1–4, baselines included), and every
//! shipped example under `rules/` must be valid.

use std::path::{Path, PathBuf};

use driftwatch::validate;

async fn diagnostics(path: &Path) -> Vec<String> {
    let (_, problems) = validate::validate(path, true).await;
    problems.iter().map(ToString::to_string).collect()
}

fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn invalid_configurations_report_exactly_the_expected_messages() {
    let files = toml_files("fixtures/config/invalid");
    assert!(files.len() >= 6, "fixtures missing: {files:?}");
    for file in files {
        let expected = std::fs::read_to_string(file.with_extension("expected")).expect("an .expected file per fixture");
        let got = diagnostics(&file).await;
        let want: Vec<&str> = expected.lines().collect();
        assert_eq!(got, want, "messages for {}", file.display());
    }
}

#[tokio::test]
async fn shipped_rules_are_valid() {
    for file in toml_files("rules") {
        assert_eq!(diagnostics(&file).await, Vec::<String>::new(), "{}", file.display());
    }
}
