//! Incremental polling: how a cursor moves on after a page (`[source.cursor]`) and which time
//! windows a poll asks for (`[source.window]`), here (where either goes in a request is the
//! source's `request` module);
//! where cursors are kept, [`store`]; which process polls, [`lease`]; and what `aqueduct
//! status` and `aqueduct cursor --set` say and do, [`status`] and [`set`].

pub mod lease;
pub mod store;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::jq;
use crate::source::http::Bindings;
use crate::source::http::request::TimeWindow;
use crate::spec::{Cursor, Incremental, Source, Spec, Window};

/// Why a cursor could not go into a request, or move on after a page.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("source.window.start ({0}) is in the future: no window is due yet")]
    NoWindowDue(DateTime<Utc>),
    #[error("the page is not JSON: {0}")]
    PageNotJson(serde_json::Error),
    #[error("source.cursor.value: {0}")]
    Value(jq::Error),
}

/// Where a new pipeline's first poll stands: at the initial cursor, or at the first window
/// (cut at `now` less the lag).
pub fn first_bindings(source: &Source, now: DateTime<Utc>) -> Result<Bindings, Error> {
    match &source.incremental {
        None => Ok(Bindings::default()),
        Some(Incremental::Cursor(cursor)) => Ok(Bindings::cursor(
            cursor.initial.clone().unwrap_or(Value::Null),
        )),
        Some(Incremental::Window(window)) => {
            let start = window.first_start(now);
            match windows(window, start, live_until(window, now), Some(1)).first() {
                Some(w) => Ok(Bindings::window(*w)),
                None => Err(Error::NoWindowDue(start)),
            }
        }
    }
}

/// The cursor after a page: `[source.cursor] value` on the page with `$cursor` the value so
/// far; `null` keeps the value so far.
pub fn advance(cursor: &Cursor, so_far: &Value, page: &[u8]) -> Result<Value, Error> {
    let page: Value = serde_json::from_slice(page).map_err(Error::PageNotJson)?;
    let next = cursor
        .value
        .run_with_var(&page, so_far)
        .map_err(Error::Value)?;
    Ok(if next.is_null() { so_far.clone() } else { next })
}

/// What `aqueduct status` prints: the saved cursor (or where the first poll starts) and, for
/// windows, how far behind the pipeline is.
pub async fn status(spec: &Spec, kind: &Incremental) -> Result<String, crate::kafka::Error> {
    let k = &spec.kafka;
    crate::kafka::check_connection(k).await?;
    let found = store::Store::open(k, &spec.name)?.latest().await?;
    let now = Utc::now();
    let mut text = format!(
        "pipeline: {}\ncursor topic: {}\n",
        spec.name, k.cursor_topic
    );
    match (&found, kind) {
        (None, Incremental::Window(w)) => text.push_str(&format!(
            "cursor: none saved; the first poll starts at source.window.start, {}\n",
            window_cursor(w.first_start(now))
        )),
        (None, Incremental::Cursor(c)) => text.push_str(&format!(
            "cursor: none saved; the first poll uses source.cursor.initial, {}\n",
            c.initial.as_ref().unwrap_or(&Value::Null)
        )),
        (Some(found), _) => text.push_str(&format!(
            "cursor: {}\nsaved at: {} by {} (offset {})\n",
            found.saved.cursor, found.saved.written_at, found.saved.writer, found.offset
        )),
    }
    if let Incremental::Window(w) = kind {
        let at = match found.as_ref().map(|f| &f.saved.cursor) {
            // Per parent: as far behind as the parent furthest behind.
            Some(Value::Object(parents)) => parents.values().filter_map(parse_window_cursor).min(),
            Some(saved) => parse_window_cursor(saved),
            None => Some(w.first_start(now)),
        };
        if let Some(at) = at {
            let until = live_until(w, now);
            let behind = (until - at).to_std().unwrap_or_default();
            text.push_str(&format!(
                "behind: {} ({} window(s) of {} due)\n",
                humantime::format_duration(std::time::Duration::from_secs(behind.as_secs())),
                windows(w, at, until, None).len(),
                humantime::format_duration(w.size)
            ));
        }
    }
    Ok(text)
}

/// `aqueduct cursor --set`: saves `value` as the pipeline's cursor, whatever was saved before;
/// the next poll starts there.
pub async fn set(spec: &Spec, value: Value) -> Result<store::Found, crate::kafka::Error> {
    let k = &spec.kafka;
    crate::kafka::check_connection(k).await?;
    store::ensure_topic(k).await?;
    let producer = crate::kafka::produce::Producer::new(k)?;
    store::Store::open(k, &spec.name)?
        .save(&producer, value, "aqueduct cursor --set")
        .await
}

/// Windows of `window.size` from `from`, the last one cut at `until`, at most `max`.
pub fn windows(
    window: &Window,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    max: Option<u32>,
) -> Vec<TimeWindow> {
    let size = chrono::Duration::from_std(window.size).unwrap_or(chrono::Duration::MAX);
    let mut out = Vec::new();
    let mut start = from;
    while start < until && max.is_none_or(|max| out.len() < max as usize) {
        let end = start.checked_add_signed(size).unwrap_or(until).min(until);
        out.push(TimeWindow { start, end });
        start = end;
    }
    out
}

/// Where the live windows end now: `now` less `window.lag`.
pub fn live_until(window: &Window, now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::from_std(window.lag).unwrap_or_default()
}

/// A window cursor (the end of the last window done) as saved.
pub fn window_cursor(t: DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// A saved window cursor read back; `None` if it is not an RFC 3339 time.
pub fn parse_window_cursor(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value.as_str()?)
        .ok()
        .map(|t| t.to_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::{cursor_spec, the_cursor, the_window, time, window_spec};
    use serde_json::json;

    #[test]
    fn windows_step_by_size_cut_at_the_end_and_bounded() {
        let spec = window_spec("");
        let w = the_window(&spec);
        let from = time("2026-11-01T00:00:00Z");
        let all = windows(w, from, time("2026-11-01T02:30:00Z"), None);
        assert_eq!(
            all,
            vec![
                TimeWindow {
                    start: from,
                    end: time("2026-11-01T01:00:00Z")
                },
                TimeWindow {
                    start: time("2026-11-01T01:00:00Z"),
                    end: time("2026-11-01T02:00:00Z")
                },
                TimeWindow {
                    start: time("2026-11-01T02:00:00Z"),
                    end: time("2026-11-01T02:30:00Z")
                },
            ]
        );
        assert_eq!(
            windows(w, from, time("2026-11-02T00:00:00Z"), Some(5)).len(),
            5
        );
        assert!(windows(w, from, from, None).is_empty(), "nothing after now");
    }

    #[test]
    fn a_window_cursor_reads_back() {
        let t = time("2026-11-01T05:00:00Z");
        assert_eq!(parse_window_cursor(&window_cursor(t)), Some(t));
        assert_eq!(parse_window_cursor(&json!(5)), None);
        assert_eq!(parse_window_cursor(&json!("yesterday")), None);
    }

    #[test]
    fn a_cursor_moves_by_its_expression_and_keeps_its_value_on_null() {
        let spec = cursor_spec("value = '[$cursor, .items[].updated] | max'\nquery = \"since\"");
        let c = the_cursor(&spec);
        let page = json!({"items": [{"updated": 5}, {"updated": 9}]}).to_string();
        assert_eq!(advance(c, &json!(3), page.as_bytes()).unwrap(), json!(9));
        assert_eq!(advance(c, &json!(12), page.as_bytes()).unwrap(), json!(12));
        let spec = cursor_spec("value = '.next'\nquery = \"cursor\"");
        let c = the_cursor(&spec);
        let last = json!({"items": [], "next": null}).to_string();
        assert_eq!(
            advance(c, &json!("abc"), last.as_bytes()).unwrap(),
            json!("abc")
        );
    }
}
