//! The parents of a parent-child poll (`[source.parent]`): the spec's list, or the records of
//! the parents' own request, each with the key its cursor is kept under.

use std::collections::HashSet;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::poll::Interrupted;
use super::{Bindings, Client, FetchError};
use crate::spec::{Parent, Parents};

/// Every parent with its key (a string, or a number as text), in the order listed; a key seen
/// before is skipped with a warning.
pub async fn list(
    client: &Client<'_>,
    parent: &Parent,
    stop: &CancellationToken,
) -> Result<Vec<(String, Value)>, Interrupted> {
    let found =
        match &parent.parents {
            Parents::List(list) => list.clone(),
            Parents::Endpoint(endpoint) => {
                let mut poll = client
                    .poll(endpoint, Bindings::default())
                    .map_err(|e| FetchError::Parents(e.to_string()))?;
                let mut found = Vec::new();
                while let Some(page) = poll.next_page(stop).await? {
                    let records = poll.records(&page)?;
                    for text in &records {
                        found.push(serde_json::from_str(text).map_err(|e| {
                            FetchError::Parents(format!("a parent is not JSON: {e}"))
                        })?);
                    }
                    poll.advance(&page, records.len())?;
                }
                found
            }
        };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(found.len());
    for value in found {
        let key = match parent.key.run_one(&value) {
            Ok(Value::String(key)) => key,
            Ok(Value::Number(n)) => n.to_string(),
            problem => {
                let problem = match problem {
                    Ok(other) => format!("gave {other}: a parent's key is a string or a number"),
                    Err(e) => e.to_string(),
                };
                return Err(FetchError::Parents(format!(
                    "key `{}` on the parent {}: {problem}",
                    parent.key.code(),
                    crate::text::shorten(&value.to_string(), 200)
                ))
                .into());
            }
        };
        if seen.insert(key.clone()) {
            out.push((key, value));
        } else {
            warn!(parent = %key, "the parents list this key twice; its requests run once");
        }
    }
    info!(parents = out.len(), "parents listed");
    Ok(out)
}
