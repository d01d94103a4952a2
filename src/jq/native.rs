//! Native evaluators for the common forms of column expressions: paths (`.a.b`, `."c d"`),
//! strings interpolating them (`"\(.a) \(.b)"`), `x | tostring`, `x | tonumber`, `x // y`, and
//! string, integer, `null` and boolean literals; and, for record selectors, `.a.b[]`, whose
//! elements are cut out of a response body as raw JSON text without decoding the page.
//!
//! They read the decoded record directly, where jaq would need the whole record converted into
//! its own value form first (the bulk of a row's mapping cost). They give exactly what jaq gives,
//! or nothing: a value they cannot reproduce byte for byte (a float, an array or object turned
//! into text, a string `tonumber` would have to parse loosely) and anything that would be an
//! error in jaq make [`Native::eval`] return `None`, and the caller runs jaq, which produces the
//! value or the error message. The property tests below hold them to jaq over random records.

use std::borrow::Cow;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::path::{Opt, Part};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::Json;

/// An expression of one of the native forms.
#[derive(Debug, Clone, PartialEq)]
pub enum Native {
    /// `.a.b."c d"`: a missing key or a null gives null.
    Path(Vec<String>),
    /// `"text \(x) text"`.
    Text(Vec<Piece>),
    /// `x | tostring`.
    ToString(Box<Native>),
    /// `x | tonumber`.
    ToNumber(Box<Native>),
    /// `x // y`: `y` when `x` is null or false.
    Alt(Box<Native>, Box<Native>),
    /// A string, integer, `null`, `true` or `false`.
    Literal(Value),
    /// `.a.b[]`: the elements of the array at a path (only for [`Native::raw_elements`]).
    Each(Vec<String>),
}

/// A part of an interpolated string.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Text(String),
    Value(Native),
}

/// A value on its way: borrowed from the record until something new is made.
enum Out<'a> {
    Json(&'a Json<'a>),
    Owned(Value),
}

static NULL: Json<'static> = Json::Null;

impl Native {
    /// The native form of `code`, if it has one.
    pub fn compile(code: &str) -> Option<Native> {
        let term = jaq_core::load::parse(code, |p| p.term())?;
        from_term(&term)
    }

    /// The value jaq would give for `json`, or `None` when jaq must decide.
    pub fn eval(&self, json: &Json) -> Option<Value> {
        Some(match self.out(json)? {
            Out::Json(j) => Value::from(j),
            Out::Owned(v) => v,
        })
    }

    fn out<'a>(&'a self, json: &'a Json<'a>) -> Option<Out<'a>> {
        Some(match self {
            Native::Path(keys) => Out::Json(path(json, keys)?),
            Native::Text(pieces) => {
                let mut text = String::new();
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => text.push_str(t),
                        Piece::Value(n) => text.push_str(&text_of(&n.out(json)?)?),
                    }
                }
                Out::Owned(Value::String(text))
            }
            Native::ToString(inner) => match inner.out(json)? {
                string @ (Out::Json(Json::Str(_)) | Out::Owned(Value::String(_))) => string,
                other => Out::Owned(Value::String(text_of(&other)?.into_owned())),
            },
            Native::ToNumber(inner) => match inner.out(json)? {
                number @ (Out::Json(Json::Number(_)) | Out::Owned(Value::Number(_))) => number,
                Out::Json(Json::Str(s)) => Out::Owned(plain_integer(s)?),
                Out::Owned(Value::String(s)) => Out::Owned(plain_integer(&s)?),
                _ => return None,
            },
            Native::Alt(first, second) => match first.out(json)? {
                Out::Json(Json::Null | Json::Bool(false))
                | Out::Owned(Value::Null | Value::Bool(false)) => second.out(json)?,
                value => value,
            },
            Native::Literal(v) => Out::Owned(v.clone()),
            Native::Each(_) => return None,
        })
    }

    /// For a plain path, the value jaq would give for an already decoded record; `None` for
    /// every other form (and where jaq would fail).
    pub fn path_value(&self, json: &Value) -> Option<Value> {
        let Native::Path(keys) = self else {
            return None;
        };
        let mut at = json;
        for key in keys {
            at = match at {
                Value::Object(map) => map.get(key).unwrap_or(&Value::Null),
                Value::Null => &Value::Null,
                _ => return None,
            };
        }
        Some(at.clone())
    }

    /// For `.a.b[]` on a body whose value at the path is an array: the elements' JSON text,
    /// borrowed from the body, found without building the page's values. `None` for every
    /// other form and case (jaq decides: objects iterate their values, the rest are errors).
    pub fn raw_elements<'a>(&self, body: &'a [u8]) -> Option<Vec<&'a RawValue>> {
        let Native::Each(keys) = self else {
            return None;
        };
        match (Walk { keys }).deserialize(&mut serde_json::Deserializer::from_slice(body)) {
            Ok(Found::Array(elements)) => Some(elements),
            _ => None,
        }
    }
}

/// What is at the end of a walk down a body.
enum Found<'de> {
    Array(Vec<&'de RawValue>),
    Other,
}

/// Follows `keys` through nested objects, skipping every other value unread, and collects the
/// elements of the array found there.
struct Walk<'k> {
    keys: &'k [String],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Found<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found<'de>, A::Error> {
        if !self.keys.is_empty() {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Found::Other);
        }
        let mut elements = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(element) = seq.next_element::<&RawValue>()? {
            elements.push(element);
        }
        Ok(Found::Array(elements))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found<'de>, A::Error> {
        let Some((first, rest)) = self.keys.split_first() else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Found::Other);
        };
        // The last of duplicate keys wins, as in jaq's reader.
        let mut found = Found::Other;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == first.as_str() {
                found = map.next_value_seed(Walk { keys: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Found<'de>, E> {
        Ok(Found::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Found<'de>, E> {
        Ok(Found::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Found<'de>, E> {
        Ok(Found::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Found<'de>, E> {
        Ok(Found::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Found<'de>, E> {
        Ok(Found::Other)
    }
    fn visit_unit<E>(self) -> Result<Found<'de>, E> {
        Ok(Found::Other)
    }
}

/// jq's `.a.b` on the record; `None` where jq would fail (indexing a non-object).
fn path<'a>(json: &'a Json<'a>, keys: &[String]) -> Option<&'a Json<'a>> {
    let mut at = json;
    for key in keys {
        at = match at {
            // The last of duplicate keys wins, as in jaq's reader.
            Json::Object(o) => o
                .iter()
                .filter(|(k, _)| k == key)
                .last()
                .map_or(&NULL, |(_, v)| v),
            Json::Null => &NULL,
            _ => return None,
        };
    }
    Some(at)
}

/// How jq writes a scalar into a string; `None` for what only jaq formats exactly (floats,
/// arrays, objects).
fn text_of<'a>(out: &'a Out<'a>) -> Option<Cow<'a, str>> {
    let integer = |i: Option<i64>, u: Option<u64>| match (i, u) {
        (Some(i), _) => Some(Cow::Owned(i.to_string())),
        (None, Some(u)) => Some(Cow::Owned(u.to_string())),
        _ => None,
    };
    match out {
        Out::Json(Json::Str(s)) => Some(Cow::Borrowed(s)),
        Out::Json(Json::Null) | Out::Owned(Value::Null) => Some(Cow::Borrowed("null")),
        Out::Json(Json::Bool(b)) | Out::Owned(Value::Bool(b)) => {
            Some(Cow::Borrowed(if *b { "true" } else { "false" }))
        }
        Out::Json(Json::Number(n)) => integer(n.as_i64(), n.as_u64()),
        Out::Owned(Value::String(s)) => Some(Cow::Borrowed(s)),
        Out::Owned(Value::Number(n)) => integer(n.as_i64(), n.as_u64()),
        _ => None,
    }
}

/// `"42"` or `"-7"` as a number; anything looser (leading zeros, signs, spaces, fractions) is
/// left to jaq.
fn plain_integer(s: &str) -> Option<Value> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !plain {
        return None;
    }
    s.parse::<i64>().ok().map(Value::from)
}

fn from_term(t: &Term<&str>) -> Option<Native> {
    Some(match t {
        Term::Id => Native::Path(Vec::new()),
        Term::Path(head, path) if matches!(**head, Term::Id) => match path.0.split_last() {
            Some(((Part::Range(None, None), Opt::Essential), keys)) => {
                Native::Each(path_keys(keys)?)
            }
            _ => Native::Path(path_keys(&path.0)?),
        },
        Term::Str(None, parts) => Native::Text(
            parts
                .iter()
                .map(|part| match part {
                    StrPart::Str(s) => Some(Piece::Text((*s).to_owned())),
                    StrPart::Char(c) => Some(Piece::Text(c.to_string())),
                    StrPart::Term(t) => from_term(t).map(Piece::Value),
                })
                .collect::<Option<_>>()?,
        ),
        Term::BinOp(value, BinaryOp::Pipe(None), f) => match &**f {
            Term::Call("tostring", args) if args.is_empty() => {
                Native::ToString(Box::new(from_term(value)?))
            }
            Term::Call("tonumber", args) if args.is_empty() => {
                Native::ToNumber(Box::new(from_term(value)?))
            }
            _ => return None,
        },
        Term::BinOp(first, BinaryOp::Alt, second) => {
            Native::Alt(Box::new(from_term(first)?), Box::new(from_term(second)?))
        }
        Term::Num(n) => Native::Literal(Value::from(n.parse::<i64>().ok()?)),
        Term::Call(name, args) if args.is_empty() => Native::Literal(match *name {
            "null" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return None,
        }),
        _ => return None,
    })
}

/// The keys of `.a."b c"`; `None` for any other path part.
fn path_keys(parts: &[(Part<Term<&str>>, Opt)]) -> Option<Vec<String>> {
    parts
        .iter()
        .map(|(part, opt)| match (part, opt) {
            (Part::Index(key), Opt::Essential) => literal_text(key),
            _ => None,
        })
        .collect()
}

/// A string literal without interpolation, such as the key of `."c d"`.
fn literal_text(t: &Term<&str>) -> Option<String> {
    let Term::Str(None, parts) = t else {
        return None;
    };
    parts
        .iter()
        .map(|part| match part {
            StrPart::Str(s) => Some((*s).to_owned()),
            StrPart::Char(c) => Some(c.to_string()),
            StrPart::Term(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jq::Jq;
    use proptest::prelude::*;
    use serde_json::json;

    /// jaq's answer, with the native evaluator out of the way.
    fn jaq(code: &str, record: &Value) -> Result<Vec<Value>, String> {
        let mut jq = Jq::compile(code).unwrap();
        jq.native = None;
        jq.run(record).map_err(|e| e.to_string())
    }

    #[test]
    fn the_forms_of_users_toml_are_native() {
        let forms = [
            (
                ".login.uuid",
                Native::Path(vec!["login".into(), "uuid".into()]),
            ),
            (".", Native::Path(vec![])),
            (
                "  .\"a b\".c ",
                Native::Path(vec!["a b".into(), "c".into()]),
            ),
            (
                ".location.postcode | tostring",
                Native::ToString(Box::new(Native::Path(vec![
                    "location".into(),
                    "postcode".into(),
                ]))),
            ),
            (
                r#""\(.a), \(.b)!""#,
                Native::Text(vec![
                    Piece::Value(Native::Path(vec!["a".into()])),
                    Piece::Text(", ".into()),
                    Piece::Value(Native::Path(vec!["b".into()])),
                    Piece::Text("!".into()),
                ]),
            ),
            (
                ".a // \"none\"",
                Native::Alt(
                    Box::new(Native::Path(vec!["a".into()])),
                    Box::new(Native::Text(vec![Piece::Text("none".into())])),
                ),
            ),
        ];
        for (code, native) in forms {
            assert_eq!(Native::compile(code), Some(native), "{code}");
        }
        for not_native in [
            ".a[0]",
            ".a?",
            "..",
            ".a | .b",
            "length",
            ".a + 1",
            "@base64 \"x\"",
            "def f: 1; f",
        ] {
            assert_eq!(Native::compile(not_native), None, "{not_native}");
        }
    }

    #[test]
    fn what_only_jaq_does_exactly_is_left_to_jaq() {
        let record = json!({"f": 1.5, "o": {"x": 1}, "s": "x", "z": "0010", "n": 3});
        for code in [
            ".s.x",
            "\"\\(.f)\"",
            ".o | tostring",
            ".z | tonumber",
            ".s | tonumber",
            ".n.x // 1",
        ] {
            let native = Native::compile(code).unwrap();
            assert_eq!(native.eval(&Json::from(&record)), None, "{code}");
        }
        let native = Native::compile("\"\\(.n)-\\(.s)-\\(.missing)\"").unwrap();
        assert_eq!(native.eval(&Json::from(&record)), Some(json!("3-x-null")));
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (i64::MAX as u64..=u64::MAX).prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            Just(json!(1.0)),
            "[0-9]{1,4}".prop_map(Value::from),
            "-?[0-9]{1,20}".prop_map(Value::from),
            "[ +a-zé\"\\\\0-9.eE-]{0,8}".prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
        ]
    }

    fn record() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop::sample::select(vec!["a", "b", "c d"]),
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    fn path_code() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![".a", ".b", ".\"c d\"", ".missing"]),
            0..4,
        )
        .prop_map(|keys| {
            if keys.is_empty() {
                ".".into()
            } else {
                keys.concat()
            }
        })
    }

    fn code() -> impl Strategy<Value = String> {
        let literal = prop::sample::select(vec![
            "null",
            "false",
            "true",
            "7",
            "\"x\"",
            "\"\\u00e9\\n\"",
        ]);
        prop_oneof![
            path_code(),
            path_code().prop_map(|p| format!("{p} | tostring")),
            path_code().prop_map(|p| format!("{p} | tonumber")),
            (path_code(), path_code(), "[ a-z,é]{0,4}")
                .prop_map(|(p, q, t)| format!("\"{t}\\({p}){t}\\({q} | tostring)\"")),
            (path_code(), literal.clone()).prop_map(|(p, l)| format!("{p} // {l}")),
            (path_code(), path_code(), literal).prop_map(|(p, q, l)| format!("{p} // {q} // {l}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whenever the native evaluator answers, jaq answers the same single value.
        #[test]
        fn native_equals_jaq(code in code(), record in record()) {
            let native = Native::compile(&code);
            prop_assert!(native.is_some(), "`{}` should be native", code);
            if let Some(value) = native.unwrap().eval(&Json::from(&record)) {
                prop_assert_eq!(jaq(&code, &record), Ok(vec![value]), "`{}` on {}", code, record);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// The records cut out of a body are jaq's records, as JSON text.
        #[test]
        fn raw_elements_equal_jaq(path in path_code(), body in record()) {
            let code = format!("{}[]", if path == "." { "." } else { &path });
            let native = Native::compile(&code);
            prop_assert!(matches!(native, Some(Native::Each(_))), "`{}` should be native", code);
            let text = body.to_string();
            if let Some(raw) = native.unwrap().raw_elements(text.as_bytes()) {
                let raw: Vec<Value> = raw.iter().map(|r| serde_json::from_str(r.get()).unwrap()).collect();
                prop_assert_eq!(jaq(&code, &body), Ok(raw), "`{}` on {}", code, text);
            }
        }
    }

    #[test]
    fn users_records_map_natively() {
        // The stand-in's users are all answered natively by users.toml's columns.
        let spec = crate::spec::load(std::path::Path::new("pipelines/users.toml")).unwrap();
        for i in 0..200 {
            let user = randomuser_standin::user("native", 1, i, false);
            let json = Json::from(&user);
            for col in spec.cassandra.tables.iter().flat_map(|t| &t.columns) {
                let native = col
                    .jq
                    .native
                    .as_ref()
                    .unwrap_or_else(|| panic!("{} is native", col.name));
                let value = native
                    .eval(&json)
                    .unwrap_or_else(|| panic!("{} evaluated natively", col.name));
                assert_eq!(jaq(col.jq.code(), &user), Ok(vec![value]), "{}", col.name);
            }
        }
    }
}
