//! Where a response keeps its records, and how it says where the next page is.

use serde_json::Value;

use super::columns::jq_path;

/// How deep into a response the records are looked for.
const MAX_DEPTH: usize = 4;

/// The path of the largest array of objects in `response` (the shallowest of equal ones, then
/// the first): empty for a top-level array. `None` if there is no non-empty array of objects.
pub fn find_records(response: &Value) -> Option<Vec<String>> {
    let mut best: Option<(usize, usize, Vec<String>)> = None;
    search(response, &mut Vec::new(), &mut best);
    best.map(|(_, _, path)| path)
}

fn search(v: &Value, path: &mut Vec<String>, best: &mut Option<(usize, usize, Vec<String>)>) {
    match v {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            let better = match best {
                None => true,
                Some((len, depth, _)) => {
                    items.len() > *len || (items.len() == *len && path.len() < *depth)
                }
            };
            if better {
                *best = Some((items.len(), path.len(), path.clone()));
            }
        }
        Value::Object(fields) if path.len() < MAX_DEPTH => {
            for (key, value) in fields {
                path.push(key.clone());
                search(value, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The `records` expression of a records path: `.results[]`, `.[]`.
pub fn records_expr(path: &[String]) -> String {
    match path {
        [] => ".[]".to_owned(),
        path => format!("{}[]", jq_path(path)),
    }
}

/// A guess at `[source.pagination]`, with what it was guessed from.
#[derive(Debug, Clone, PartialEq)]
pub enum Paging {
    /// The `Link` header had a `rel="next"` link.
    LinkHeader,
    /// A field holds the next page's URL: `next` is its jq path.
    NextLink { next: String },
    /// A token from the response goes into the next request's query parameter `query`;
    /// `stop`, when given, ends the poll.
    Cursor {
        token: String,
        stop: Option<String>,
        query: String,
        from: String,
    },
}

/// Names of a field holding the next page's URL.
const NEXT_URL: &[&str] = &[
    "next",
    "next_url",
    "nextUrl",
    "next_link",
    "nextLink",
    "next_page_url",
    "nextPageUrl",
    "@odata.nextLink",
];
/// Objects that hold paging fields.
const HOLDERS: &[&str] = &[
    "links",
    "_links",
    "paging",
    "pagination",
    "meta",
    "info",
    "page",
    "response_metadata",
];
/// Names of a field holding the next page's token, each with the query parameter that
/// usually takes it.
const NEXT_TOKEN: &[(&str, &str)] = &[
    ("next_cursor", "cursor"),
    ("nextCursor", "cursor"),
    ("next_page_token", "page_token"),
    ("nextPageToken", "pageToken"),
];

/// Guesses the pagination from a response (`records`, the records' path) and whether its
/// `Link` header had a `rel="next"` link. First a `Link` header; then a field holding a URL
/// (`next`, `links.next`, `paging.next`, HAL's `_links.next.href`); then Stripe's
/// `has_more` with the last record's `id`; then a next-page token (`next_cursor`, Slack's
/// `response_metadata.next_cursor`, `nextPageToken`). `None`: the response shows none.
pub fn guess(response: &Value, records: &[String], link_next: bool) -> Option<Paging> {
    if link_next {
        return Some(Paging::LinkHeader);
    }
    let places = || {
        let top = std::iter::once(Vec::new());
        let held = HOLDERS.iter().map(|h| vec![(*h).to_owned()]);
        top.chain(held)
    };
    let at = |path: &[String]| path.iter().try_fold(response, |v, key| v.get(key));
    for place in places() {
        for name in NEXT_URL {
            let mut path = place.clone();
            path.push((*name).to_owned());
            let value = at(&path);
            // HAL: `_links.next.href`.
            let (value, path) = match value {
                Some(Value::Object(o)) if o.get("href").is_some_and(Value::is_string) => {
                    let mut href = path.clone();
                    href.push("href".into());
                    (o.get("href"), href)
                }
                _ => (value, path),
            };
            if value.and_then(Value::as_str).is_some_and(is_url) {
                return Some(Paging::NextLink {
                    next: jq_path(&path),
                });
            }
        }
    }
    let has_more = ["has_more", "hasMore"]
        .into_iter()
        .find(|k| response.get(k).is_some_and(Value::is_boolean));
    let last_id = at(records)
        .and_then(Value::as_array)
        .and_then(|a| a.last())
        .and_then(|r| r.get("id"))
        .is_some_and(|id| id.is_string() || id.is_number());
    if let (Some(has_more), true, false) = (has_more, last_id, records.is_empty()) {
        let records = jq_path(records);
        return Some(Paging::Cursor {
            token: format!("{records}[-1].id"),
            stop: Some(format!(".{has_more} | not")),
            query: "starting_after".into(),
            from: format!("`{has_more}` and the last record's `id` (as Stripe pages)"),
        });
    }
    for place in places() {
        for (name, query) in NEXT_TOKEN {
            let mut path = place.clone();
            path.push((*name).to_owned());
            if at(&path).is_some_and(Value::is_string) {
                return Some(Paging::Cursor {
                    token: jq_path(&path),
                    stop: None,
                    query: (*query).to_owned(),
                    from: format!("`{}`", path.join(".")),
                });
            }
        }
    }
    None
}

/// Whether `s` reads as a URL or a path and query of one.
fn is_url(s: &str) -> bool {
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with('/')
        || s.starts_with('?')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn the_records_are_the_largest_array_of_objects() {
        let users = json!({"results": [{"a": 1}, {"a": 2}], "info": {"seed": "x"}});
        assert_eq!(find_records(&users), Some(path(&["results"])));
        let geojson = json!({"type": "FeatureCollection", "metadata": {"count": 2}, "features": [{"id": "a"}, {"id": "b"}], "bbox": [1, 2]});
        assert_eq!(find_records(&geojson), Some(path(&["features"])));
        assert_eq!(find_records(&json!([{"a": 1}])), Some(vec![]));
        let nested =
            json!({"data": {"items": [{"a": 1}, {"a": 2}, {"a": 3}]}, "errors": [{"e": 1}]});
        assert_eq!(find_records(&nested), Some(path(&["data", "items"])));
        for none in [
            json!({"a": [1, 2]}),
            json!([]),
            json!("text"),
            json!({"a": [{"x": 1}, 2]}),
        ] {
            assert_eq!(find_records(&none), None, "{none}");
        }
        assert_eq!(records_expr(&path(&["data", "items"])), ".data.items[]");
        assert_eq!(records_expr(&[]), ".[]");
    }

    #[test]
    fn pagination_is_guessed_from_what_the_response_shows() {
        let records = path(&["data"]);
        let with = |extra: Value| {
            let mut r = json!({"data": [{"id": "ch_1"}, {"id": "ch_2"}]});
            r.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            guess(&r, &records, false)
        };
        assert_eq!(with(json!({})), None);
        assert_eq!(guess(&json!({}), &records, true), Some(Paging::LinkHeader));
        let next = |p: &str| Some(Paging::NextLink { next: p.into() });
        assert_eq!(with(json!({"next": "https://api/x?page=2"})), next(".next"));
        assert_eq!(
            with(json!({"links": {"next": "/keyed/api/?page=2"}})),
            next(".links.next")
        );
        assert_eq!(
            with(json!({"paging": {"next": "?after=9"}})),
            next(".paging.next")
        );
        assert_eq!(
            with(json!({"_links": {"next": {"href": "/x?p=2"}}})),
            next("._links.next.href")
        );
        // A `next` that is no URL is no next link.
        assert_eq!(with(json!({"next": 2})), None);
        assert_eq!(
            with(json!({"has_more": true})),
            Some(Paging::Cursor {
                token: ".data[-1].id".into(),
                stop: Some(".has_more | not".into()),
                query: "starting_after".into(),
                from: "`has_more` and the last record's `id` (as Stripe pages)".into(),
            })
        );
        match with(json!({"response_metadata": {"next_cursor": "dGVhbTpD"}})) {
            Some(Paging::Cursor {
                token,
                stop: None,
                query,
                ..
            }) => {
                assert_eq!(
                    (token.as_str(), query.as_str()),
                    (".response_metadata.next_cursor", "cursor")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
