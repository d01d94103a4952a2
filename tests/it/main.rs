//! The integration tests: one binary (see `support` for the services they need).
//!
//! Tests that need Kafka and Cassandra use the real servers of `scripts/stack up` on
//! 127.0.0.1 (addresses from AQUEDUCT_TEST_KAFKA / AQUEDUCT_TEST_CASSANDRA). With `CI=true`
//! an unreachable server fails them; elsewhere they print why and pass without running.

mod cli;
mod docs;
mod e2e;
mod stack;
mod support;
mod try_out;
