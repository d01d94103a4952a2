//! Prepared upserts, one per table. Prepared once at build; the hot path only binds and
//! executes.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::{Error, ddl};
use crate::cql::Row;
use crate::spec::{Cassandra, Nulls};
use scylla::value::{CqlValue, MaybeUnset};

/// Writes rows with a prepared, idempotent `INSERT` (an upsert by primary key) per table, in
/// the spec's order of tables.
#[derive(Clone)]
pub struct Writer {
    session: Arc<Session>,
    /// Per table: the upsert, the table's quoted name (for errors), and whether nulls are
    /// left unset.
    inserts: Vec<(PreparedStatement, String, bool)>,
}

impl Writer {
    /// Prepares every table's upsert with its consistency and the spec's timeout.
    pub async fn prepare(session: Arc<Session>, c: &Cassandra) -> Result<Writer, Error> {
        let mut inserts = Vec::with_capacity(c.tables.len());
        for t in &c.tables {
            let cql = ddl::insert(t);
            let mut insert =
                session
                    .prepare(cql.as_str())
                    .await
                    .map_err(|source| Error::Prepare {
                        cql: cql.clone(),
                        source,
                    })?;
            insert.set_consistency(t.consistency);
            insert.set_request_timeout(Some(c.request_timeout));
            // An upsert by primary key may be retried by the driver without changing the
            // result.
            insert.set_is_idempotent(true);
            inserts.push((insert, ddl::table_name(t), t.nulls == Nulls::Unset));
        }
        Ok(Writer { session, inserts })
    }

    /// The session the rows go through.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Writes one row to the spec's `table`-th table; the error says which table.
    pub async fn write(&self, table: usize, row: &Row) -> Result<(), Error> {
        let (insert, name, unset_nulls) = &self.inserts[table];
        let written = if *unset_nulls {
            // A null left unset: the column keeps its value and no tombstone is written.
            let values: Vec<MaybeUnset<&CqlValue>> = row
                .iter()
                .map(|v| v.as_ref().map_or(MaybeUnset::Unset, MaybeUnset::Set))
                .collect();
            self.session.execute_unpaged(insert, values).await
        } else {
            self.session.execute_unpaged(insert, row).await
        };
        written.map(|_| ()).map_err(|source| Error::Statement {
            what: format!("writing to {name}"),
            source,
        })
    }
}
