//! Compiled jq filters (the jaq engine) over JSON records.
//!
//! Every jq expression of a spec (record selector, message key, column values, next-page link)
//! is compiled once by [`Jq::compile`] when the spec is loaded; the hot path only runs it. The
//! common column forms (paths, string interpolation of paths, `tostring`, `tonumber`, `//`) also
//! get a [`native`] evaluator that reads the record as decoded, without converting it for jaq;
//! it hands anything it cannot reproduce exactly back to jaq.

mod native;

use std::borrow::Cow;

use jaq_core::load::{Arena, File, Loader, lex};
use jaq_core::{Compiler, Ctx, Vars, data::JustLut, unwrap_valr};
use jaq_json::{Num, Val};
use serde_json::Value;

pub use serde_json_borrow::Value as Json;

use native::Native;

type Filter = jaq_core::Filter<JustLut<Val>>;

/// What went wrong with a jq expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// It does not parse or compile; the message names the column of the first problem.
    #[error("{0}")]
    Compile(String),
    /// It failed on its input: jq's own error, or a value with no JSON form.
    #[error("{0}")]
    Run(String),
    /// It yielded several values where one is wanted.
    #[error("yielded {0} values where one is expected (wrap it in [ ... ] to make a list)")]
    NotOne(usize),
    /// A response body to select records from is not JSON.
    #[error("{0}")]
    NotJson(String),
}

/// A compiled jq expression, with its source text kept for messages.
pub struct Jq {
    code: String,
    filter: Filter,
    /// The native evaluator, for an expression of a common form.
    native: Option<Native>,
    /// How many variables it has (`$cursor`, `$headers`; see [`Jq::compile_with_vars`]).
    vars: usize,
}

impl std::fmt::Debug for Jq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jq({:?})", self.code)
    }
}

impl Jq {
    /// Parses and compiles `code`, naming the column of the first problem on failure.
    pub fn compile(code: &str) -> Result<Jq, Error> {
        Jq::compile_with_vars(code, &[])
    }

    /// Like [`Jq::compile`], for an expression that may read the variables `vars` (e.g.
    /// `["$cursor", "$start"]`), given in that order to [`Jq::run_with_vars`]; reading any
    /// other is a compile error naming it.
    pub fn compile_with_vars(code: &str, vars: &[&str]) -> Result<Jq, Error> {
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let arena = Arena::default();
        let loader = Loader::new(defs);
        let modules = loader
            .load(&arena, File { code, path: () })
            .map_err(|errs| Error::Compile(describe_load_errors(code, errs)))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .with_global_vars(vars.iter().copied())
            .compile(modules)
            .map_err(|errs| Error::Compile(describe_compile_errors(code, errs)))?;
        Ok(Jq {
            code: code.to_owned(),
            filter,
            native: vars.is_empty().then(|| Native::compile(code)).flatten(),
            vars: vars.len(),
        })
    }

    /// The expression as written in the spec.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Runs an expression of one variable ([`Jq::compile_with_vars`]) on `input`, the variable
    /// bound to `value`: its one value (no output is `null`).
    pub fn run_with_var(&self, input: &Value, value: &Value) -> Result<Value, Error> {
        self.run_with_vars(input, std::slice::from_ref(value))
    }

    /// Runs an expression compiled by [`Jq::compile_with_vars`] on `input` with its variables
    /// bound to `values`, in order: its one value (no output is `null`).
    pub fn run_with_vars(&self, input: &Value, values: &[Value]) -> Result<Value, Error> {
        debug_assert_eq!(self.vars, values.len());
        let vars = Vars::new(values.iter().map(|v| to_val(&Json::from(v))));
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, vars);
        let mut out = self
            .filter
            .id
            .run((ctx, to_val(&Json::from(input))))
            .map(unwrap_valr)
            .map(|out| match out {
                Ok(v) => to_json(&v).map_err(Error::Run),
                Err(e) => Err(Error::Run(e.to_string())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        match out.len() {
            0 => Ok(Value::Null),
            1 => Ok(out.remove(0)),
            n => Err(Error::NotOne(n)),
        }
    }

    /// Runs the filter and collects every output; the first runtime error is returned.
    pub fn run(&self, input: &Value) -> Result<Vec<Value>, Error> {
        self.run_on(&Input::new(&Json::from(input)))
    }

    /// Like [`Jq::run`], on a record shared by several filters.
    pub fn run_on(&self, input: &Input) -> Result<Vec<Value>, Error> {
        if let Some(value) = self.native.as_ref().and_then(|n| n.eval(input.json)) {
            return Ok(vec![value]);
        }
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        self.filter
            .id
            .run((ctx, input.val().clone()))
            .map(unwrap_valr)
            .map(|out| match out {
                Ok(v) => to_json(&v).map_err(Error::Run),
                Err(e) => Err(Error::Run(e.to_string())),
            })
            .collect()
    }

    /// Runs the filter where exactly one value is wanted: no output is `null`, and a second
    /// output is an error (write `[ ... ]` to collect many).
    pub fn run_one(&self, input: &Value) -> Result<Value, Error> {
        if let Some(value) = self.native.as_ref().and_then(|n| n.path_value(input)) {
            return Ok(value);
        }
        self.run_one_on(&Input::new(&Json::from(input)))
    }

    /// Runs a record selector on a response body and gives each record's JSON text. For the
    /// common `.a.b[]`, the records are cut out of the body as they are, without decoding the
    /// page; otherwise the page is decoded and jaq selects.
    pub fn records<'a>(&self, body: &'a [u8]) -> Result<Vec<Cow<'a, str>>, Error> {
        if let Some(raw) = self.native.as_ref().and_then(|n| n.raw_elements(body)) {
            return Ok(raw.into_iter().map(|r| Cow::Borrowed(r.get())).collect());
        }
        let json: Json = serde_json::from_slice(body).map_err(|e| Error::NotJson(e.to_string()))?;
        let records = self.run_on(&Input::new(&json))?;
        Ok(records.iter().map(|r| Cow::Owned(r.to_string())).collect())
    }

    /// Like [`Jq::run_one`], on a record shared by several filters.
    pub fn run_one_on(&self, input: &Input) -> Result<Value, Error> {
        if let Some(value) = self.native.as_ref().and_then(|n| n.eval(input.json)) {
            return Ok(value);
        }
        let mut out = self.run_on(input)?;
        match out.len() {
            0 => Ok(Value::Null),
            1 => Ok(out.remove(0)),
            n => Err(Error::NotOne(n)),
        }
    }
}

/// A decoded record shared by several filters: converted to jaq's form at most once, and only
/// if a filter without a native evaluator needs it (cloning a jaq value is cheap:
/// reference-counted).
pub struct Input<'a> {
    json: &'a Json<'a>,
    val: std::cell::OnceCell<Val>,
}

impl<'a> Input<'a> {
    pub fn new(json: &'a Json<'a>) -> Input<'a> {
        Input {
            json,
            val: std::cell::OnceCell::new(),
        }
    }

    fn val(&self) -> &Val {
        self.val.get_or_init(|| to_val(self.json))
    }
}

/// A decoded record in jaq's form, as jaq-json's own reader would build it: integers that fit
/// are integers, others big integers, the rest floats; later duplicate keys win.
fn to_val(json: &Json) -> Val {
    match json {
        Json::Null => Val::Null,
        Json::Bool(b) => Val::Bool(*b),
        Json::Number(n) => Val::Num(match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Num::from_integral(i),
            (None, Some(u)) => Num::from_integral(u),
            _ => Num::Float(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Json::Str(s) => Val::from(s.to_string()),
        Json::Array(items) => items.iter().map(to_val).collect(),
        Json::Object(entries) => Val::obj(
            entries
                .iter()
                .map(|(k, v)| (Val::from(k.to_owned()), to_val(v)))
                .collect(),
        ),
    }
}

/// Converts a jaq value back to JSON. Byte strings and non-string object keys have no JSON
/// form and are errors.
fn to_json(v: &Val) -> Result<Value, String> {
    Ok(match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_json(n)?,
        Val::TStr(s) => Value::String(String::from_utf8_lossy(s).into_owned()),
        Val::BStr(_) => return Err("a byte string has no JSON form".into()),
        Val::Arr(a) => Value::Array(a.iter().map(to_json).collect::<Result<_, _>>()?),
        Val::Obj(o) => Value::Object(
            o.iter()
                .map(|(k, v)| match k {
                    Val::TStr(k) => Ok((String::from_utf8_lossy(k).into_owned(), to_json(v)?)),
                    other => Err(format!("object key {other} is not a string")),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn num_to_json(n: &Num) -> Result<Value, String> {
    let number = match n {
        Num::Int(i) => serde_json::Number::from(*i as i64),
        Num::Float(f) => {
            serde_json::Number::from_f64(*f).ok_or_else(|| format!("{f} is not a JSON number"))?
        }
        // Big integers and decimal literals keep their digits through the text form.
        other => other
            .to_string()
            .parse()
            .map_err(|_| format!("{other} is not a JSON number"))?,
    };
    Ok(Value::Number(number))
}

fn column(code: &str, part: &str) -> usize {
    // `span` is only defined for slices of `code`; jaq's errors hold such slices, but guard
    // against an empty slice pointing elsewhere.
    let start = part.as_ptr() as usize;
    let base = code.as_ptr() as usize;
    if start >= base && start <= base + code.len() {
        code[..start - base].chars().count() + 1
    } else {
        code.chars().count() + 1
    }
}

fn found(part: &str) -> String {
    if part.is_empty() {
        "end of expression".into()
    } else {
        format!("{:?}", crate::text::shorten(part, 20))
    }
}

fn describe_load_errors<P>(code: &str, errs: jaq_core::load::Errors<&str, P>) -> String {
    use jaq_core::load::Error;
    let mut out = Vec::new();
    for (_, err) in errs {
        match err {
            Error::Io(e) => out.extend(e.into_iter().map(|(_, msg)| msg)),
            Error::Lex(e) => out.extend(e.into_iter().map(|(expect, part): lex::Error<&str>| {
                format!(
                    "at column {}: expected {}, found {}",
                    column(code, part),
                    expect.as_str(),
                    found(part)
                )
            })),
            Error::Parse(e) => out.extend(e.into_iter().map(|(expect, part)| {
                format!(
                    "at column {}: expected {}, found {}",
                    column(code, part),
                    expect.as_str(),
                    found(part)
                )
            })),
        }
    }
    format!("jq syntax error {}", out.join("; "))
}

fn describe_compile_errors<P>(code: &str, errs: jaq_core::compile::Errors<&str, P>) -> String {
    let out: Vec<String> = errs
        .into_iter()
        .flat_map(|(_, e)| e)
        .map(|(name, undefined)| {
            format!(
                "at column {}: undefined {} {name}",
                column(code, name),
                undefined.as_str()
            )
        })
        .collect();
    format!("jq error {}", out.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_many_records() {
        let jq = Jq::compile(".results[]").unwrap();
        let out = jq.run(&json!({"results": [{"a": 1}, {"a": 2}]})).unwrap();
        assert_eq!(out, vec![json!({"a": 1}), json!({"a": 2})]);
    }

    #[test]
    fn one_value_or_null_or_error() {
        let jq = Jq::compile(".a").unwrap();
        assert_eq!(jq.run_one(&json!({"a": "x"})).unwrap(), json!("x"));
        assert_eq!(jq.run_one(&json!({})).unwrap(), Value::Null);
        let many = Jq::compile(".a[]").unwrap();
        assert_eq!(many.run_one(&json!({"a": []})).unwrap(), Value::Null);
        let err = many.run_one(&json!({"a": [1, 2]})).unwrap_err();
        assert_eq!(err, Error::NotOne(2));
        let err = err.to_string();
        assert!(err.contains("yielded 2 values"), "{err}");
    }

    #[test]
    fn string_interpolation_and_std_functions() {
        let jq = Jq::compile(r#""\(.n) \(.s | ascii_downcase)""#).unwrap();
        assert_eq!(
            jq.run_one(&json!({"n": 8929, "s": "ABC"})).unwrap(),
            json!("8929 abc")
        );
        let jq = Jq::compile(".p | tostring").unwrap();
        assert_eq!(jq.run_one(&json!({"p": 10001})).unwrap(), json!("10001"));
        assert_eq!(jq.run_one(&json!({"p": "0010"})).unwrap(), json!("0010"));
    }

    #[test]
    fn numbers_keep_their_kind() {
        let jq = Jq::compile(".").unwrap();
        let v = json!({"i": 9007199254740993_i64, "f": 1.5, "neg": -3});
        assert_eq!(jq.run_one(&v).unwrap(), v);
    }

    #[test]
    fn syntax_errors_name_the_column() {
        let err = Jq::compile(".a | ]").unwrap_err().to_string();
        assert!(err.contains("column 6"), "{err}");
        let err = Jq::compile(".a | nosuchfn").unwrap_err().to_string();
        assert!(err.contains("undefined filter nosuchfn"), "{err}");
        assert!(err.contains("column 6"), "{err}");
    }

    #[test]
    fn runtime_errors_are_reported() {
        let jq = Jq::compile(".a + 1").unwrap();
        assert!(jq.run(&json!({"a": "x"})).is_err());
    }
}
