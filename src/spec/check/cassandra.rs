//! `[cassandra]`: names, replication, consistency, and per table (one in `[cassandra]`, or
//! several in `[cassandra.tables.<name>]`) its columns (CQL type, jq, static kind check) and
//! primary key.

use std::collections::BTreeMap;
use std::path::Path;

use scylla::statement::Consistency;

use super::{Checker, security};
use crate::cql::{CqlType, JsonKind, Udt};
use crate::spec::raw::{RawCassandra, RawColumn, RawIndex, RawTtl, Scalar};
use crate::spec::{Cassandra, Column, Index, Nulls, Table, Ttl, infer};

/// Cassandra's largest TTL: 20 years.
const MAX_TTL_SECS: u64 = 630_720_000;

/// CQL identifiers aqueduct accepts: they are always double-quoted in statements, so this
/// is about readable names and the 48-character limit, not about injection.
fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 48
        && chars.next().is_some_and(|ch| ch.is_ascii_alphabetic())
        && chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

fn consistency(name: &str) -> Option<Consistency> {
    Some(match name.to_ascii_lowercase().as_str() {
        "any" => Consistency::Any,
        "one" => Consistency::One,
        "two" => Consistency::Two,
        "three" => Consistency::Three,
        "quorum" => Consistency::Quorum,
        "all" => Consistency::All,
        "local_quorum" => Consistency::LocalQuorum,
        "each_quorum" => Consistency::EachQuorum,
        "local_one" => Consistency::LocalOne,
        _ => return None,
    })
}

pub(super) fn cassandra(c: &mut Checker, raw: RawCassandra, base: &Path) -> Option<Cassandra> {
    if raw.contact_points.is_empty() {
        c.err(
            "cassandra.contact_points",
            "name at least one node, e.g. [\"127.0.0.1:9042\"]",
        );
    }
    let contact_points = raw
        .contact_points
        .iter()
        .map(|p| {
            if p.contains(':') {
                p.clone()
            } else {
                format!("{p}:9042")
            }
        })
        .collect();
    if !valid_identifier(&raw.keyspace) {
        c.err("cassandra.keyspace", not_a_name(&raw.keyspace));
    }
    let replication = replication(c, raw.replication);
    let consistency = consistency_of(c, "cassandra.consistency", &raw.consistency);
    let ttl_default = raw.ttl.and_then(|t| ttl(c, "cassandra.ttl", t));
    if raw.concurrency == 0 {
        c.err("cassandra.concurrency", "must be at least 1");
    }
    if raw.request_timeout.is_zero() {
        c.err("cassandra.request_timeout", "must be longer than 0s");
    }
    let password_given = raw.password.is_some() || raw.password_file.is_some();
    let password = security::secret(
        c,
        "cassandra.password",
        raw.password,
        raw.password_file,
        base,
    );
    let tls = raw.tls.map(|tls| security::tls(c, "cassandra", tls, base));
    let unsynced_window = match raw.unsynced_window.as_str() {
        "auto" => None,
        text => humantime::parse_duration(text)
            .map_err(|e| {
                c.err(
                    "cassandra.unsynced_window",
                    format!("`{text}` is neither \"auto\" nor a duration like \"10s\": {e}"),
                )
            })
            .ok(),
    };
    let credentials = match (raw.username, password) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        // The password was set but could not be read: that error says so.
        (Some(_), None) if password_given => None,
        _ => {
            c.err(
                "cassandra",
                "set both `username` and `password` (or `password_file`), or neither",
            );
            None
        }
    };
    let nulls = nulls_of(c, "cassandra.nulls", raw.nulls.as_deref()).unwrap_or(Nulls::Null);
    let udts = udts(c, raw.types);
    let defaults = Defaults {
        udts: &udts,
        delete: raw.delete.as_deref(),
        keyspace: &raw.keyspace,
        nulls,
        writetime: raw.writetime.as_deref(),
        consistency: consistency.unwrap_or(Consistency::LocalQuorum),
        ttl: ttl_default.as_ref(),
        create: raw.create,
    };
    let one_table = raw.table.is_some()
        || !raw.partition_key.is_empty()
        || !raw.clustering_key.is_empty()
        || !raw.columns.is_empty()
        || !raw.indexes.is_empty();
    let mut tables = Vec::new();
    if one_table && !raw.tables.is_empty() {
        c.err(
            "cassandra.tables",
            "set either [cassandra.tables.<name>] or table, partition_key and columns in [cassandra], not both",
        );
    } else if one_table || raw.tables.is_empty() {
        let name = raw.table.unwrap_or_else(|| {
            c.err(
                "cassandra.table",
                "name the table that receives the rows (or several in [cassandra.tables.<name>])",
            );
            String::new()
        });
        let parts = Parts {
            keyspace: None,
            table: Some(name.clone()),
            consistency: None,
            ttl: None,
            writetime: None,
            nulls: None,
            delete: None,
            create: None,
            partition_key: raw.partition_key,
            clustering_key: raw.clustering_key,
            columns: raw.columns,
            indexes: raw.indexes,
        };
        tables.push(table(c, "cassandra", name, parts, &defaults));
    } else {
        for (name, raw) in raw.tables {
            let at = format!("cassandra.tables.{name}");
            if !valid_identifier(&name) {
                c.err(&at, format!("`{name}` is not a valid table name in the spec (a letter, then letters, digits or '_')"));
            }
            let parts = Parts {
                keyspace: raw.keyspace,
                table: raw.table,
                consistency: raw.consistency,
                ttl: raw.ttl,
                writetime: raw.writetime,
                nulls: raw.nulls,
                delete: raw.delete,
                create: raw.create,
                partition_key: raw.partition_key,
                clustering_key: raw.clustering_key,
                columns: raw.columns,
                indexes: raw.indexes,
            };
            tables.push(table(c, &at, name, parts, &defaults));
        }
        // In the file's order: DDL, preview and metrics read as written.
        tables.sort_by_key(|t| {
            c.locator
                .key_position(&format!("cassandra.tables.{}", t.name))
                .unwrap_or((usize::MAX, 0))
        });
        let mut index_names: Vec<(&str, &str, &str)> = Vec::new();
        for t in &tables {
            for index in &t.indexes {
                if let Some((_, _, other)) = index_names
                    .iter()
                    .find(|(ks, name, _)| *ks == t.keyspace && *name == index.name)
                {
                    c.err(
                        &format!("cassandra.tables.{}.indexes.{}", t.name, index.name),
                        format!("[cassandra.tables.{other}] has an index of that name in keyspace {} (index names are per keyspace)", t.keyspace),
                    );
                }
                index_names.push((&t.keyspace, &index.name, &t.name));
            }
        }
        for (i, t) in tables.iter().enumerate() {
            if let Some(other) = tables[..i]
                .iter()
                .find(|o| o.keyspace == t.keyspace && o.table == t.table)
            {
                c.err(
                    &format!("cassandra.tables.{}", t.name),
                    format!(
                        "writes {}.{} as [cassandra.tables.{}] does",
                        t.keyspace, t.table, other.name
                    ),
                );
            }
        }
    }
    Some(Cassandra {
        contact_points,
        replication: replication?,
        concurrency: raw.concurrency,
        request_timeout: raw.request_timeout,
        credentials,
        tls,
        unsynced_window,
        tables,
    })
}

fn not_a_name(value: &str) -> String {
    format!("`{value}` is not a valid name (a letter, then letters, digits or '_'; at most 48)")
}

fn consistency_of(c: &mut Checker, key: &str, name: &str) -> Option<Consistency> {
    let found = consistency(name);
    if found.is_none() {
        c.err(key, format!("`{name}` is not one of any, one, two, three, quorum, all, local_quorum, each_quorum, local_one"));
    }
    found
}

/// A time to live as the spec gives it: a duration in Cassandra's range, or a compiled jq
/// expression that must be able to yield a number.
fn ttl(c: &mut Checker, key: &str, ttl: RawTtl) -> Option<RawTtlChecked> {
    match ttl {
        RawTtl::Fixed(d) => {
            if d.as_secs() == 0 || d.as_secs() > MAX_TTL_SECS {
                c.err(key, "must be between 1s and 20 years (Cassandra's limit)");
            }
            Some(RawTtlChecked::Fixed(d))
        }
        RawTtl::Jq { jq: code } => {
            let key = format!("{key}.jq");
            c.jq(&key, &code)?;
            if let Some(kinds) = infer::kinds(&code)
                && !kinds
                    .iter()
                    .any(|k| matches!(k, JsonKind::Number | JsonKind::Null))
            {
                c.err(
                    &key,
                    format!("a time to live is a number of seconds, but `{code}` cannot yield one"),
                );
            }
            Some(RawTtlChecked::Jq(code))
        }
    }
}

/// A checked time to live, compiled for each table that takes it (`Jq` is compiled per use).
#[derive(Debug, Clone)]
enum RawTtlChecked {
    Fixed(std::time::Duration),
    Jq(String),
}

impl RawTtlChecked {
    fn build(&self) -> Option<Ttl> {
        Some(match self {
            RawTtlChecked::Fixed(d) => Ttl::Fixed(*d),
            RawTtlChecked::Jq(code) => Ttl::Jq(crate::jq::Jq::compile(code).ok()?),
        })
    }
}

/// `nulls = "null" | "unset"` (`None`: not set, or not one of them, which is reported).
fn nulls_of(c: &mut Checker, key: &str, text: Option<&str>) -> Option<Nulls> {
    match text? {
        "null" => Some(Nulls::Null),
        "unset" => Some(Nulls::Unset),
        other => {
            c.err(
                key,
                format!(
                    "`{other}` is not {}",
                    super::one_of(crate::spec::raw::NULLS)
                ),
            );
            None
        }
    }
}

/// A condition: compiled, and able to yield a boolean.
fn condition(c: &mut Checker, key: &str, code: &str) -> Option<crate::jq::Jq> {
    let jq = c.jq(key, code)?;
    if let Some(kinds) = infer::kinds(code)
        && !kinds
            .iter()
            .any(|k| matches!(k, JsonKind::Bool | JsonKind::Null))
    {
        c.err(
            key,
            format!("a condition yields true or false, but `{code}` cannot"),
        );
    }
    Some(jq)
}

/// A write time expression: compiled, and held against the JSON a timestamp takes.
fn writetime(c: &mut Checker, key: &str, code: &str) -> Option<crate::jq::Jq> {
    let jq = c.jq(key, code)?;
    if let Some(kinds) = infer::kinds(code) {
        let yields: Vec<JsonKind> = kinds.into_iter().filter(|k| *k != JsonKind::Null).collect();
        if !yields.is_empty() && !yields.iter().any(|k| CqlType::Timestamp.accepts(*k)) {
            let what: Vec<String> = yields.iter().map(|k| k.to_string()).collect();
            c.err(
                key,
                format!(
                    "a write time is a timestamp (RFC 3339 or epoch milliseconds), but `{code}` can only yield {}",
                    what.join(" or ")
                ),
            );
        }
    }
    Some(jq)
}

/// What a table takes from `[cassandra]` when it does not say.
struct Defaults<'a> {
    /// The spec's user-defined types, in no keyspace yet.
    udts: &'a [Udt],
    delete: Option<&'a str>,
    keyspace: &'a str,
    nulls: Nulls,
    writetime: Option<&'a str>,
    consistency: Consistency,
    ttl: Option<&'a RawTtlChecked>,
    create: bool,
}

/// A table's keys as the file gives them, in either form.
struct Parts {
    keyspace: Option<String>,
    table: Option<String>,
    consistency: Option<String>,
    ttl: Option<RawTtl>,
    writetime: Option<String>,
    nulls: Option<String>,
    delete: Option<String>,
    create: Option<bool>,
    partition_key: Vec<String>,
    clustering_key: Vec<String>,
    columns: BTreeMap<String, RawColumn>,
    indexes: BTreeMap<String, RawIndex>,
}

/// Checks one table; `at` is its key path (`cassandra` or `cassandra.tables.<name>`).
fn table(c: &mut Checker, at: &str, name: String, raw: Parts, defaults: &Defaults) -> Table {
    let keyspace = raw.keyspace.unwrap_or_else(|| defaults.keyspace.to_owned());
    if keyspace != defaults.keyspace && !valid_identifier(&keyspace) {
        c.err(&format!("{at}.keyspace"), not_a_name(&keyspace));
    }
    let table = raw.table.unwrap_or_else(|| name.clone());
    if !table.is_empty() && !valid_identifier(&table) {
        c.err(&format!("{at}.table"), not_a_name(&table));
    }
    let consistency = match &raw.consistency {
        Some(text) => consistency_of(c, &format!("{at}.consistency"), text),
        None => None,
    };
    let own_ttl = raw.ttl.and_then(|t| ttl(c, &format!("{at}.ttl"), t));
    let delete = match (&raw.delete, defaults.delete) {
        (Some(code), _) => condition(c, &format!("{at}.delete"), code),
        (None, Some(code)) => condition(c, "cassandra.delete", code),
        (None, None) => None,
    };
    let writetime = match (&raw.writetime, defaults.writetime) {
        (Some(code), _) => writetime(c, &format!("{at}.writetime"), code),
        (None, Some(code)) => writetime(c, "cassandra.writetime", code),
        (None, None) => None,
    };
    // The key is checked against every column named, even one whose expression is broken.
    let types: Vec<Udt> = defaults
        .udts
        .iter()
        .map(|u| u.in_keyspace(&keyspace))
        .collect();
    let declared: Vec<(String, Option<CqlType>)> = raw
        .columns
        .iter()
        .map(|(name, col)| {
            let t = CqlType::parse_with(&col.cql_type, &types).ok();
            (name.clone(), t)
        })
        .collect();
    let (partition_key, clustering_key) =
        primary_key(c, at, &raw.partition_key, &raw.clustering_key, &declared);
    let columns = columns(c, at, raw.columns, &types);
    let indexes = raw
        .indexes
        .into_iter()
        .map(|(name, index)| {
            let key = format!("{at}.indexes.{name}");
            if !valid_identifier(&name) {
                c.err(&key, format!("`{name}` is not a valid index name"));
            }
            if !declared.iter().any(|(col, _)| *col == index.column) {
                c.err(
                    &format!("{key}.column"),
                    format!("column `{}` is not in {at}.columns", index.column),
                );
            }
            let options = index
                .options
                .into_iter()
                .filter_map(|(option, value)| {
                    // Written into the statement as quoted text: plain words only.
                    let value = value.to_string();
                    let plain = |t: &str| {
                        t.chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
                    };
                    if !plain(&option) || !plain(&value) {
                        c.err(
                            &format!("{key}.options.{option}"),
                            "option names and values are letters, digits, '_', '.' or '-'",
                        );
                        return None;
                    }
                    Some((option, value))
                })
                .collect();
            Index {
                name,
                column: index.column,
                options,
            }
        })
        .collect();
    Table {
        name,
        keyspace,
        table,
        consistency: consistency.unwrap_or(defaults.consistency),
        ttl: own_ttl
            .as_ref()
            .or(defaults.ttl)
            .and_then(RawTtlChecked::build),
        writetime,
        delete,
        nulls: nulls_of(c, &format!("{at}.nulls"), raw.nulls.as_deref()).unwrap_or(defaults.nulls),
        create: raw.create.unwrap_or(defaults.create),
        partition_key,
        clustering_key,
        columns,
        indexes,
        types,
    }
}

/// `[cassandra.types]`: each field's type resolved, against the types defined before it (in
/// the file's order); the keyspace is set per table.
fn udts(c: &mut Checker, raw: BTreeMap<String, BTreeMap<String, String>>) -> Vec<Udt> {
    let position = |c: &Checker, key: &str| c.locator.key_position(key).unwrap_or((usize::MAX, 0));
    let mut raw: Vec<(String, BTreeMap<String, String>)> = raw.into_iter().collect();
    raw.sort_by_key(|(name, _)| position(c, &format!("cassandra.types.{name}")));
    let mut out: Vec<Udt> = Vec::new();
    for (name, fields) in raw {
        let key = format!("cassandra.types.{name}");
        if !valid_identifier(&name) || name != name.to_ascii_lowercase() {
            c.err(&key, format!("`{name}` is not a valid type name (lower case: a letter, then letters, digits or '_')"));
            continue;
        }
        if name.parse::<CqlType>().is_ok() {
            c.err(&key, format!("`{name}` is a CQL type already"));
            continue;
        }
        if fields.is_empty() {
            c.err(&key, "no fields: add `field = \"<CQL type>\"`");
        }
        let mut fields: Vec<(String, String)> = fields.into_iter().collect();
        fields.sort_by_key(|(field, _)| position(c, &format!("{key}.{field}")));
        let mut resolved = Vec::new();
        for (field, text) in fields {
            if !valid_identifier(&field) {
                c.err(
                    &format!("{key}.{field}"),
                    format!("`{field}` is not a valid field name"),
                );
            }
            match CqlType::parse_with(&text, &out) {
                Ok(t) => resolved.push((field, t)),
                Err(e) => c.err(&format!("{key}.{field}"), e.to_string()),
            }
        }
        out.push(Udt {
            keyspace: String::new(),
            name,
            fields: resolved,
            frozen: false,
        });
    }
    out
}

fn replication(
    c: &mut Checker,
    raw: Option<BTreeMap<String, Scalar>>,
) -> Option<Vec<(String, String)>> {
    let Some(mut map) = raw else {
        return Some(vec![
            ("class".into(), "SimpleStrategy".into()),
            ("replication_factor".into(), "1".into()),
        ]);
    };
    let class = match map.remove("class") {
        Some(Scalar::String(class))
            if ["SimpleStrategy", "NetworkTopologyStrategy"].contains(&class.as_str()) =>
        {
            class
        }
        _ => {
            c.err(
                "cassandra.replication.class",
                "must be \"SimpleStrategy\" or \"NetworkTopologyStrategy\"",
            );
            return None;
        }
    };
    let mut out = vec![("class".to_owned(), class)];
    for (k, v) in map {
        let ok_name = k
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch));
        match v {
            Scalar::Integer(n) if n >= 1 && ok_name => out.push((k, n.to_string())),
            _ => c.err(
                &format!("cassandra.replication.{k}"),
                "must be a replication factor (a whole number, at least 1)",
            ),
        }
    }
    if out.len() == 1 {
        c.err(
            "cassandra.replication",
            "name a replication factor, e.g. replication_factor = 1",
        );
    }
    Some(out)
}

fn columns(
    c: &mut Checker,
    at: &str,
    raw: BTreeMap<String, RawColumn>,
    udts: &[Udt],
) -> Vec<Column> {
    if raw.is_empty() {
        c.err(
            &format!("{at}.columns"),
            "no columns: add `name = { type = \"text\", jq = \".field\" }`",
        );
    }
    let mut out = Vec::new();
    for (name, col) in raw {
        let key = format!("{at}.columns.{name}");
        if !valid_identifier(&name) {
            c.err(&key, format!("`{name}` is not a valid column name"));
        }
        let cql_type = CqlType::parse_with(&col.cql_type, udts)
            .map_err(|e| c.err(&format!("{key}.type"), e.to_string()))
            .ok();
        let jq = c.jq(&format!("{key}.jq"), &col.jq);
        let (Some(cql_type), Some(jq)) = (cql_type, jq) else {
            continue;
        };
        if let Some(kinds) = infer::kinds(&col.jq) {
            let yields: Vec<JsonKind> =
                kinds.into_iter().filter(|k| *k != JsonKind::Null).collect();
            if !yields.is_empty() && !yields.iter().any(|k| cql_type.accepts(*k)) {
                let what: Vec<String> = yields.iter().map(|k| k.to_string()).collect();
                c.err(
                    &format!("{key}.jq"),
                    format!(
                        "type mismatch: column `{name}` is {cql_type}, but `{}` can only yield {}",
                        col.jq,
                        what.join(" or ")
                    ),
                );
            }
        }
        out.push(Column { name, cql_type, jq });
    }
    // Columns in the order the file lists them (DDL reads as written); any added only by
    // environment variables come last.
    out.sort_by_key(|col| {
        c.locator
            .key_position(&format!("{at}.columns.{}", col.name))
            .unwrap_or((usize::MAX, 0))
    });
    out
}

fn primary_key(
    c: &mut Checker,
    at: &str,
    partition: &[String],
    clustering: &[String],
    columns: &[(String, Option<CqlType>)],
) -> (Vec<String>, Vec<(String, bool)>) {
    let partition_key = format!("{at}.partition_key");
    let clustering_key_at = format!("{at}.clustering_key");
    if partition.is_empty() {
        c.err(
            &partition_key,
            "name at least one column, e.g. partition_key = [\"id\"]",
        );
    }
    let check_column = |c: &mut Checker, key: &str, name: &str, seen: &mut Vec<String>| {
        if seen.iter().any(|s| s == name) {
            c.err(
                key,
                format!("column `{name}` is named twice in the primary key"),
            );
        }
        seen.push(name.to_owned());
        match columns.iter().find(|(col, _)| col == name) {
            None => c.err(key, format!("column `{name}` is not in {at}.columns")),
            Some((_, Some(ty))) if ty.is_collection() => c.err(
                key,
                format!("column `{name}` is a {ty}; a primary key column cannot be a collection"),
            ),
            Some(_) => {}
        }
    };
    let mut names = Vec::new();
    for name in partition {
        check_column(c, &partition_key, name, &mut names);
    }
    let mut clustering_key = Vec::new();
    for entry in clustering {
        let mut words = entry.split_whitespace();
        let name = words.next().unwrap_or_default();
        let desc = match words.next().map(|w| w.to_ascii_lowercase()) {
            None => false,
            Some(w) if w == "asc" => false,
            Some(w) if w == "desc" => true,
            Some(w) => {
                c.err(
                    &clustering_key_at,
                    format!("`{w}` in `{entry}` is not asc or desc"),
                );
                false
            }
        };
        check_column(c, &clustering_key_at, name, &mut names);
        clustering_key.push((name.to_owned(), desc));
    }
    (partition.to_vec(), clustering_key)
}
