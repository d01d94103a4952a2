//! The book's pages generated from the code (`aqueduct docs`): the spec's JSON Schema and
//! reference from the spec's structs, the CLI reference from clap's declarations, the metrics
//! reference from the metrics' declarations. A test compares them with the committed files.

use std::path::Path;

use crate::{cli, metrics, spec};

/// One generated file: its path from the repository's root, and its text.
pub struct Page {
    pub path: &'static str,
    pub text: String,
}

/// Every generated page.
pub fn pages() -> Vec<Page> {
    let schema = spec::json_schema();
    vec![
        Page {
            path: "docs/spec.schema.json",
            text: format!("{schema:#}\n"),
        },
        Page {
            path: "docs/src/reference/spec.md",
            text: spec::reference::markdown(&schema),
        },
        Page {
            path: "docs/src/reference/cli.md",
            text: cli_reference(),
        },
        Page {
            path: "docs/src/reference/metrics.md",
            text: metrics::Metrics::reference(),
        },
    ]
}

/// Writes every page under `root` (the repository's root), each only if it differs; returns
/// the paths it wrote.
pub fn write(root: &Path) -> std::io::Result<Vec<&'static str>> {
    let mut written = Vec::new();
    for page in pages() {
        let path = root.join(page.path);
        if std::fs::read_to_string(&path).is_ok_and(|text| text == page.text) {
            continue;
        }
        std::fs::write(&path, &page.text)?;
        written.push(page.path);
    }
    Ok(written)
}

/// The CLI reference: every command's `--help`, as Markdown.
fn cli_reference() -> String {
    let options = clap_markdown::MarkdownOptions::new()
        .title("CLI reference".to_owned())
        .show_footer(false);
    let body = clap_markdown::help_markdown_custom::<cli::Cli>(&options);
    let intro = "Every command and flag, generated from the command line's declarations in \
                 `src/cli.rs` by `aqueduct docs` (a test fails when this file differs): what \
                 `aqueduct help COMMAND` prints. Exit codes: 0 success, 1 a runtime failure, \
                 2 an invalid spec or usage.\n\n";
    body.replacen(
        "This document contains the help content for the `aqueduct` command-line program.\n\n",
        intro,
        1,
    )
}
