//! The request's `{{ jq }}` placeholders ([`crate::template`]): found in the URL's path and
//! query, the plain query and header values, and the body's strings; each compiled, and
//! refused if it reads a variable nothing in the spec fills.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Checker;
use crate::spec::Templates;
use crate::spec::raw::{RawParam, RawParent, RawSource, Scalar};
use crate::template::Template;

/// Which of the template variables the spec fills, and what would.
pub(super) struct Filled {
    pub cursor: bool,
    pub window: bool,
    pub token: bool,
    pub parent: bool,
}

impl Filled {
    pub(super) fn of(raw: &RawSource) -> Filled {
        Filled {
            cursor: raw.cursor.is_some(),
            window: raw.window.is_some(),
            token: raw.pagination.as_ref().is_some_and(|p| p.mode == "cursor"),
            parent: raw.parent.is_some(),
        }
    }

    /// What fills the templates of `[source.parent]`'s own request: its page token only.
    pub(super) fn of_parent(raw: &RawParent) -> Filled {
        Filled {
            cursor: false,
            window: false,
            token: raw.pagination.as_ref().is_some_and(|p| p.mode == "cursor"),
            parent: false,
        }
    }

    /// Why nothing fills `var`, or `None` if something does.
    fn unfilled(&self, var: &str) -> Option<&'static str> {
        match var {
            "$cursor" if !self.cursor => Some("$cursor is [source.cursor]'s value"),
            "$start" | "$end" if !self.window => {
                Some("$start and $end are [source.window]'s bounds")
            }
            "$token" if !self.token => {
                Some("$token is the page token of [source.pagination] mode = \"cursor\"")
            }
            "$parent" if !self.parent => {
                Some("$parent is a [source.parent] record, and the child request's only")
            }
            _ => None,
        }
    }
}

/// The template in `text` at `key`, if it has one; an error at `key` if it is broken or reads
/// what nothing fills.
fn template(c: &mut Checker, key: &str, text: &str, filled: &Filled) -> Option<Template> {
    let template = Template::parse(text).map_err(|e| c.err(key, e)).ok()??;
    let mut fine = true;
    for var in template.reads() {
        if let Some(why) = filled.unfilled(var) {
            c.err(
                key,
                format!("`{text}` reads {var}, which nothing fills in this spec ({why})"),
            );
            fine = false;
        }
    }
    fine.then_some(template)
}

/// Takes the templated values (plain strings with `{{`) out of `[source] headers` and
/// `query`, and finds the body's templated strings.
pub(super) fn templates(c: &mut Checker, raw: &mut RawSource, filled: &Filled) -> Templates {
    let mut out = Templates::default();
    for (name, template) in take(c, "source.query", &mut raw.query, filled) {
        out.query.push((name, template));
    }
    for (name, template) in take(c, "source.headers", &mut raw.headers, filled) {
        let key = format!("source.headers.{name}");
        if let Some(name) = c.header_name(&key, &name) {
            out.headers.push((name, template));
        }
    }
    if let Some(body) = &raw.body {
        body_strings(
            c,
            "source.body",
            body,
            &mut String::new(),
            filled,
            &mut out.body,
        );
    }
    out
}

/// The entries of `map` whose value is a plain string with a placeholder, taken out.
pub(super) fn take(
    c: &mut Checker,
    section: &str,
    map: &mut BTreeMap<String, RawParam>,
    filled: &Filled,
) -> Vec<(String, Template)> {
    let templated: Vec<String> = map
        .iter()
        .filter(|(_, v)| matches!(v, RawParam::Plain(Scalar::String(s)) if s.contains("{{")))
        .map(|(k, _)| k.clone())
        .collect();
    let mut out = Vec::new();
    for name in templated {
        let Some(RawParam::Plain(Scalar::String(text))) = map.remove(&name) else {
            continue;
        };
        if let Some(t) = template(c, &format!("{section}.{name}"), &text, filled) {
            out.push((name, t));
        }
    }
    out
}

/// Every string of `value` (at JSON pointer `at` of the body at `key`) with a placeholder.
pub(super) fn body_strings(
    c: &mut Checker,
    key: &str,
    value: &Value,
    at: &mut String,
    filled: &Filled,
    out: &mut Vec<(String, Template)>,
) {
    match value {
        Value::String(text) => {
            let key = format!("{key}{}", at.replace('/', "."));
            if let Some(t) = template(c, &key, text, filled) {
                out.push((at.clone(), t));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = at.len();
                at.push_str(&format!("/{i}"));
                body_strings(c, key, item, at, filled, out);
                at.truncate(len);
            }
        }
        Value::Object(fields) => {
            for (name, item) in fields {
                let len = at.len();
                at.push('/');
                at.push_str(&name.replace('~', "~0").replace('/', "~1"));
                body_strings(c, key, item, at, filled, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

/// A stand-in for the `i`th placeholder of the URL while it is parsed: letters and digits
/// only, which no part of a URL changes.
fn mark(i: usize) -> String {
    format!("aqueductplaceholder{i}x")
}

/// The URL (its path as written, templated query parameters taken out), its path's template
/// and its templated query parameters (before the others) going into `templates`. A
/// placeholder in the scheme, host or port is refused: credentials go to one origin.
pub(super) fn url(
    c: &mut Checker,
    key: &str,
    text: &str,
    filled: &Filled,
    templates: &mut Templates,
) -> Option<reqwest::Url> {
    let mut spans = Vec::new();
    let mut marked = String::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else {
            // Template::parse names the problem.
            template(c, key, text, filled);
            return None;
        };
        marked.push_str(&rest[..open]);
        marked.push_str(&mark(spans.len()));
        spans.push(&rest[open..open + close + 2]);
        rest = &rest[open + close + 2..];
    }
    marked.push_str(rest);
    let restore = |s: &str| {
        spans
            .iter()
            .enumerate()
            .fold(s.to_owned(), |s, (i, span)| s.replace(&mark(i), span))
    };
    let mut url = match reqwest::Url::parse(&marked) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => url,
        Ok(url) => {
            c.err(
                key,
                format!("scheme `{}` is not http or https", url.scheme()),
            );
            return None;
        }
        Err(e) => {
            c.err(key, format!("`{text}` is not a URL: {e}"));
            return None;
        }
    };
    if spans.is_empty() {
        return Some(url);
    }
    if url
        .origin()
        .ascii_serialization()
        .contains("aqueductplaceholder")
        || url.username().contains("aqueductplaceholder")
        || url
            .fragment()
            .is_some_and(|f| f.contains("aqueductplaceholder"))
    {
        c.err(
            key,
            "a placeholder may stand in the URL's path and query only, not its scheme, host, port, user or fragment: the source's credentials go to one origin",
        );
        return None;
    }
    let path = restore(url.path());
    templates.path = template(c, key, &path, filled);
    url.set_path(&path);
    let mut kept = Vec::new();
    let mut query = Vec::new();
    for (name, value) in url.query_pairs() {
        if name.contains("aqueductplaceholder") {
            c.err(
                key,
                format!(
                    "a placeholder names the query parameter `{}`: names are fixed, values may be templates",
                    restore(&name)
                ),
            );
        } else if value.contains("aqueductplaceholder") {
            if let Some(t) = template(c, key, &restore(&value), filled) {
                query.push((name.into_owned(), t));
            }
        } else {
            kept.push((name.into_owned(), value.into_owned()));
        }
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    query.append(&mut templates.query);
    templates.query = query;
    Some(url)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_variable_has_a_reason_when_unfilled() {
        let none = super::Filled {
            cursor: false,
            window: false,
            token: false,
            parent: false,
        };
        for var in crate::template::VARS {
            assert!(none.unfilled(var).is_some(), "{var}");
        }
    }
}
