//! Sources: the HTTP JSON API ([`http`], a component: client, requests, the poll loop) and
//! when it is polled ([`schedule`]).

pub mod http;
pub mod schedule;
