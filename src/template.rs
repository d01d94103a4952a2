//! Request templates: text with `{{ jq }}` placeholders, put in the URL's path, a query value,
//! a header or a string of the body, filled as each request is built from the poll's
//! [`VARS`]: `$cursor`, the window's `$start` and `$end`, the page `$token`, and `$parent`.
//!
//! A placeholder is a jq expression (its input is `null`) ending at the first `}}`; what it
//! yields goes in as text (a string as it is, `null` as nothing, anything else as JSON). A
//! template that is one placeholder and nothing else yields the value itself: a body field
//! keeps its type, and a query parameter or header whose value is `null` is left out.

use serde_json::Value;

use crate::jq::{self, Jq};

/// The variables a placeholder may read, in the order [`Template::render`] takes their values.
pub const VARS: &[&str] = &["$cursor", "$start", "$end", "$token", "$parent"];

/// Text with placeholders.
#[derive(Debug)]
pub struct Template {
    parts: Vec<Part>,
    /// Which of [`VARS`] it reads.
    reads: Vec<&'static str>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Expr(Jq),
}

impl Template {
    /// The template in `text`, or `None` if it has no placeholder (no `{{`). An unclosed
    /// placeholder, or one that is no jq expression, is an error saying which.
    pub fn parse(text: &str) -> Result<Option<Template>, String> {
        if !text.contains("{{") {
            return Ok(None);
        }
        let mut parts = Vec::new();
        let mut reads = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(format!(
                    "`{}` opens a placeholder with {{{{ that no }}}} closes",
                    crate::text::shorten(&rest[open..], 60)
                ));
            };
            let code = after[..close].trim();
            if code.is_empty() {
                return Err("`{{}}` is an empty placeholder: write a jq expression in it, e.g. {{ $cursor }}".to_owned());
            }
            if reads_environment(code) {
                return Err(format!(
                    "the placeholder {{{{ {code} }}}} reads the environment: what it yields is part of the request, which logs and errors show; a credential goes in [source.auth] or a secret header or query value, which never show"
                ));
            }
            let expr = Jq::compile_with_vars(code, VARS)
                .map_err(|e| format!("the placeholder {{{{ {code} }}}}: {e}"))?;
            for var in VARS {
                if !reads.contains(var) && reads_var(code, var) {
                    reads.push(*var);
                }
            }
            parts.push(Part::Expr(expr));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Some(Template { parts, reads }))
    }

    /// Which of [`VARS`] its placeholders read.
    pub fn reads(&self) -> &[&'static str] {
        &self.reads
    }

    /// Whether it reads `var`.
    pub fn reads_var(&self, var: &str) -> bool {
        self.reads.contains(&var)
    }

    /// The text with every placeholder filled from `values` (those of [`VARS`], in order); a
    /// template of one placeholder alone gives its value as it is.
    pub fn render(&self, values: &[Value]) -> Result<Value, jq::Error> {
        if let [Part::Expr(expr)] = self.parts.as_slice() {
            return expr.run_with_vars(&Value::Null, values);
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(expr) => match expr.run_with_vars(&Value::Null, values)? {
                    Value::Null => {}
                    Value::String(s) => out.push_str(&s),
                    other => out.push_str(&other.to_string()),
                },
            }
        }
        Ok(Value::String(out))
    }
}

/// Whether jq `code` names jq's `env` or `$ENV` (outside string literals).
fn reads_environment(code: &str) -> bool {
    let mut outside = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for ch in code.chars() {
        match (in_string, escaped, ch) {
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (true, _, _) => escaped = false,
            (false, _, '"') => in_string = true,
            (false, _, ch) => outside.push(ch),
        }
        if !in_string {
            continue;
        }
        outside.push(' ');
    }
    // A word after `.` is a field (`$parent.env`), not the function.
    let mut previous = ' ';
    let mut word = String::new();
    let mut after_dot = false;
    for ch in outside.chars().chain([' ']) {
        if ch.is_alphanumeric() || ch == '_' || ch == '$' {
            if word.is_empty() {
                after_dot = previous == '.';
            }
            word.push(ch);
        } else {
            if (word == "env" && !after_dot) || word == "$ENV" {
                return true;
            }
            word.clear();
        }
        previous = ch;
    }
    false
}

/// Whether jq `code` reads `var`: it does if it no longer compiles without it.
fn reads_var(code: &str, var: &str) -> bool {
    let others: Vec<&str> = VARS.iter().copied().filter(|v| *v != var).collect();
    Jq::compile_with_vars(code, &others).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(cursor: Value, start: Value, end: Value) -> Vec<Value> {
        vec![cursor, start, end, Value::Null, Value::Null]
    }

    #[test]
    fn text_without_placeholders_is_no_template() {
        assert!(Template::parse("plain { text }").unwrap().is_none());
        // GraphQL's braces are text; only {{ opens a placeholder.
        assert!(
            Template::parse("query { issues(first: 50) { nodes { id } }}")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn placeholders_are_filled_as_text_or_kept_as_values_alone() {
        let t = Template::parse("[{{ $start }},{{ $end }}]")
            .unwrap()
            .unwrap();
        assert_eq!(t.reads(), &["$start", "$end"]);
        assert_eq!(
            t.render(&values(json!(null), json!(1793491200), json!(1793494800)))
                .unwrap(),
            json!("[1793491200,1793494800]")
        );
        let t = Template::parse("{{ $cursor }}").unwrap().unwrap();
        assert_eq!(
            t.render(&values(json!(42), json!(null), json!(null)))
                .unwrap(),
            json!(42)
        );
        assert_eq!(
            t.render(&values(json!(null), json!(null), json!(null)))
                .unwrap(),
            json!(null)
        );
        let t = Template::parse("WHERE t >= '{{ $start }}' AND x = {{ $cursor // 0 }}")
            .unwrap()
            .unwrap();
        assert_eq!(
            t.render(&values(
                json!(null),
                json!("2026-11-01T00:00:00Z"),
                json!(null)
            ))
            .unwrap(),
            json!("WHERE t >= '2026-11-01T00:00:00Z' AND x = 0")
        );
        // jq's time functions format a bound.
        let t = Template::parse("{{ $start | fromdate | strftime(\"%Y-%m-%d\") }}")
            .unwrap()
            .unwrap();
        assert_eq!(
            t.render(&values(
                json!(null),
                json!("2026-11-01T00:00:00Z"),
                json!(null)
            ))
            .unwrap(),
            json!("2026-11-01")
        );
    }

    #[test]
    fn a_broken_placeholder_is_refused_saying_which() {
        let err = Template::parse("/items/{{ $cursor").unwrap_err();
        assert!(err.contains("no }} closes"), "{err}");
        let err = Template::parse("/items/{{ }}").unwrap_err();
        assert!(err.contains("empty placeholder"), "{err}");
        let err = Template::parse("/items/{{ $since }}").unwrap_err();
        assert!(
            err.contains("{{ $since }}") && err.contains("$since"),
            "{err}"
        );
        let err = Template::parse("{{ .a | }}").unwrap_err();
        assert!(err.contains("{{ .a | }}"), "{err}");
        // The environment may hold secrets, and a request shows in logs.
        for code in [
            "{{ env.API_KEY }}",
            "?k={{ $ENV.KEY }}",
            "{{ env | .HOME }}",
        ] {
            let err = Template::parse(code).unwrap_err();
            assert!(err.contains("reads the environment"), "{code}: {err}");
        }
        assert!(
            Template::parse("{{ \"env\" }}-{{ $cursor.environment }}-{{ $cursor.env }}").is_ok()
        );
    }
}
