//! The integration tests: one binary (see `support` for the services they need).
//!
//! Tests that need Kafka and Cassandra use the real servers of `scripts/stack up` on
//! 127.0.0.1 (addresses from AQUEDUCT_TEST_KAFKA / AQUEDUCT_TEST_CASSANDRA). An unreachable
//! server fails them, saying how to start it; outside CI a developer may opt out with
//! `AQUEDUCT_SKIP_SERVER_TESTS=1` (they then print SKIPPED and pass). The same holds for the
//! secure stack (`scripts/stack up --secure`) and the tests in `secure`. The fault scenarios are
//! a binary of their own, tests/faults (`scripts/faults` runs them, and `scripts/test` too).

mod cli;
mod codec;
mod docs;
mod e2e;
mod editor;
mod examples;
mod incremental;
mod init;
mod secure;
mod source;
mod stack;
mod support;
mod tables;
mod try_out;
