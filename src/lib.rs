//! aqueduct: declarative data pipelines from an HTTP JSON API through Kafka into Cassandra.
//!
//! # Layout
//!
//! Stages in flow order; stages never import each other, only [`pipeline`] wires them.
//!
//! - [`spec`]: load a TOML spec, check it, compile its jq and JSON Schema (`aqueduct check`).
//! - [`source`]: the HTTP source as a component: its client (credentials, rate budget,
//!   response rules, retries, the body cap), the one place a request is built, the pages of a
//!   poll, the one poll loop, and the schedule.
//! - [`incremental`]: incremental polling: how cursors move and which windows are due, the
//!   cursor store on Kafka, the ingest lease, `status` and `cursor --set`.
//! - [`validate`]: JSON Schema verdicts with JSON pointers.
//! - [`kafka`]: client config, topic creation, idempotent producer, at-least-once consumer.
//! - [`map`]: a record to a table's row, by the columns' jq expressions and CQL types.
//! - [`cql`]: the CQL value model: column types, the JSON each takes, the row.
//! - [`cassandra`]: connecting, DDL, a prepared upsert per table.
//! - [`dead_letter`]: the envelope of a record that could not go on.
//! - [`record`]: one record through both halves' checks and mapping, without a server.
//! - [`pipeline`]: ingest and load, shutdown, `--once` draining.
//! - [`preview`], [`spec_test`]: `aqueduct preview` and `aqueduct test`, offline.
//! - [`init`]: `aqueduct init`, a starting spec from a sample response.
//! - [`backoff`]: the wait before a retry, for every retry loop.
//! - [`pointer`]: editing JSON at a JSON pointer.
//! - [`template`]: `{{ jq }}` placeholders in a request's path, query, headers and body.
//! - [`text`]: text cut short for messages.
//! - [`shutdown`]: the signal watcher that starts a graceful stop.
//! - [`metrics`]: every metric, served at `/metrics` and summed up at exit.
//! - [`progress`]: the progress bar or lines of a run that ends by itself.
//! - [`cli`]: the command line.
//! - [`docs`]: the book's pages generated from the code.

pub mod backoff;
pub mod cassandra;
pub mod cli;
pub mod codec;
pub mod cql;
pub mod dead_letter;
pub mod docs;
pub mod incremental;
pub mod init;
pub mod jq;
pub mod kafka;
pub mod map;
pub mod metrics;
pub mod pipeline;
pub mod pointer;
pub mod preview;
pub mod progress;
pub mod record;
pub mod shutdown;
pub mod source;
pub mod spec;
pub mod spec_test;
pub mod tap;
pub mod template;
pub mod text;
pub mod validate;
