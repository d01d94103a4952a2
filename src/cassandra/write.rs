//! Prepared upserts. Prepared once at build; the hot path only binds and executes.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::{Error, ddl};
use crate::cql::Row;
use crate::spec::Cassandra;

/// Writes rows of one table with a prepared, idempotent `INSERT` (an upsert by primary key).
#[derive(Clone)]
pub struct Writer {
    session: Arc<Session>,
    insert: PreparedStatement,
    table: String,
}

impl Writer {
    /// Prepares the upsert with the spec's consistency and timeout.
    pub async fn prepare(session: Arc<Session>, c: &Cassandra) -> Result<Writer, Error> {
        let cql = ddl::insert(c);
        let mut insert = session
            .prepare(cql.as_str())
            .await
            .map_err(|source| Error::Prepare {
                cql: cql.clone(),
                source,
            })?;
        insert.set_consistency(c.consistency);
        insert.set_request_timeout(Some(c.request_timeout));
        // An upsert by primary key may be retried by the driver without changing the result.
        insert.set_is_idempotent(true);
        Ok(Writer {
            session,
            insert,
            table: ddl::table_name(c),
        })
    }

    /// Writes one row; the error says which table.
    /// The session the rows go through.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub async fn write(&self, row: &Row) -> Result<(), Error> {
        self.session
            .execute_unpaged(&self.insert, row)
            .await
            .map(|_| ())
            .map_err(|source| Error::Statement {
                what: format!("writing to {}", self.table),
                source,
            })
    }
}
