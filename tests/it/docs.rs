//! The documentation says what the code declares: the pages generated from the code (the
//! spec's JSON Schema and reference, the CLI and metrics references) are the committed ones,
//! the book's NixOS module table names every option of nix/module.nix, and every relative link
//! of README.md and the book leads to a file and heading that exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::repo;

#[test]
fn the_committed_generated_pages_are_what_the_code_generates() {
    let pages = aqueduct::docs::pages();
    assert!(pages.len() >= 4);
    let stale: Vec<&str> = pages
        .iter()
        .filter(|page| {
            std::fs::read_to_string(repo().join(page.path)).ok() != Some(page.text.clone())
        })
        .map(|page| page.path)
        .collect();
    assert!(
        stale.is_empty(),
        "{stale:?} differ from what the code generates; regenerate them with\n  cargo run -- docs"
    );
}

#[tokio::test]
async fn aqueduct_schema_prints_the_committed_json_schema() {
    let out = crate::support::run(crate::support::aqueduct().arg("schema")).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    let committed = std::fs::read_to_string(repo().join("docs/spec.schema.json")).unwrap();
    assert!(
        committed == out.stdout,
        "docs/spec.schema.json differs; run `cargo run -- docs`"
    );
}

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

/// Option names in the table under "## NixOS module" of the book's Nix chapter.
fn documented_options() -> BTreeSet<String> {
    let chapter = std::fs::read_to_string(repo().join("docs/src/operations/nix.md")).unwrap();
    let section = chapter
        .split("## NixOS module")
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
fn the_book_documents_every_module_option_and_no_other() {
    let declared = declared_options();
    assert!(
        declared.len() >= 8,
        "found only {declared:?} in nix/module.nix"
    );
    assert_eq!(documented_options(), declared);
}

/// README.md and every page of the book.
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![repo().join("README.md")];
    walk(&repo().join("docs/src"), &mut files);
    files.sort();
    files
}

/// The text outside fenced code blocks.
fn prose(text: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The targets of the Markdown links `[text](target)` in `text`'s prose.
fn links(text: &str) -> Vec<String> {
    let prose = prose(text);
    let mut out = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_owned());
        }
    }
    out
}

/// The ids mdBook gives a page's headings: lower case, spaces as `-`, only letters, digits,
/// `-` and `_` kept; a repeated one numbered (`-1`, `-2`, ...).
fn heading_ids(text: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for line in prose(text).lines() {
        let Some(title) = line.strip_prefix('#').map(|l| l.trim_start_matches('#')) else {
            continue;
        };
        let id: String = title
            .trim()
            .chars()
            .filter_map(|c| match c {
                c if c.is_whitespace() => Some('-'),
                c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        let mut unique = id.clone();
        let mut n = 0;
        while ids.contains(&unique) {
            n += 1;
            unique = format!("{id}-{n}");
        }
        ids.insert(unique);
    }
    ids
}

#[test]
fn every_relative_link_of_the_readme_and_the_book_leads_somewhere() {
    let files = markdown_files();
    assert!(files.len() >= 20, "{files:?}");
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = match path {
                "" => file.clone(),
                path => file.parent().unwrap().join(path),
            };
            checked += 1;
            let Ok(target_text) = std::fs::read_to_string(&target) else {
                if !target.exists() {
                    broken.push(format!("{}: {link}: no such file", file.display()));
                }
                continue;
            };
            let is_markdown = target.extension().is_some_and(|e| e == "md");
            if !anchor.is_empty() && is_markdown && !heading_ids(&target_text).contains(anchor) {
                broken.push(format!("{}: {link}: no such heading", file.display()));
            }
        }
    }
    assert!(checked >= 50, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
