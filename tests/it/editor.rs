//! Specs an editor understands: taplo, the checker behind Even Better TOML, takes every example
//! spec with the JSON Schema `aqueduct schema` prints (`docs/spec.schema.json`, named by the
//! example specs' `#:schema` line and `.taplo.toml`; tests/it/docs.rs holds it equal to the
//! code's) and names the key of a misspelt, mistyped or misvalued one.

use std::path::{Path, PathBuf};

use crate::support::*;

/// taplo from scripts/install-taplo, or `None` after failing (in CI) or skipping.
fn taplo(test: &str) -> Option<PathBuf> {
    let taplo = std::env::var_os("AQUEDUCT_TEST_TAPLO")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var("XDG_CACHE_HOME").unwrap_or_else(|_| {
                format!("{}/.cache", std::env::var("HOME").unwrap_or_default())
            });
            PathBuf::from(cache).join("aqueduct/taplo/node_modules/.bin/taplo")
        });
    if taplo.exists() {
        return Some(taplo);
    }
    skip_or_fail(&format!(
        "{test}: no taplo at {}; run scripts/install-taplo",
        taplo.display()
    ));
    None
}

/// `taplo lint` of `files`, from the repository's root (so `.taplo.toml` applies).
async fn lint(taplo: &Path, files: &[PathBuf]) -> Run {
    let mut cmd = tokio::process::Command::new(taplo);
    cmd.current_dir(repo())
        .args(["lint", "--colors", "never"])
        .args(files);
    run(&mut cmd).await
}

#[tokio::test]
async fn taplo_takes_every_example_spec_and_names_the_key_of_each_mistake() {
    let Some(taplo) = taplo("taplo_lint") else {
        return;
    };
    let mut specs: Vec<PathBuf> = ["pipelines", "pipelines/examples"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo().join(dir)).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    specs.sort();
    assert!(specs.len() >= 7, "{specs:?}");
    for spec in &specs {
        let text = std::fs::read_to_string(spec).unwrap();
        assert!(
            text.starts_with("#:schema "),
            "{} names no schema",
            spec.display()
        );
    }
    let out = lint(&taplo, &specs).await;
    assert_eq!(out.code, Some(0), "{out:?}");

    // Mutants of users.toml outside the tree: their `#:schema` line names the schema.
    let users = std::fs::read_to_string(repo().join("pipelines/users.toml")).unwrap();
    let schema = repo().join("docs/spec.schema.json");
    let users = users.replacen(
        "#:schema ../docs/spec.schema.json",
        &format!("#:schema {}", schema.display()),
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    for (name, from, to, says) in [
        (
            "misspelt",
            "\npartition_key = [\"id\"]",
            "\npartiton_key = [\"id\"]",
            "'partiton_key' was unexpected",
        ),
        (
            "mistyped",
            "partitions = 3",
            "partitions = \"three\"",
            "\"three\" is not of type \"integer\"",
        ),
        (
            "misvalued",
            "on_invalid = \"dead_letter\"",
            "on_invalid = \"dead-letter\"",
            "\"dead-letter\" is not one of [\"dead_letter\",\"drop\",\"fail\"]",
        ),
    ] {
        assert!(users.contains(from), "{name}: users.toml has no {from:?}");
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, users.replacen(from, to, 1)).unwrap();
        let out = lint(&taplo, &[path]).await;
        assert_ne!(out.code, Some(0), "{name}: {out:?}");
        let said = format!("{}{}", out.stdout, out.stderr);
        assert!(said.contains(says), "{name}: {said}");
        // The line of the mistake, key and all.
        assert!(said.contains(to.trim_start()), "{name}: {said}");
    }
}
