//! The HTTP JSON API source: when to poll ([`schedule`]) and how to fetch ([`http`]).

pub mod http;
pub mod schedule;
