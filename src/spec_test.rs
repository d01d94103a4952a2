//! `aqueduct test`: declarative cases kept with a spec, in `tests/<spec file name>` beside it
//! (`pipelines/users.toml` -> `pipelines/tests/users.toml`, out of `pipelines/*.toml`'s way). Each case gives a record and what
//! the pipeline must make of it: a row (some or all columns, as CQL values), or a dead letter
//! (stage, column or JSON pointer, words of the reason). The record goes through the same
//! checks and mapping as in `run` ([`record::through`]); no server is needed.
//!
//! ```toml
//! [[case]]
//! name = "a postcode given as a number is written as text"
//! record_file = "users/user.json"        # or record = { ... } or record_json = '''{...}'''
//! set = { "/location/postcode" = 10001 }  # edits by JSON pointer: set, null, remove
//! row = { post_code = "10001" }           # expected columns; row_nulls = ["col"] for nulls
//!                                         # rows.<table> = { ... }: one table's columns
//!
//! [[case]]
//! name = "a user without a login is dead-lettered"
//! record_file = "users/user.json"
//! remove = ["/login"]
//! dead_letter = { stage = "validate", pointer = "", reason = "\"login\" is a required property" }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::cql::{self, Row};
use crate::dead_letter::{DeadLetter, Origin, Stage};
use crate::map::Change;
use crate::record;
use crate::spec::{Spec, Table};

/// The test file of a spec: `tests/<its file name>` beside it.
pub fn file_for(spec: &Path) -> PathBuf {
    let name = spec.file_name().unwrap_or_default();
    spec.parent()
        .unwrap_or(Path::new(""))
        .join("tests")
        .join(name)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    /// The record as a TOML table.
    record: Option<toml::Table>,
    /// The record as JSON text (TOML has no null).
    record_json: Option<String>,
    /// A JSON file holding the record, relative to the test file.
    record_file: Option<PathBuf>,
    /// Edits of the record by JSON pointer, applied in this order.
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    set: BTreeMap<String, toml::Value>,
    #[serde(default)]
    null: Vec<String>,
    /// Expected columns of the row (each converted by its column's CQL type).
    row: Option<toml::Table>,
    /// Columns expected to be CQL null.
    #[serde(default)]
    row_nulls: Vec<String>,
    /// Expected columns of one table's row, by the table's name in the spec:
    /// `[case.rows.users_by_email]`. (`row` checks a column in every table that has it.)
    #[serde(default)]
    rows: BTreeMap<String, toml::Table>,
    /// Every table deletes the record's row (its `delete` condition holds) rather than
    /// writing it.
    #[serde(default)]
    deleted: bool,
    /// The expected Kafka message key.
    key: Option<String>,
    dead_letter: Option<ExpectedDeadLetter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedDeadLetter {
    stage: Stage,
    /// The table whose row failed (stages `map` and `write`), by its name in the spec.
    table: Option<String>,
    /// The column that failed (stage `map`).
    column: Option<String>,
    /// A JSON pointer among the schema violations (stage `validate`); "" is the record.
    pointer: Option<String>,
    /// Words the reason contains.
    reason: Option<String>,
}

/// One case's verdict.
pub struct Verdict {
    pub name: String,
    /// Empty when the case passed; else what differs, one line each.
    pub differences: Vec<String>,
}

/// Runs the cases of `test_file` on `spec`. Err: the file cannot be read or is malformed
/// (which is not a failing case but a broken test).
pub fn run(spec: &Spec, test_file: &Path) -> Result<Vec<Verdict>, String> {
    let where_ = test_file.display();
    let text = std::fs::read_to_string(test_file).map_err(|e| format!("{where_}: {e}"))?;
    let file: TestFile = toml::from_str(&text).map_err(|e| format!("{where_}: {e}"))?;
    if file.cases.is_empty() {
        return Err(format!("{where_}: no [[case]]"));
    }
    let dir = test_file.parent().unwrap_or(Path::new("."));
    file.cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let fail =
                |message: String| format!("{where_}: case {} ({:?}): {message}", i + 1, case.name);
            let record = input(case, dir).map_err(fail)?;
            let origin = Origin::File {
                file: test_file.display().to_string(),
                record: i + 1,
            };
            let outcome = record::through(spec, &record.to_string(), &origin);
            let differences = compare(spec, case, &outcome).map_err(fail)?;
            Ok(Verdict {
                name: case.name.clone(),
                differences,
            })
        })
        .collect()
}

/// The case's record, edits applied.
fn input(case: &Case, dir: &Path) -> Result<Value, String> {
    let mut record = match (&case.record, &case.record_json, &case.record_file) {
        (Some(table), None, None) => toml_to_json(&toml::Value::Table(table.clone())),
        (None, Some(text), None) => {
            serde_json::from_str(text).map_err(|e| format!("record_json is not JSON: {e}"))?
        }
        (None, None, Some(file)) => {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("record_file {}: {e}", path.display()))?;
            serde_json::from_str(&text)
                .map_err(|e| format!("record_file {} is not JSON: {e}", path.display()))?
        }
        _ => return Err("give exactly one of record, record_json and record_file".into()),
    };
    for pointer in &case.remove {
        crate::pointer::remove(&mut record, pointer).map_err(|e| format!("remove: {e}"))?;
    }
    let edits = case
        .set
        .iter()
        .map(|(p, v)| (p, toml_to_json(v)))
        .chain(case.null.iter().map(|p| (p, Value::Null)));
    for (pointer, value) in edits {
        crate::pointer::set(&mut record, pointer, value, false).map_err(|e| format!("set: {e}"))?;
    }
    Ok(record)
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        // A TOML date-time is written as RFC 3339, which timestamp columns take.
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// What differs between the case's expectation and the outcome; an error when the
/// expectation itself is broken (an unknown table or column, a value its type does not take).
fn compare(spec: &Spec, case: &Case, outcome: &record::Outcome) -> Result<Vec<String>, String> {
    let wants_row = case.deleted
        || case.row.is_some()
        || !case.row_nulls.is_empty()
        || !case.rows.is_empty()
        || case.key.is_some();
    let tables = &spec.cassandra.tables;
    let several = tables.len() > 1;
    let mut out = Vec::new();
    match (&case.dead_letter, wants_row) {
        (Some(_), true) => return Err("expect a row or a dead letter, not both".into()),
        (None, false) => {
            return Err(
                "expect something: row, rows, row_nulls, deleted, key or dead_letter".into(),
            );
        }
        (Some(expected), false) => match outcome {
            Err(dl) => compare_dead_letter(expected, dl, &mut out),
            Ok((_, rows)) => {
                let found = rows.iter().filter_map(|r| r.as_ref().err()).find(|dl| {
                    expected.table.is_none() || dl.table.as_ref() == expected.table.as_ref()
                });
                match found {
                    Some(dl) => compare_dead_letter(expected, dl, &mut out),
                    None => {
                        let got: Vec<String> = tables
                            .iter()
                            .zip(rows)
                            .filter_map(|(t, r)| {
                                r.as_ref().ok().map(|r| crate::preview::change_json(t, r))
                            })
                            .collect();
                        out.push(format!(
                            "expected a dead letter at stage {}, got rows: {}",
                            expected.stage.name(),
                            got.join(", ")
                        ));
                    }
                }
            }
        },
        (None, true) => match outcome {
            Err(dl) => out.push(format!(
                "expected a row, got a dead letter at stage {}: {}",
                dl.stage.name(),
                dl.reason
            )),
            Ok((key, rows)) => {
                if let Some(expected) = &case.key
                    && key.as_deref() != Some(expected.as_str())
                {
                    let got = key
                        .as_ref()
                        .map_or_else(|| "no key".to_owned(), |k| format!("{k:?}"));
                    out.push(format!("key: expected {expected:?}, got {got}"));
                }
                for (t, row) in tables.iter().zip(rows) {
                    match row {
                        Err(dl) => out.push(format!(
                            "expected a row in table {}, got a dead letter at stage {}{}: {}",
                            t.name,
                            dl.stage.name(),
                            dl.column
                                .as_ref()
                                .map(|c| format!(" (column {c})"))
                                .unwrap_or_default(),
                            dl.reason
                        )),
                        Ok(Change::Delete(_)) if !case.deleted => {
                            out.push(format!("expected a row in table {}, got a delete", t.name))
                        }
                        Ok(upsert @ Change::Upsert(_)) if case.deleted => out.push(format!(
                            "expected a delete in table {}, got a row: {}",
                            t.name,
                            crate::preview::change_json(t, upsert)
                        )),
                        Ok(_) => {}
                    }
                }
                // `row` and `row_nulls`: each column in every table that has it.
                let expected_values = case
                    .row
                    .iter()
                    .flat_map(|t| t.iter().map(|(c, v)| (c, Some(toml_to_json(v)))));
                let expected_nulls = case.row_nulls.iter().map(|c| (c, None));
                for (column, expected) in expected_values.chain(expected_nulls) {
                    let mut found = false;
                    for (t, row) in tables.iter().zip(rows) {
                        if let Ok(Change::Upsert(row)) = row {
                            found |= compare_column(
                                t,
                                row,
                                column,
                                expected.clone(),
                                several,
                                &mut out,
                            )?;
                        } else {
                            found |= t.columns.iter().any(|c| &c.name == column);
                        }
                    }
                    if !found {
                        return Err(format!("the spec has no column {column:?}"));
                    }
                }
                // `rows.<table>`: columns of that table.
                for (name, columns) in &case.rows {
                    let Some(i) = tables.iter().position(|t| &t.name == name) else {
                        return Err(format!("the spec has no table {name:?}"));
                    };
                    let Ok(Change::Upsert(row)) = &rows[i] else {
                        continue;
                    };
                    for (column, value) in columns {
                        if !compare_column(
                            &tables[i],
                            row,
                            column,
                            Some(toml_to_json(value)),
                            several,
                            &mut out,
                        )? {
                            return Err(format!("table {name} has no column {column:?}"));
                        }
                    }
                }
            }
        },
    }
    Ok(out)
}

/// Compares one column of table `t`'s row with what is expected (`None`: null), noting a
/// difference in `out`. `Ok(false)`: the table has no such column.
fn compare_column(
    t: &Table,
    row: &Row,
    column: &str,
    expected: Option<Value>,
    several: bool,
    out: &mut Vec<String>,
) -> Result<bool, String> {
    let Some(i) = t.columns.iter().position(|c| c.name == column) else {
        return Ok(false);
    };
    let expected = match expected {
        None => None,
        Some(json) => t.columns[i]
            .cql_type
            .to_cql(json)
            .map_err(|e| format!("the expected value of column {column}: {e}"))?,
    };
    if row[i] != expected {
        let at = if several {
            format!(" of table {}", t.name)
        } else {
            String::new()
        };
        out.push(format!(
            "column {column}{at}: expected {}, got {}",
            shown(&expected),
            shown(&row[i])
        ));
    }
    Ok(true)
}

fn compare_dead_letter(expected: &ExpectedDeadLetter, dl: &DeadLetter, out: &mut Vec<String>) {
    if let Some(table) = &expected.table
        && dl.table.as_ref() != Some(table)
    {
        out.push(format!(
            "table: expected {table}, got {}",
            dl.table.as_deref().unwrap_or("none")
        ));
    }
    if expected.stage != dl.stage {
        out.push(format!(
            "stage: expected {}, got {} ({})",
            expected.stage.name(),
            dl.stage.name(),
            dl.reason
        ));
    }
    if let Some(column) = &expected.column
        && dl.column.as_ref() != Some(column)
    {
        out.push(format!(
            "column: expected {column}, got {}",
            dl.column.as_deref().unwrap_or("none")
        ));
    }
    if let Some(pointer) = &expected.pointer
        && !dl.violations.iter().any(|v| &v.pointer == pointer)
    {
        let got: Vec<&str> = dl.violations.iter().map(|v| v.pointer.as_str()).collect();
        out.push(format!(
            "pointer: expected a violation at {pointer:?}, got {got:?}"
        ));
    }
    if let Some(words) = &expected.reason
        && !dl.reason.contains(words.as_str())
    {
        out.push(format!(
            "reason: expected it to contain {words:?}, got {:?}",
            dl.reason
        ));
    }
}

fn shown(v: &Option<scylla::value::CqlValue>) -> String {
    v.as_ref()
        .map_or_else(|| "null".to_owned(), |v| cql::to_json(v).to_string())
}

/// The report of one spec's cases: a line per case, the differences of a failed one indented.
pub fn report(verdicts: &[Verdict]) -> String {
    let mut s = String::new();
    for v in verdicts {
        let status = if v.differences.is_empty() {
            "ok  "
        } else {
            "FAIL"
        };
        let _ = writeln!(s, "  {status} {}", v.name);
        for d in &v.differences {
            let _ = writeln!(s, "         {d}");
        }
    }
    s
}
