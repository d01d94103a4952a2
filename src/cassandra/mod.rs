//! The Cassandra side: connecting, the DDL a spec implies, and prepared upserts. The CQL value
//! model (types, rows) is [`crate::cql`], shared with the spec and the mapper.

pub mod ddl;
pub mod restarts;
pub mod rewind;
pub mod write;

use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslConnectorBuilder, SslMethod, SslVerifyMode};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::spec;

/// Errors talking to Cassandra, each naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `reason` is the driver's error, whose text already holds its causes.
    #[error("cannot connect to Cassandra at {points}: {reason}{hint}")]
    Connect {
        points: String,
        reason: String,
        hint: &'static str,
    },
    #[error("setting up TLS to Cassandra at {points}: {source}")]
    Tls {
        points: String,
        #[source]
        source: openssl::error::ErrorStack,
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
    if let Some(tls) = &c.tls {
        let context = tls_context(tls).map_err(|source| Error::Tls {
            points: c.contact_points.join(","),
            source,
        })?;
        builder = builder.tls_context(Some(context));
    }
    builder.build().await.map_err(|e| {
        let reason = e.to_string();
        // Only a node that does not answer may simply not be running; a refused login or
        // certificate says why itself.
        let unanswered = ["Connection refused", "timed out", "Timeout"];
        let hint = if unanswered.iter().any(|s| reason.contains(s)) {
            " (is it running? `scripts/stack up` starts one on 127.0.0.1:9042)"
        } else {
            ""
        };
        Error::Connect {
            points: c.contact_points.join(","),
            reason,
            hint,
        }
    })
}

/// OpenSSL's `X509_V_ERR_HOSTNAME_MISMATCH` and `X509_V_ERR_IP_ADDRESS_MISMATCH`: the only
/// failures `verify_hostname = false` lets pass.
const NAME_MISMATCHES: [i32; 2] = [62, 64];

/// The driver's TLS settings: trust the spec's CA (else the system's), offer its client
/// certificate, and check the node's certificate, by default against the node's address too
/// (the driver checks it against the node's IP).
fn tls_context(tls: &spec::Tls) -> Result<SslConnectorBuilder, openssl::error::ErrorStack> {
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    if let Some(ca) = &tls.ca_file {
        builder.set_ca_file(ca)?;
    }
    if let Some(client) = &tls.client {
        let pem = std::fs::read(&client.key_file).unwrap_or_default();
        let password = client.key_password.as_ref().map(|p| p.0.as_bytes());
        let key = match password {
            Some(password) => PKey::private_key_from_pem_passphrase(&pem, password)?,
            None => PKey::private_key_from_pem(&pem)?,
        };
        builder.set_certificate_chain_file(&client.cert_file)?;
        builder.set_private_key(&key)?;
        builder.check_private_key()?;
    }
    if !tls.verify_hostname {
        builder.set_verify_callback(SslVerifyMode::PEER, |ok, store| {
            ok || NAME_MISMATCHES.contains(&store.error().as_raw())
        });
    }
    Ok(builder)
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
