//! The README documents what the code declares: the NixOS module's options.

use std::collections::BTreeSet;

use crate::support::repo;

/// Option names declared in the NixOS module (nix/module.nix): `services.aqueduct.<x>` for the
/// top level, `pipelines.<name>.<x>` inside the pipeline submodule (its `options = {` block).
fn declared_options() -> BTreeSet<String> {
    let module = std::fs::read_to_string(repo().join("nix/module.nix")).unwrap();
    let mut out = BTreeSet::new();
    let mut prefix = None;
    for line in module.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("options.services.aqueduct = {") {
            prefix = Some("services.aqueduct.");
        } else if trimmed == "options = {" {
            prefix = Some("pipelines.<name>.");
        }
        let Some(prefix) = prefix else { continue };
        if let Some((name, rest)) = trimmed.split_once(" = ") {
            if rest.starts_with("lib.mkOption") || rest.starts_with("lib.mkEnableOption") {
                out.insert(format!("{prefix}{name}"));
            }
        }
    }
    out
}

/// Option names in the README's table under "### NixOS module".
fn documented_options() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme
        .split("### NixOS module")
        .nth(1)
        .expect("a NixOS module section");
    section
        .lines()
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_owned()))
        .collect()
}

#[test]
fn the_readme_documents_every_module_option_and_no_other() {
    let declared = declared_options();
    assert!(
        declared.len() >= 8,
        "found only {declared:?} in nix/module.nix"
    );
    assert_eq!(documented_options(), declared);
}
