//! The one poll loop: from where the poll stands (its cursor or window), fetch each page, cut its records out, and move on
//! to the next page as the spec's pagination says. `run`, `backfill`, `preview` and the tests
//! all drive a [`Poll`]; what a page's records become is theirs:
//!
//! ```ignore
//! let mut poll = client.poll(&source.endpoint, bindings)?;
//! while let Some(page) = poll.next_page(stop).await? {
//!     let records = poll.records(&page)?;
//!     /* hand the records on */
//!     poll.advance(&page, records.len())?;
//! }
//! ```

use std::borrow::Cow;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::request::{Bindings, PlaceError};
use super::{Client, FetchError, Pages, Request, Response};
use crate::spec::Endpoint;

/// One page of a poll.
pub struct Page {
    /// The request that fetched it.
    pub request: Request,
    pub response: Response,
}

/// Why a poll ended early.
#[derive(Debug)]
pub enum Interrupted {
    /// A stop came during a request or the wait before a retry: the poll ends, unfinished
    /// and not failed.
    Stopped,
    /// The API failed for good.
    Failed(FetchError),
}

impl From<FetchError> for Interrupted {
    fn from(e: FetchError) -> Self {
        Interrupted::Failed(e)
    }
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interrupted::Stopped => f.write_str("stopped"),
            Interrupted::Failed(e) => e.fmt(f),
        }
    }
}

/// The pages of one poll.
pub struct Poll<'c, 'a> {
    client: &'c Client<'a>,
    endpoint: &'a Endpoint,
    pages: Pages<'a>,
    /// Fields put into each record from its parent (`[source.parent] include`).
    carried: Vec<(&'a str, Value)>,
}

impl<'a> Client<'a> {
    /// A poll of `endpoint` from `bindings`; an error if its first request cannot be built.
    /// A poll for a parent puts the parent's `include` fields into each record.
    pub fn poll(
        &self,
        endpoint: &'a Endpoint,
        bindings: Bindings,
    ) -> Result<Poll<'_, 'a>, PlaceError> {
        let mut carried = Vec::new();
        if let Some(parent) = &self.source().parent
            && !bindings.parent.is_null()
        {
            for (name, jq) in &parent.include {
                let value =
                    jq.run_one(&bindings.parent)
                        .map_err(|source| PlaceError::Template {
                            at: format!("source.parent.include.{name}"),
                            source,
                        })?;
                carried.push((name.as_str(), value));
            }
        }
        Ok(Poll {
            client: self,
            endpoint,
            pages: Pages::new(self.source(), endpoint, bindings)?,
            carried,
        })
    }
}

impl Poll<'_, '_> {
    /// Fetches the next page, if the poll is not over; `stop` ends a request or its retries.
    pub async fn next_page(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Option<Page>, Interrupted> {
        let Some(request) = self.pages.next_request().cloned() else {
            return Ok(None);
        };
        let response = tokio::select! {
            fetched = self.client.fetch(&request) => fetched?,
            _ = stop.cancelled() => return Err(Interrupted::Stopped),
        };
        Ok(Some(Page { request, response }))
    }

    /// The records of `page`, each as its JSON text (none if a rule ignored it).
    pub fn records<'p>(&self, page: &'p Page) -> Result<Vec<Cow<'p, str>>, FetchError> {
        if page.response.ignored.is_some() {
            return Ok(Vec::new());
        }
        let records = self.client.records(
            &self.endpoint.records,
            &page.request.url,
            &page.response.body,
        )?;
        debug!(url = %page.request.url, records = records.len(), "page fetched");
        if self.carried.is_empty() {
            return Ok(records);
        }
        Ok(records
            .into_iter()
            .map(|text| match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(mut fields)) => {
                    for (name, value) in &self.carried {
                        fields.insert((*name).to_owned(), value.clone());
                    }
                    Cow::Owned(Value::Object(fields).to_string())
                }
                // A record that is no object has no field to add; it goes as it is.
                _ => text,
            })
            .collect())
    }

    /// Moves on after `page`, which yielded `count` records. An ignored page ends the poll:
    /// nothing in it says where the next one is.
    pub fn advance(&mut self, page: &Page, count: usize) -> Result<(), FetchError> {
        if page.response.ignored.is_some() {
            self.pages.end();
            return Ok(());
        }
        self.pages
            .advance(&page.response.body, &page.response.headers, count)
    }
}
