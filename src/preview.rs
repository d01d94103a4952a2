//! `aqueduct preview`: the rows a spec would write and the records it would dead-letter,
//! without writing anything or connecting to Kafka or Cassandra. Records come from one poll
//! of the API or from a file of saved responses (or of records); each goes through the same
//! checks and mapping as in `run` ([`record::through`]).

use std::io::{self, Write};
use std::path::Path;

use clap::ValueEnum;
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::cql::{self, Row};
use crate::dead_letter::{DeadLetter, Origin};
use crate::incremental;
use crate::map::Change;
use crate::record::{self, Outcome};
use crate::source::http::{Bindings, Client};
use crate::spec::{Column, Spec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table (the default on a terminal).
    Table,
    /// One JSON object per line: `{"key", "row"}` or `{"dead_letter"}` (the default otherwise).
    Json,
}

/// A record to preview: its JSON text and where it came from.
pub struct Input {
    pub text: String,
    pub origin: Origin,
}

/// The records of one poll of the spec's API (every page, as `run` polls), at most `limit`.
/// An incremental source asks as a new pipeline's first poll does (the initial cursor, the
/// first window).
pub async fn from_api(spec: &Spec, limit: usize) -> Result<Vec<Input>, String> {
    let Some(source) = &spec.source else {
        return Err(format!(
            "{} has no [source] to ask: preview a file of its topic's records with --input FILE",
            spec.path.display()
        ));
    };
    let client = Client::new(source, None).map_err(|e| e.to_string())?;
    let first =
        incremental::first_bindings(source, chrono::Utc::now()).map_err(|e| e.to_string())?;
    let never = CancellationToken::new();
    // With [source.parent], the source's request for each parent in turn.
    let polls = match &source.parent {
        None => vec![first],
        Some(parent) => crate::source::http::parents::list(&client, parent, &never)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(_, parent)| Bindings {
                parent,
                ..first.clone()
            })
            .collect(),
    };
    let mut out = Vec::new();
    for bindings in polls {
        let mut poll = client
            .poll(&source.endpoint, bindings)
            .map_err(|e| e.to_string())?;
        while out.len() < limit {
            let Some(page) = poll.next_page(&never).await.map_err(|e| e.to_string())? else {
                break;
            };
            let records = poll.records(&page).map_err(|e| e.to_string())?;
            let count = records.len();
            let url = page.request.url.to_string();
            out.extend(
                records
                    .into_iter()
                    .take(limit - out.len())
                    .map(|text| Input {
                        text: text.into_owned(),
                        origin: Origin::Api { url: url.clone() },
                    }),
            );
            poll.advance(&page, count).map_err(|e| e.to_string())?;
        }
    }
    Ok(out)
}

/// The records of `text` (a file's content), at most `limit`: each JSON document in it is an
/// API response whose records the spec's `records` expression selects, or with `records_only`
/// a record itself. Documents may follow one another (JSON lines, or concatenated).
pub fn from_text(
    spec: &Spec,
    text: &str,
    file: &str,
    records_only: bool,
    limit: usize,
) -> Result<Vec<Input>, String> {
    let mut out = Vec::new();
    let documents = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    for (i, document) in documents.enumerate() {
        if out.len() >= limit {
            break;
        }
        let document =
            document.map_err(|e| format!("{file}: document {} is not JSON: {e}", i + 1))?;
        // Without a source, the records are the topic's: each document is one.
        let texts = if let (false, Some(source)) = (records_only, &spec.source) {
            source
                .endpoint
                .records
                .records(document.get().as_bytes())
                .map_err(|message| {
                    format!(
                        "{file}: the records expression `{}` failed on document {}: {message} (use --records if the file holds records, not API responses)",
                        source.endpoint.records.code(),
                        i + 1
                    )
                })?
        } else {
            vec![document.get().into()]
        };
        for text in texts {
            if out.len() >= limit {
                break;
            }
            let number = out.len() + 1;
            out.push(Input {
                text: text.into_owned(),
                origin: Origin::File {
                    file: file.to_owned(),
                    record: number,
                },
            });
        }
    }
    Ok(out)
}

/// Runs every input through both halves.
pub fn outcomes(spec: &Spec, inputs: &[Input]) -> Vec<Outcome> {
    inputs
        .iter()
        .map(|input| record::through(spec, &input.text, &input.origin))
        .collect()
}

/// Writes the rows, then the dead letters, then a one-line count.
pub fn print(
    spec: &Spec,
    outcomes: &[Outcome],
    format: Format,
    out: &mut impl Write,
) -> io::Result<()> {
    match format {
        Format::Json => {
            for outcome in outcomes {
                let lines: Vec<serde_json::Result<String>> = match outcome {
                    Ok((key, rows)) => spec
                        .cassandra
                        .tables
                        .iter()
                        .zip(rows)
                        .map(|(table, row)| match row {
                            Ok(Change::Upsert(row)) => serde_json::to_string(&RowLine {
                                key,
                                table: &table.name,
                                row: Columns(&table.columns, row),
                            }),
                            Ok(Change::Delete(row)) => serde_json::to_string(&DeleteLine {
                                key,
                                table: &table.name,
                                delete: PrimaryKey(table, row),
                            }),
                            Err(dead_letter) => {
                                serde_json::to_string(&DeadLetterLine { dead_letter })
                            }
                        })
                        .collect(),
                    Err(dead_letter) => {
                        vec![serde_json::to_string(&DeadLetterLine { dead_letter })]
                    }
                };
                for line in lines {
                    writeln!(out, "{}", line.map_err(io::Error::other)?)?;
                }
            }
        }
        Format::Table => print_tables(spec, outcomes, out)?,
    }
    Ok(())
}

/// Every change of `outcomes`: the record's number (from 1), the table's index in the spec,
/// the change.
fn changes(outcomes: &[Outcome]) -> impl Iterator<Item = (usize, usize, &Change)> {
    outcomes.iter().enumerate().flat_map(|(i, o)| {
        let rows = o.as_ref().map(|(_, rows)| rows.as_slice()).unwrap_or(&[]);
        rows.iter()
            .enumerate()
            .filter_map(move |(t, row)| row.as_ref().ok().map(|row| (i + 1, t, row)))
    })
}

/// Every row to write of `outcomes`, as [`changes`] gives them.
fn rows(outcomes: &[Outcome]) -> impl Iterator<Item = (usize, usize, &Row)> {
    changes(outcomes).filter_map(|(i, t, change)| match change {
        Change::Upsert(row) => Some((i, t, row)),
        Change::Delete(_) => None,
    })
}

/// Every dead letter of `outcomes`, a whole record's or one table's row's, with the record's
/// number (from 1).
fn dead_letters(outcomes: &[Outcome]) -> impl Iterator<Item = (usize, &DeadLetter)> {
    outcomes.iter().enumerate().flat_map(|(i, o)| {
        let (whole, rows) = match o {
            Ok((_, rows)) => (None, rows.as_slice()),
            Err(dl) => (Some(&**dl), &[][..]),
        };
        let of_rows = rows
            .iter()
            .filter_map(|row| row.as_ref().err().map(|dl| &**dl));
        whole.into_iter().chain(of_rows).map(move |dl| (i + 1, dl))
    })
}

/// A one-line count of what `outcomes` came to, e.g. `50 records, 47 rows, 3 dead letters
/// (validate 3)`.
pub fn summary(outcomes: &[Outcome]) -> String {
    let rows = rows(outcomes).count();
    let deletes = changes(outcomes).count() - rows;
    let mut stages: Vec<(&str, usize)> = Vec::new();
    let mut dead = 0;
    for (_, dl) in dead_letters(outcomes) {
        dead += 1;
        match stages.iter_mut().find(|(s, _)| *s == dl.stage.name()) {
            Some((_, n)) => *n += 1,
            None => stages.push((dl.stage.name(), 1)),
        }
    }
    let mut line = format!(
        "{}, {}, {}",
        count(outcomes.len(), "record"),
        count(rows, "row"),
        count(dead, "dead letter")
    );
    if deletes > 0 {
        line.push_str(&format!(", {}", count(deletes, "delete")));
    }
    if !stages.is_empty() {
        let by_stage: Vec<String> = stages.iter().map(|(s, n)| format!("{s} {n}")).collect();
        line.push_str(&format!(" ({})", by_stage.join(", ")));
    }
    line
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn print_tables(spec: &Spec, outcomes: &[Outcome], out: &mut impl Write) -> io::Result<()> {
    let several = spec.cassandra.tables.len() > 1;
    for (t, spec_table) in spec.cassandra.tables.iter().enumerate() {
        let rows: Vec<(usize, &Row)> = rows(outcomes)
            .filter(|(_, of, _)| *of == t)
            .map(|(number, _, row)| (number, row))
            .collect();
        if several && !rows.is_empty() {
            writeln!(out, "table {}:", spec_table.name)?;
        }
        print_rows(&spec_table.columns, &rows, out)?;
    }
    let deletes: Vec<[String; 3]> = changes(outcomes)
        .filter_map(|(number, t, change)| match change {
            Change::Delete(row) => {
                let table = &spec.cassandra.tables[t];
                let key = serde_json::to_string(&PrimaryKey(table, row)).unwrap_or_default();
                Some([number.to_string(), table.name.clone(), key])
            }
            Change::Upsert(_) => None,
        })
        .collect();
    if !deletes.is_empty() {
        writeln!(out, "deletes:")?;
        let mut table = new_table();
        table.set_header(["#", "table", "primary key"]);
        for delete in deletes {
            table.add_row(delete);
        }
        writeln!(out, "{table}")?;
    }
    let dead: Vec<(usize, &DeadLetter)> = dead_letters(outcomes).collect();
    if !dead.is_empty() {
        writeln!(out, "dead letters:")?;
        let mut table = new_table();
        table.set_header(["#", "stage", "where", "reason"]);
        for (number, dl) in dead {
            table.add_row([
                number.to_string(),
                dl.stage.name().to_owned(),
                place(dl),
                dl.reason.clone(),
            ]);
        }
        writeln!(out, "{table}")?;
    }
    Ok(())
}

/// One table's rows, each with its record's number.
fn print_rows(columns: &[Column], rows: &[(usize, &Row)], out: &mut impl Write) -> io::Result<()> {
    if !rows.is_empty() {
        let mut table = new_table();
        let mut header = vec!["#".to_owned()];
        header.extend(columns.iter().map(|c| c.name.clone()));
        table.set_header(header);
        for (number, row) in rows {
            let mut cells = vec![number.to_string()];
            cells.extend(row.iter().map(cell));
            table.add_row(cells);
        }
        if fits(&mut table) {
            writeln!(out, "{table}")?;
        } else {
            // Too wide for the terminal: a record at a time, a line per column (psql's \x).
            for (number, row) in rows {
                let mut table = new_table();
                table.set_header(["#", &number.to_string()]);
                for (column, value) in columns.iter().zip(row.iter()) {
                    table.add_row([column.name.clone(), cell(value)]);
                }
                writeln!(out, "{table}")?;
            }
        }
    }
    Ok(())
}

/// Where a dead letter's record failed: the table and column, or the schema violations'
/// pointers.
fn place(dl: &DeadLetter) -> String {
    let column = dl.column.as_ref().map(|c| format!("column {c}"));
    match (&dl.table, column) {
        (Some(table), Some(column)) => return format!("table {table}, {column}"),
        (Some(table), None) => return format!("table {table}"),
        (None, Some(column)) => return column,
        (None, None) => {}
    }
    let pointers: Vec<String> = dl
        .violations
        .iter()
        .map(|v| {
            if v.pointer.is_empty() {
                "(record)".to_owned()
            } else {
                v.pointer.clone()
            }
        })
        .collect();
    pointers.join(" ")
}

/// Whether `table` fits the terminal unwrapped (always, when not on a terminal).
fn fits(table: &mut Table) -> bool {
    let Some(width) = table.width() else {
        return true;
    };
    table.set_content_arrangement(ContentArrangement::Disabled);
    let widest = table.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    table.set_content_arrangement(ContentArrangement::Dynamic);
    widest <= usize::from(width)
}

fn new_table() -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    table
}

/// A value as a table cell: text as is, null as `null`, anything else as its JSON.
fn cell(v: &Option<scylla::value::CqlValue>) -> String {
    match v.as_ref().map(cql::to_json) {
        None => "null".to_owned(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

#[derive(Serialize)]
struct RowLine<'a> {
    key: &'a Option<String>,
    /// The spec's name of the table.
    table: &'a str,
    row: Columns<'a>,
}

#[derive(Serialize)]
struct DeleteLine<'a> {
    key: &'a Option<String>,
    /// The spec's name of the table.
    table: &'a str,
    delete: PrimaryKey<'a>,
}

#[derive(Serialize)]
struct DeadLetterLine<'a> {
    dead_letter: &'a DeadLetter,
}

/// A change to `table` as the text of a JSON object: a row's columns in spec order, or
/// `{"delete": <primary key>}`.
pub fn change_json(table: &crate::spec::Table, change: &Change) -> String {
    match change {
        Change::Upsert(row) => serde_json::to_string(&Columns(&table.columns, row)),
        Change::Delete(row) => {
            serde_json::to_string(&serde_json::json!({ "delete": PrimaryKey(table, row) }))
        }
    }
    .unwrap_or_default()
}

/// The primary key of a [`Change::Delete`] as a JSON object, partition key first.
struct PrimaryKey<'a>(&'a crate::spec::Table, &'a Row);

impl Serialize for PrimaryKey<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let PrimaryKey(table, row) = self;
        // The write time, when the table takes one from the record, comes first.
        let values = &row[usize::from(table.writetime.is_some())..];
        let mut map = serializer.serialize_map(Some(values.len()))?;
        for (i, value) in table.key_columns().zip(values) {
            map.serialize_entry(&table.columns[i].name, &value.as_ref().map(cql::to_json))?;
        }
        map.end()
    }
}

/// A row as a JSON object, its columns in spec order.
struct Columns<'a>(&'a [Column], &'a Row);

impl Serialize for Columns<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (column, value) in self.0.iter().zip(self.1) {
            map.serialize_entry(&column.name, &value.as_ref().map(cql::to_json))?;
        }
        map.end()
    }
}

/// Reads `path`, or stdin for `-`.
pub fn read_input(path: &Path) -> io::Result<String> {
    if path == Path::new("-") {
        io::read_to_string(io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
}
