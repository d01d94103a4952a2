//! `aqueduct init`: a starting spec from one sample response, asked of an API (through the
//! source component, so the source's auth works) or read from a file. From the sample it
//! guesses where the records are ([`paging::find_records`]), their JSON Schema
//! ([`shape::Shape::schema`]), a column per leaf field ([`columns::columns`]), the partition
//! key ([`columns::choose_key`]) and the pagination ([`paging::guess`]); [`write::spec`]
//! writes it all with a comment at each guess. The pure parts are unit-tested; this file
//! gets the sample and writes the result, never over an existing file.

mod columns;
mod paging;
mod shape;
mod write;

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::jq::Jq;
use crate::source::http::{Client, pages};
use crate::spec;

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: a name, a file, a sample that makes no spec (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The API could not be asked, or answered with an error (exit 1).
    #[error("{0}")]
    Failed(String),
}

/// Where the sample comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// One GET of this URL.
    Url(String),
    /// Saved responses (JSON documents, one after another).
    Response(PathBuf),
    /// One request as the `[source]` table of this TOML file says.
    Source(PathBuf),
}

/// One or more sample responses and where they came from.
pub struct Sample {
    pub documents: Vec<Value>,
    /// The URL or file, for messages and the spec's header.
    pub origin: String,
    /// Whether the response's `Link` header had a `rel="next"` link.
    pub link_next: bool,
    /// The `[source]` table to write: the one given with `--source`, or the URL's.
    pub source: Option<toml::Table>,
    /// The file the `[source]` table was read from.
    pub source_file: Option<PathBuf>,
}

/// Whether `name` can name a pipeline (as `check` asks of `name`).
pub fn valid_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch));
    match ok {
        true => Ok(()),
        false => Err(Error::Invalid(format!(
            "init: `{name}` is no pipeline name: letters, digits, '-', '_' and '.' only"
        ))),
    }
}

/// Refuses an output file that exists: `init` never overwrites.
pub fn refuse_existing(out: &Path) -> Result<(), Error> {
    match out.try_exists() {
        Ok(false) => Ok(()),
        _ => Err(exists(out)),
    }
}

fn exists(out: &Path) -> Error {
    Error::Invalid(format!(
        "init: {} exists; init never overwrites a file: remove it, or write elsewhere with -o",
        out.display()
    ))
}

/// The sample, from a file or one request.
pub async fn sample(from: &Input) -> Result<Sample, Error> {
    match from {
        Input::Response(path) => {
            let text = crate::preview::read_input(path)
                .map_err(|e| Error::Invalid(format!("init: reading {}: {e}", path.display())))?;
            let origin = path.display().to_string();
            Ok(Sample {
                documents: documents(&text, &origin)?,
                origin,
                link_next: false,
                source: None,
                source_file: None,
            })
        }
        Input::Url(url) => {
            let mut table = toml::Table::new();
            table.insert("url".into(), url.clone().into());
            let (document, link_next) = fetch(&table, Path::new("--url")).await?;
            Ok(Sample {
                documents: vec![document],
                origin: url.clone(),
                link_next,
                source: Some(table),
                source_file: None,
            })
        }
        Input::Source(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Invalid(format!("init: reading {}: {e}", path.display())))?;
            let whole: toml::Table = text.parse().map_err(|e| {
                Error::Invalid(format!("init: {} is not TOML: {e}", path.display()))
            })?;
            let Some(toml::Value::Table(table)) = whole.get("source") else {
                return Err(Error::Invalid(format!(
                    "init: {} has no [source] table (url, headers, auth, ... as a spec's [source])",
                    path.display()
                )));
            };
            if table.contains_key("parent") {
                return Err(Error::Invalid(format!(
                    "init: {}: [source.parent] is not followed by init; give the [source] of one parent's request",
                    path.display()
                )));
            }
            let (document, link_next) = fetch(table, path).await?;
            let origin = table
                .get("url")
                .and_then(toml::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Ok(Sample {
                documents: vec![document],
                origin,
                link_next,
                source: Some(table.clone()),
                source_file: Some(path.clone()),
            })
        }
    }
}

/// The JSON documents of a file, one after another.
fn documents(text: &str, origin: &str) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for (i, document) in serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
    {
        out.push(document.map_err(|e| {
            Error::Invalid(format!(
                "init: {origin}: document {} is not JSON: {e}",
                i + 1
            ))
        })?);
    }
    if out.is_empty() {
        return Err(Error::Invalid(format!(
            "init: {origin} holds no JSON document"
        )));
    }
    Ok(out)
}

/// One request as `table` (a `[source]` table read from `file`) says, through the source
/// component: its auth, headers and query, tried once. The response's JSON, and whether its
/// `Link` header had a `rel="next"` link.
async fn fetch(table: &toml::Table, file: &Path) -> Result<(Value, bool), Error> {
    let mut asked = table.clone();
    // A schedule is needed to check the table, never used here.
    asked
        .entry("schedule")
        .or_insert_with(|| toml::Value::Table(every("5m")));
    let mut retry = toml::Table::new();
    retry.insert("attempts".into(), 1.into());
    asked.insert("retry".into(), retry.into());
    let mut whole = toml::Table::new();
    whole.insert("source".into(), asked.into());
    let text = toml::to_string(&whole)
        .map_err(|e| Error::Invalid(format!("init: {}: {e}", file.display())))?;
    let source = spec::load_source(file, &text).map_err(|e| Error::Invalid(e.to_string()))?;
    let failed = |e: &dyn std::fmt::Display| Error::Failed(format!("init: {e}"));
    let client = Client::new(&source, None).map_err(|e| failed(&e))?;
    let bindings =
        crate::incremental::first_bindings(&source, chrono::Utc::now()).map_err(|e| failed(&e))?;
    let mut poll = client
        .poll(&source.endpoint, bindings)
        .map_err(|e| Error::Invalid(format!("init: {e}")))?;
    let never = CancellationToken::new();
    let page = match poll.next_page(&never).await {
        Ok(Some(page)) => page,
        Ok(None) => return Err(Error::Failed("init: no request was made".into())),
        Err(e) => return Err(failed(&e)),
    };
    if let Some(rule) = &page.response.ignored {
        return Err(Error::Failed(format!(
            "init: {}: the response was ignored by {rule}: it has no records to learn from",
            page.request.url
        )));
    }
    // The client checked the body is JSON.
    let document: Value = serde_json::from_slice(&page.response.body)
        .map_err(|e| Error::Failed(format!("init: {}: {e}", page.request.url)))?;
    let link_next = matches!(
        pages::next_link(&page.response.headers, "next", &[]),
        Ok(Some(_))
    );
    Ok((document, link_next))
}

/// `{ every = "<every>" }`.
fn every(every: &str) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("every".into(), every.into());
    t
}

/// The spec `sample` suggests for pipeline `name`, written for the file `out` (stdout if
/// `None`); `records` overrides the guessed records expression.
pub fn draft(
    name: &str,
    sample: &Sample,
    records: Option<&str>,
    out: Option<&Path>,
) -> Result<String, Error> {
    let first = &sample.documents[0];
    let origin = &sample.origin;
    let found = paging::find_records(first);
    let given = records.or_else(|| {
        sample
            .source
            .as_ref()
            .and_then(|s| s.get("records"))
            .and_then(toml::Value::as_str)
    });
    let expr = match (given, &found) {
        (Some(expr), _) => expr.to_owned(),
        (None, Some(path)) => paging::records_expr(path),
        (None, None) => {
            return Err(Error::Invalid(format!(
                "init: no array of objects in the response from {origin} (looked {} levels deep); name the records with --records EXPR",
                4
            )));
        }
    };
    let jq =
        Jq::compile(&expr).map_err(|e| Error::Invalid(format!("init: --records `{expr}`: {e}")))?;
    let mut records = Vec::new();
    for document in &sample.documents {
        let selected = jq.run(document).map_err(|e| {
            Error::Invalid(format!(
                "init: the records expression `{expr}` failed on the response from {origin}: {e}"
            ))
        })?;
        records.extend(selected);
    }
    if records.is_empty() {
        return Err(Error::Invalid(format!(
            "init: the records expression `{expr}` selects no record from {origin}"
        )));
    }
    if let Some(i) = records.iter().position(|r| !r.is_object()) {
        return Err(Error::Invalid(format!(
            "init: record {} of `{expr}` from {origin} is no object: {}",
            i + 1,
            crate::text::shorten(&records[i].to_string(), 80)
        )));
    }
    let shape = shape::Shape::of(&records);
    let mut columns = columns::columns(&shape);
    if columns.is_empty() {
        return Err(Error::Invalid(format!(
            "init: the records of `{expr}` from {origin} have no fields"
        )));
    }
    let key = columns::choose_key(&mut columns, &records);
    let paged = sample
        .source
        .as_ref()
        .is_some_and(|s| s.contains_key("pagination"));
    let paging = match paged {
        true => None,
        false => paging::guess(
            first,
            found.as_deref().unwrap_or_default(),
            sample.link_next,
        ),
    };
    Ok(write::spec(&write::Draft {
        name,
        origin,
        directive: out.and_then(schema_directive),
        source: sample.source.as_ref(),
        source_file: sample.source_file.as_deref(),
        records: &expr,
        records_guessed: given.is_none(),
        paging: paging.as_ref(),
        schema: &shape.schema(),
        count: records.len(),
        columns: &columns,
        key: &key,
    }))
}

/// The whole command: checks the name and that `out` (stdout if `None`) does not exist,
/// gets the sample, drafts the spec and writes it to `out`. Gives the text to print: the spec
/// for stdout, else what was written and what to do next.
pub async fn run(
    name: &str,
    from: &Input,
    records: Option<&str>,
    out: Option<&Path>,
) -> Result<String, Error> {
    valid_name(name)?;
    if let Some(out) = out {
        refuse_existing(out)?;
    }
    let sample = sample(from).await?;
    let text = draft(name, &sample, records, out)?;
    let Some(out) = out else {
        return Ok(text);
    };
    write_new(out, &text)?;
    let input = match from {
        Input::Response(path) => path.display().to_string(),
        Input::Url(_) | Input::Source(_) => "<a saved response>".to_owned(),
    };
    Ok(format!(
        "wrote {0}: review the lines marked `guessed`, then\n  aqueduct check {0}\n  aqueduct preview {0} --input {input}\n",
        out.display()
    ))
}

/// Writes `text` to `out`, which must not exist yet.
pub fn write_new(out: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists(out)),
        Err(e) => {
            return Err(Error::Invalid(format!(
                "init: creating {}: {e}",
                out.display()
            )));
        }
    };
    file.write_all(text.as_bytes())
        .map_err(|e| Error::Failed(format!("init: writing {}: {e}", out.display())))
}

/// `#:schema <path>`'s path for a spec at `out`: from its folder to the `docs/spec.schema.json`
/// of the nearest folder above that has one; `None` if none has.
fn schema_directive(out: &Path) -> Option<String> {
    let dir = std::path::absolute(out).ok()?.parent()?.to_owned();
    for (up, ancestor) in dir.ancestors().enumerate() {
        if ancestor.join("docs/spec.schema.json").is_file() {
            return Some(format!("{}docs/spec.schema.json", "../".repeat(up)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(documents: Vec<Value>) -> Sample {
        Sample {
            documents,
            origin: "sample.json".into(),
            link_next: false,
            source: None,
            source_file: None,
        }
    }

    fn json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let key = prop_oneof![
            Just("id".to_owned()),
            Just("a".to_owned()),
            Just("b-c".to_owned()),
            Just("if".to_owned()),
            Just("Ä".to_owned()),
            Just(String::new()),
            Just("1x".to_owned()),
            Just("aB".to_owned()),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            "[a-z@.]{0,6}".prop_map(Value::from),
            Just(Value::from("2026-11-01T10:00:00Z")),
            Just(Value::from("7a0eed16-9430-4d68-901f-c0d4c1c3bf00")),
        ];
        let object_key = key.clone();
        let value = leaf.prop_recursive(3, 30, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::vec((key.clone(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        });
        let record = proptest::collection::vec((object_key, value), 0..6)
            .prop_map(|kv| Value::Object(kv.into_iter().collect()));
        let records = proptest::collection::vec(record, 1..6);
        prop_oneof![
            records.clone().prop_map(Value::from),
            records.prop_map(|r| serde_json::json!({"data": r, "next": "https://x.io/?p=2"})),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Whatever the response, init either refuses it or writes a spec that `check` accepts
        /// and that maps every record of the same response to a row, without a dead letter.
        #[test]
        fn any_response_is_refused_or_makes_a_spec_that_checks_and_previews(response in json()) {
            let sample = sample(vec![response.clone()]);
            let text = match draft("p", &sample, None, None) {
                Ok(text) => text,
                // Records without fields make no columns.
                Err(Error::Invalid(m)) if m.contains("have no fields") => return Ok(()),
                Err(e) => panic!("{e}: {response}"),
            };
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.toml");
            std::fs::write(&path, &text).unwrap();
            let spec = match spec::load(&path) {
                Ok(spec) => spec,
                Err(e) => panic!("{e}\n{text}"),
            };
            let inputs = crate::preview::from_text(&spec, &response.to_string(), "sample", false, 1000).unwrap();
            proptest::prop_assert!(!inputs.is_empty());
            for outcome in crate::preview::outcomes(&spec, &inputs) {
                match outcome {
                    Ok((_, rows)) => proptest::prop_assert!(rows.iter().all(Result::is_ok), "{}\n{}", response, text),
                    Err(dl) => proptest::prop_assert!(false, "{:?}\n{}\n{}", dl.reason, response, text),
                }
            }
        }
    }

    #[test]
    fn the_schema_directive_points_at_the_nearest_docs_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docs")).unwrap();
        std::fs::create_dir_all(dir.path().join("pipelines/more")).unwrap();
        std::fs::write(dir.path().join("docs/spec.schema.json"), "{}").unwrap();
        let at = |p: &str| schema_directive(&dir.path().join(p));
        assert_eq!(
            at("pipelines/a.toml").as_deref(),
            Some("../docs/spec.schema.json")
        );
        assert_eq!(
            at("pipelines/more/a.toml").as_deref(),
            Some("../../docs/spec.schema.json")
        );
        assert_eq!(at("a.toml").as_deref(), Some("docs/spec.schema.json"));
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(schema_directive(&elsewhere.path().join("a.toml")), None);
    }

    #[test]
    fn bad_samples_are_refused_with_what_and_where() {
        let err = |s: Sample, records: Option<&str>| match draft("p", &s, records, None) {
            Err(Error::Invalid(m)) => m,
            other => panic!("{:?}", other.map(|_| ())),
        };
        let m = err(sample(vec![json!({"a": [1, 2]})]), None);
        assert!(
            m.contains("no array of objects in the response from sample.json"),
            "{m}"
        );
        let m = err(sample(vec![json!({"a": [1, 2]})]), Some(".a[]"));
        assert!(
            m.contains("record 1 of `.a[]` from sample.json is no object: 1"),
            "{m}"
        );
        let m = err(sample(vec![json!({"a": 1})]), Some(".a[]"));
        assert!(m.contains("failed on the response from sample.json"), "{m}");
        let m = err(sample(vec![json!({"a": []})]), Some(".a[]"));
        assert!(m.contains("selects no record"), "{m}");
        let m = err(sample(vec![json!([{}])]), None);
        assert!(m.contains("have no fields"), "{m}");
        assert!(matches!(valid_name("a b"), Err(Error::Invalid(_))));
        assert!(valid_name("github-issues.v2").is_ok());
        assert!(
            matches!(documents("{} nope", "f"), Err(Error::Invalid(m)) if m.contains("document 2 is not JSON"))
        );
    }
}
