//! Prepared upserts and deletes, one of each per table. Prepared once at build; the hot path
//! only binds and executes.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, MaybeUnset};

use super::{Error, ddl};
use crate::map::Change;
use crate::spec::{Cassandra, Nulls, Table};

/// Writes rows with a prepared, idempotent `INSERT` (an upsert by primary key), and deletes
/// them by primary key, per table in the spec's order of tables.
#[derive(Clone)]
pub struct Writer {
    session: Arc<Session>,
    tables: Vec<Statements>,
}

/// One table's prepared statements.
#[derive(Clone)]
struct Statements {
    insert: PreparedStatement,
    delete: PreparedStatement,
    /// The table's quoted name, for errors.
    name: String,
    /// Nulls are left unset rather than written.
    unset_nulls: bool,
}

impl Writer {
    /// Prepares every table's upsert and delete with its consistency and the spec's timeout.
    pub async fn prepare(session: Arc<Session>, c: &Cassandra) -> Result<Writer, Error> {
        let mut tables = Vec::with_capacity(c.tables.len());
        for t in &c.tables {
            tables.push(Statements {
                insert: prepare(&session, c, t, ddl::insert(t)).await?,
                delete: prepare(&session, c, t, ddl::delete(t)).await?,
                name: ddl::table_name(t),
                unset_nulls: t.nulls == Nulls::Unset,
            });
        }
        Ok(Writer { session, tables })
    }

    /// The session the rows go through.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Makes one change to the spec's `table`-th table; the error says which table.
    pub async fn write(&self, table: usize, change: &Change) -> Result<(), Error> {
        let t = &self.tables[table];
        let done = match change {
            Change::Upsert(row) if t.unset_nulls => {
                // A null left unset: the column keeps its value and no tombstone is written.
                let values: Vec<MaybeUnset<&CqlValue>> = row
                    .iter()
                    .map(|v| v.as_ref().map_or(MaybeUnset::Unset, MaybeUnset::Set))
                    .collect();
                self.session.execute_unpaged(&t.insert, values).await
            }
            Change::Upsert(row) => self.session.execute_unpaged(&t.insert, row).await,
            Change::Delete(key) => self.session.execute_unpaged(&t.delete, key).await,
        };
        done.map(|_| ()).map_err(|source| Error::Statement {
            what: match change {
                Change::Upsert(_) => format!("writing to {}", t.name),
                Change::Delete(_) => format!("deleting from {}", t.name),
            },
            source,
        })
    }
}

/// Prepares one statement of table `t`: its consistency, the spec's timeout, idempotent (an
/// upsert or delete by primary key may be retried by the driver without changing the result).
async fn prepare(
    session: &Session,
    c: &Cassandra,
    t: &Table,
    cql: String,
) -> Result<PreparedStatement, Error> {
    let mut statement = session
        .prepare(cql.as_str())
        .await
        .map_err(|source| Error::Prepare {
            cql: cql.clone(),
            source,
        })?;
    statement.set_consistency(t.consistency);
    statement.set_request_timeout(Some(c.request_timeout));
    statement.set_is_idempotent(true);
    Ok(statement)
}
