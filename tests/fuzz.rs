//! Fuzzing with proptest (cargo-fuzz needs a nightly toolchain this project does not use):
//! the inputs nobody expects must not crash aqueduct. Three targets, each a property over
//! generated input:
//!
//! - `spec`: `aqueduct check`'s loading of a spec, from the shipped specs with lines cut,
//!   doubled or replaced and from arbitrary text: a result, never a panic;
//! - `records`: a record of arbitrary JSON through both halves of the shipped specs (schema,
//!   key, jq mapping, CQL conversion): a row or a dead letter, and every row's values convert
//!   back to the JSON their column takes;
//! - `envelope`: a dead letter of an arbitrary record written and read back by `replay` gives
//!   the record again; arbitrary bytes on the dead-letter topic are never a panic.
//!
//! `PROPTEST_CASES=N cargo test --test fuzz` runs longer; CI runs the defaults below.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::{Value, json};

use aqueduct::cql;
use aqueduct::dead_letter::{DeadLetter, Origin, Stage};
use aqueduct::pipeline::replay::{Original, original};
use aqueduct::record;
use aqueduct::spec::{self, Spec};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped(name: &str) -> Spec {
    spec::load(&repo().join("pipelines").join(name)).expect("a shipped spec loads")
}

// Loaded once per test thread (a spec compiles its schema and jq).
thread_local! {
    static USERS: Spec = shipped("users.toml");
    static QUAKES: Spec = shipped("earthquakes.toml");
}

/// Both shipped specs on `users`-shaped and `quakes`-shaped records.
fn through_both(user: &Value, quake: &Value) {
    USERS.with(|spec| through(spec, user));
    QUAKES.with(|spec| through(spec, quake));
}

/// Cases per target: `PROPTEST_CASES` when set, else `default`.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

/// Arbitrary JSON: scalars of every kind (huge and negative numbers, non-ASCII and empty
/// strings), arrays and objects nested a few levels, keys that collide with the specs' own.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("login".to_owned()),
        Just("uuid".to_owned()),
        Just("location".to_owned()),
        Just("postcode".to_owned()),
        Just("properties".to_owned()),
        Just("time".to_owned()),
        Just("geometry".to_owned()),
        Just("coordinates".to_owned()),
        "[a-zA-Z_éß中]{0,6}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::from),
        Just(json!("7a0eed16-9430-4d68-901f-c0d4c1c3bf00")),
        Just(json!("1992-03-08T15:13:16.688Z")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A real record with one part replaced by arbitrary JSON, so the schema often passes and the
/// mapping meets the odd value.
fn near_real(base: Value) -> impl Strategy<Value = Value> {
    let paths = leaf_paths(&base);
    (0..paths.len(), json()).prop_map(move |(i, value)| {
        let mut record = base.clone();
        if let Some(slot) = record.pointer_mut(&paths[i]) {
            *slot = value;
        }
        record
    })
}

fn leaf_paths(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| walk(v, format!("{at}/{k}"), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| walk(v, format!("{at}/{i}"), out)),
            _ => {}
        }
        out.push(at);
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("pipelines/tests").join(path)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Runs a record through both halves; every row converts back to the JSON its columns take.
fn through(spec: &Spec, record: &Value) {
    let origin = Origin::File {
        file: "fuzz".into(),
        record: 1,
    };
    let Ok((_, rows)) = record::through(spec, &record.to_string(), &origin) else {
        return;
    };
    for (table, row) in spec.cassandra.tables.iter().zip(&rows) {
        let Ok(aqueduct::map::Change::Upsert(row)) = row else {
            continue;
        };
        for (column, value) in table.columns.iter().zip(row) {
            if let Some(value) = value {
                let back = column.cql_type.to_cql(cql::to_json(value));
                assert_eq!(
                    back.as_ref(),
                    Ok(&Some(value.clone())),
                    "column {}",
                    column.name
                );
            }
        }
    }
}

/// A copy of a shipped spec in a temporary folder (with its schema), edited line by line.
fn spec_variants() -> impl Strategy<Value = String> {
    let users = std::fs::read_to_string(repo().join("pipelines/users.toml")).unwrap();
    let quakes = std::fs::read_to_string(repo().join("pipelines/earthquakes.toml")).unwrap();
    let edit = prop_oneof![
        Just(None),
        "\\PC{0,40}".prop_map(Some),
        Just(Some("[cassandra.columns]".to_owned())),
        Just(Some(
            "x = { type = \"map<int, list<timeuuid>>\", jq = \".[\" }".to_owned()
        )),
        Just(Some("partitions = -1".to_owned())),
        Just(Some("schedule = { cron = \"61 * * * * *\" }".to_owned())),
    ];
    (
        prop_oneof![Just(users), Just(quakes)],
        prop::collection::vec((any::<prop::sample::Index>(), edit), 1..4),
    )
        .prop_map(|(text, edits)| {
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            for (at, edit) in edits {
                let i = at
                    .index(lines.len().max(1))
                    .min(lines.len().saturating_sub(1));
                match edit {
                    None if !lines.is_empty() => {
                        lines.remove(i);
                    }
                    None => {}
                    Some(line) => lines.insert(i, line),
                }
            }
            lines.join("\n")
        })
}

fn load_text(text: &str) -> Result<Spec, spec::SpecErrors> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::copy(
        repo().join("pipelines/schemas/randomuser-user.json"),
        dir.path().join("schemas/randomuser-user.json"),
    )
    .unwrap();
    let path: PathBuf = dir.path().join("spec.toml");
    std::fs::write(&path, text).unwrap();
    spec::load(&path)
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn spec(text in spec_variants()) {
        // Ok or a list of located errors; never a panic, never an empty error list.
        if let Err(errors) = load_text(&text) {
            prop_assert!(!errors.0.is_empty());
            prop_assert!(!errors.to_string().is_empty());
        }
    }

    #[test]
    fn spec_of_arbitrary_text(text in "\\PC{0,400}") {
        let _ = load_text(&text);
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn records(record in json()) {
        through_both(&record, &record);
    }

    #[test]
    fn records_near_real(
        user in near_real(fixture("users/user.json")),
        quake in near_real(fixture("earthquakes/quake.json")),
    ) {
        through_both(&user, &quake);
    }

    #[test]
    fn envelope(record in json(), reason in "\\PC{0,40}") {
        let dl = DeadLetter::new("p", Stage::Map, reason, record.clone(), Origin::Api { url: "u".into() });
        match original(&dl.to_json(), None) {
            Original::Record(text) => {
                let back: Value = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(back, record);
            }
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn envelope_of_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = original(&bytes, None);
    }
}
