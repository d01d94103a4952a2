//! The integration tests: one binary (see `support` for the services they need).
//!
//! Tests that need Kafka and Cassandra use the real servers of `scripts/stack up` on
//! 127.0.0.1 (addresses from AQUEDUCT_TEST_KAFKA / AQUEDUCT_TEST_CASSANDRA). With `CI=true`
//! an unreachable server fails them; elsewhere they print why and pass without running. The
//! same holds for the secure stack (`scripts/stack up --secure`) and the tests in `secure`.

mod cli;
mod docs;
mod e2e;
mod faults;
mod incremental;
mod secure;
mod stack;
mod support;
mod tables;
mod try_out;
