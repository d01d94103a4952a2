//! The CQL a spec implies: `CREATE KEYSPACE`, `CREATE TABLE` and the upsert of each table, and
//! a check that an existing table has the spec's columns. The one place CQL text is built: names are checked
//! identifiers and always double-quoted; values are only ever bind markers.

use scylla::client::session::Session;

use super::Error;
use crate::cql::CqlType;
use crate::spec::{Cassandra, Table, Ttl};

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"keyspace"."table"`.
pub fn table_name(t: &Table) -> String {
    format!("{}.{}", quote(&t.keyspace), quote(&t.table))
}

/// The keyspaces of the tables, each once, in the tables' order; `created`: only those of
/// tables the spec creates.
fn keyspaces(c: &Cassandra, created: bool) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for t in c.tables.iter().filter(|t| t.create || !created) {
        if !out.contains(&t.keyspace.as_str()) {
            out.push(&t.keyspace);
        }
    }
    out
}

/// Every statement that creates the spec's keyspaces and tables, as `aqueduct ddl` prints it.
pub fn script(c: &Cassandra) -> String {
    let mut statements: Vec<String> = keyspaces(c, false)
        .into_iter()
        .map(|keyspace| create_keyspace(c, keyspace))
        .collect();
    statements.extend(create_types(c, false));
    statements.extend(c.tables.iter().map(create_table));
    statements.extend(c.tables.iter().flat_map(create_indexes));
    statements
        .iter()
        .map(|s| format!("{s};\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `CREATE KEYSPACE IF NOT EXISTS` with the spec's replication.
pub fn create_keyspace(c: &Cassandra, keyspace: &str) -> String {
    let replication: Vec<String> = c
        .replication
        .iter()
        .map(|(k, v)| format!("'{k}': '{v}'"))
        .collect();
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {{{}}}",
        quote(keyspace),
        replication.join(", ")
    )
}

/// `CREATE TABLE IF NOT EXISTS` with the table's columns and primary key.
pub fn create_table(c: &Table) -> String {
    let mut lines: Vec<String> = c
        .columns
        .iter()
        .map(|col| format!("    {} {}", quote(&col.name), col.cql_type))
        .collect();
    let partition: Vec<String> = c.partition_key.iter().map(|n| quote(n)).collect();
    let mut key = format!("({})", partition.join(", "));
    for (name, _) in &c.clustering_key {
        key.push_str(&format!(", {}", quote(name)));
    }
    lines.push(format!("    PRIMARY KEY ({key})"));
    let mut cql = format!(
        "CREATE TABLE IF NOT EXISTS {} (\n{}\n)",
        table_name(c),
        lines.join(",\n")
    );
    if !c.clustering_key.is_empty() {
        let order: Vec<String> = c
            .clustering_key
            .iter()
            .map(|(name, desc)| format!("{} {}", quote(name), if *desc { "DESC" } else { "ASC" }))
            .collect();
        cql.push_str(&format!(" WITH CLUSTERING ORDER BY ({})", order.join(", ")));
    }
    cql
}

/// `CREATE TYPE IF NOT EXISTS` for the user-defined types, once in the keyspace of each table
/// (`created`: of each table the spec creates), in the file's order.
fn create_types(c: &Cassandra, created: bool) -> Vec<String> {
    let mut out = Vec::new();
    for keyspace in keyspaces(c, created) {
        let Some(t) = c.tables.iter().find(|t| t.keyspace == keyspace) else {
            continue;
        };
        for udt in &t.types {
            let fields: Vec<String> = udt
                .fields
                .iter()
                .map(|(f, ty)| format!("{} {}", quote(f), ty.nested()))
                .collect();
            out.push(format!(
                "CREATE TYPE IF NOT EXISTS {}.{} ({})",
                quote(keyspace),
                quote(&udt.name),
                fields.join(", ")
            ));
        }
    }
    out
}

/// `CREATE INDEX IF NOT EXISTS ... USING 'sai'` for each of the table's indexes.
pub fn create_indexes(t: &Table) -> Vec<String> {
    t.indexes
        .iter()
        .map(|index| {
            let mut cql = format!(
                "CREATE INDEX IF NOT EXISTS {} ON {} ({}) USING 'sai'",
                quote(&index.name),
                table_name(t),
                quote(&index.column)
            );
            if !index.options.is_empty() {
                let options: Vec<String> = index
                    .options
                    .iter()
                    .map(|(k, v)| format!("'{k}': '{v}'"))
                    .collect();
                cql.push_str(&format!(" WITH OPTIONS = {{{}}}", options.join(", ")));
            }
            cql
        })
        .collect()
}

/// The prepared upsert: every column bound, in spec order, then the time to live and the
/// write time if the table takes them from the record.
pub fn insert(c: &Table) -> String {
    let names: Vec<String> = c.columns.iter().map(|col| quote(&col.name)).collect();
    let markers = vec!["?"; names.len()].join(", ");
    let mut cql = format!(
        "INSERT INTO {} ({}) VALUES ({markers})",
        table_name(c),
        names.join(", ")
    );
    // A time to live and a write time the record gives are bound after the columns, in this
    // order (see `map::row_of`).
    let using: Vec<String> = c
        .ttl
        .as_ref()
        .map(|ttl| match ttl {
            Ttl::Fixed(d) => format!("TTL {}", d.as_secs()),
            Ttl::Jq(_) => "TTL ?".to_owned(),
        })
        .into_iter()
        .chain(c.writetime.as_ref().map(|_| "TIMESTAMP ?".to_owned()))
        .collect();
    if !using.is_empty() {
        cql.push_str(&format!(" USING {}", using.join(" AND ")));
    }
    cql
}

/// The prepared delete by primary key: the write time first when the table takes it from the
/// record, then the key columns, partition key first (see `map::Change::Delete`).
pub fn delete(t: &Table) -> String {
    let mut cql = format!("DELETE FROM {}", table_name(t));
    if t.writetime.is_some() {
        cql.push_str(" USING TIMESTAMP ?");
    }
    let conditions: Vec<String> = t
        .key_columns()
        .map(|i| format!("{} = ?", quote(&t.columns[i].name)))
        .collect();
    cql.push_str(&format!(" WHERE {}", conditions.join(" AND ")));
    cql
}

/// Creates the keyspaces and tables the spec says to create, then checks that every table has
/// each of its columns in the spec with the same type.
pub async fn ensure(session: &Session, c: &Cassandra) -> Result<(), Error> {
    let mut statements: Vec<String> = keyspaces(c, true)
        .into_iter()
        .map(|keyspace| create_keyspace(c, keyspace))
        .collect();
    statements.extend(create_types(c, true));
    statements.extend(c.tables.iter().filter(|t| t.create).map(create_table));
    statements.extend(
        c.tables
            .iter()
            .filter(|t| t.create)
            .flat_map(create_indexes),
    );
    if !statements.is_empty() {
        for cql in statements {
            session
                .query_unpaged(cql.as_str(), &[])
                .await
                .map_err(|source| Error::Statement {
                    what: cql.clone(),
                    source,
                })?;
        }
        // DDL from one node must reach the others before writes are prepared there.
        session
            .await_schema_agreement()
            .await
            .map_err(|e| Error::Statement {
                what: "waiting for schema agreement".into(),
                source: e.into(),
            })?;
    }
    for t in &c.tables {
        check_columns(session, t).await?;
    }
    Ok(())
}

async fn check_columns(session: &Session, c: &Table) -> Result<(), Error> {
    let what = "reading system_schema.columns".to_string();
    let rows = session
        .query_unpaged(
            "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
            (&c.keyspace, &c.table),
        )
        .await
        .map_err(|source| Error::Statement { what: what.clone(), source })?
        .into_rows_result()
        .map_err(|e| Error::Schema { table: table_name(c), problems: e.to_string() })?;
    let existing: Vec<(String, String)> = rows
        .rows::<(String, String)>()
        .map_err(|e| Error::Schema {
            table: table_name(c),
            problems: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Schema {
            table: table_name(c),
            problems: e.to_string(),
        })?;
    let problems = column_problems(c, &existing);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Schema {
            table: table_name(c),
            problems: problems.join("; "),
        })
    }
}

/// Differences between the spec's columns and the table's `(name, type)` pairs.
fn column_problems(c: &Table, existing: &[(String, String)]) -> Vec<String> {
    if existing.is_empty() {
        return vec![
            "the table does not exist (set create = true, or create it with `aqueduct ddl`)".into(),
        ];
    }
    let mut problems = Vec::new();
    for col in &c.columns {
        match existing.iter().find(|(name, _)| *name == col.name) {
            None => problems.push(format!(
                "no column {0} (ALTER TABLE {1} ADD {0} {2})",
                quote(&col.name),
                table_name(c),
                col.cql_type
            )),
            Some((_, ty))
                if CqlType::parse_with(ty, &c.types).ok().as_ref() != Some(&col.cql_type) =>
            {
                problems.push(format!(
                    "column {} is {ty} in the table but {} in the spec",
                    quote(&col.name),
                    col.cql_type
                ))
            }
            Some(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::spec_with;

    fn spec() -> crate::spec::Spec {
        spec_with(
            "",
            r#"
            table = "events"
            ttl = "1d"
            replication = { class = "NetworkTopologyStrategy", dc1 = 3 }
            partition_key = ["id"]
            clustering_key = ["at desc"]
            columns.id = { type = "uuid", jq = ".id" }
            columns.at = { type = "timestamp", jq = ".at" }
            columns.tags = { type = "set<text>", jq = ".tags" }
            "#,
        )
    }

    #[test]
    fn ddl_quotes_names_and_orders_clustering() {
        let spec = spec();
        let c = &spec.cassandra.tables[0];
        assert_eq!(
            create_keyspace(&spec.cassandra, "ks"),
            "CREATE KEYSPACE IF NOT EXISTS \"ks\" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': '3'}"
        );
        assert_eq!(
            create_table(c),
            "CREATE TABLE IF NOT EXISTS \"ks\".\"events\" (\n    \"id\" uuid,\n    \"at\" timestamp,\n    \"tags\" set<text>,\n    PRIMARY KEY ((\"id\"), \"at\")\n) WITH CLUSTERING ORDER BY (\"at\" DESC)"
        );
        assert_eq!(
            insert(c),
            "INSERT INTO \"ks\".\"events\" (\"id\", \"at\", \"tags\") VALUES (?, ?, ?) USING TTL 86400"
        );
    }

    #[test]
    fn existing_table_is_compared_by_type() {
        let spec = spec();
        let c = &spec.cassandra.tables[0];
        let table = |cols: &[(&str, &str)]| -> Vec<(String, String)> {
            cols.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(
            column_problems(
                c,
                &table(&[
                    ("id", "uuid"),
                    ("at", "timestamp"),
                    ("tags", "set<varchar>")
                ])
            )
            .is_empty()
        );
        let problems = column_problems(c, &table(&[("id", "text"), ("at", "timestamp")]));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("column \"id\" is text in the table but uuid"),
            "{problems:?}"
        );
        assert!(problems[1].contains("no column \"tags\""), "{problems:?}");
        assert!(column_problems(c, &[])[0].contains("does not exist"));
    }
}
