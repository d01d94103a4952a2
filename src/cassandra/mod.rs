//! The Cassandra side: connecting, the DDL a spec implies, and prepared upserts. The CQL value
//! model (types, rows) is [`crate::cql`], shared with the spec and the mapper.

pub mod ddl;
pub mod write;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::spec;

/// Errors talking to Cassandra, each naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot connect to Cassandra at {points}: {source} (is it running? `scripts/stack up` starts one on 127.0.0.1:9042)"
    )]
    Connect {
        points: String,
        #[source]
        source: scylla::errors::NewSessionError,
    },
    #[error("{what} failed: {source}")]
    Statement {
        what: String,
        #[source]
        source: scylla::errors::ExecutionError,
    },
    #[error("preparing `{cql}` failed: {source}")]
    Prepare {
        cql: String,
        #[source]
        source: scylla::errors::PrepareError,
    },
    #[error("table {table} does not match the spec: {problems}")]
    Schema { table: String, problems: String },
}

/// Opens a session to the spec's contact points.
pub async fn connect(c: &spec::Cassandra) -> Result<Session, Error> {
    let mut builder = SessionBuilder::new()
        .known_nodes(&c.contact_points)
        .connection_timeout(c.request_timeout);
    if let Some((user, password)) = &c.credentials {
        builder = builder.user(user, &password.0);
    }
    builder.build().await.map_err(|source| Error::Connect {
        points: c.contact_points.join(","),
        source,
    })
}

/// Whether Cassandra refused the row itself (retrying cannot help; the record is
/// dead-lettered), as opposed to a node, network or timeout failure (retried).
pub fn is_data_error(e: &Error) -> bool {
    use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
    let Error::Statement { source, .. } = e else {
        return false;
    };
    match source {
        ExecutionError::BadQuery(_) => true,
        ExecutionError::LastAttemptError(attempt) => matches!(
            attempt,
            RequestAttemptError::SerializationError(_)
                | RequestAttemptError::CqlRequestSerialization(_)
                | RequestAttemptError::DbError(DbError::Invalid, _)
        ),
        _ => false,
    }
}
