//! The CQL value model, shared by the spec, the mapper and the writer: column types as a spec
//! names them, the JSON kinds each takes, the conversion of JSON values into them, and [`Row`].
//!
//! Conversions are strict where a silent guess could corrupt data: an `int` column takes a JSON
//! integer, not the string "42" (write `tonumber` in the jq expression); a `text` column takes a
//! string, not a number (write `tostring`). `aqueduct check` uses [`CqlType::accepts`] to report
//! expressions that can never fit.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use base64::Engine;
use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveTime, Timelike};
use num_bigint::BigInt;
use scylla::value::{CqlDate, CqlDecimal, CqlTime, CqlTimestamp, CqlTimeuuid, CqlValue, CqlVarint};
use serde_json::Value;
use uuid::Uuid;

/// One row: a value (or CQL null) per spec column, in spec order; bound as is to the prepared
/// upsert.
pub type Row = Vec<Option<CqlValue>>;

/// A CQL data type supported in `[cassandra.columns]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CqlType {
    Ascii,
    Bigint,
    Blob,
    Boolean,
    Date,
    Decimal,
    Double,
    Float,
    Inet,
    Int,
    Smallint,
    Text,
    Time,
    Timestamp,
    Timeuuid,
    Tinyint,
    Uuid,
    Varint,
    List(Box<CqlType>),
    Set(Box<CqlType>),
    Map(Box<CqlType>, Box<CqlType>),
    /// `tuple<T1, T2, ...>`: a JSON array of exactly that many values, nulls allowed.
    Tuple(Vec<CqlType>),
    /// `vector<T, n>` (Cassandra 5.0): a JSON array of exactly `n` values, no nulls; what SAI
    /// indexes search (`vector<float, n>`).
    Vector(Box<CqlType>, usize),
    /// A user-defined type of `[cassandra.types]`, in the keyspace of the table it is used in:
    /// a JSON object of its fields (each may be missing or null).
    Udt(Box<Udt>),
}

/// A user-defined type, resolved for one keyspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Udt {
    pub keyspace: String,
    pub name: String,
    /// In definition order.
    pub fields: Vec<(String, CqlType)>,
    /// `frozen<name>`: written whole (also in a primary key); else its fields are cells.
    pub frozen: bool,
}

impl Udt {
    /// The same type in `keyspace`, its fields' types too.
    pub fn in_keyspace(&self, keyspace: &str) -> Udt {
        Udt {
            keyspace: keyspace.to_owned(),
            name: self.name.clone(),
            fields: self
                .fields
                .iter()
                .map(|(f, t)| (f.clone(), t.in_keyspace(keyspace)))
                .collect(),
            frozen: self.frozen,
        }
    }
}

/// The most dimensions a vector column may have (Cassandra's limit).
const MAX_DIMENSIONS: usize = 8192;

/// The kinds of JSON value; used to check statically that an expression can feed a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        })
    }
}

/// Why a type as a spec names it does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeError(String);

/// Why a JSON value does not convert to a CQL type: the dead letter's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A value of another JSON kind than the type takes.
    #[error("expected {expected} for {cql_type}, got {got}")]
    Kind {
        expected: String,
        cql_type: String,
        got: String,
    },
    /// A value of the right kind that is no valid value of the type.
    #[error("{got} is not a valid {cql_type}: {reason}")]
    Invalid {
        got: String,
        cql_type: String,
        reason: String,
    },
    /// A tuple or vector of the wrong length.
    #[error("expected {expected} for {cql_type}, got {count} value(s)")]
    Count {
        expected: String,
        cql_type: String,
        count: usize,
    },
    #[error("a collection of {0} cannot hold null")]
    NullInCollection(String),
    /// A field of a user-defined type failed.
    #[error("field {field}: {error}")]
    Field {
        field: String,
        error: Box<ValueError>,
    },
}

impl FromStr for CqlType {
    type Err = TypeError;

    /// A type without user-defined types.
    fn from_str(s: &str) -> Result<Self, TypeError> {
        CqlType::parse_with(s, &[])
    }
}

impl CqlType {
    /// A type as a spec or `system_schema` names it, where a name of `udts` is that
    /// user-defined type.
    pub fn parse_with(s: &str, udts: &[Udt]) -> Result<CqlType, TypeError> {
        let parse = |t: &str| CqlType::parse_with(t, udts);
        let s = s.trim();
        let lower = s.to_ascii_lowercase();
        if let Some(inner) = generic(&lower, "frozen") {
            return match parse(inner)? {
                CqlType::Udt(mut udt) => {
                    udt.frozen = true;
                    Ok(CqlType::Udt(udt))
                }
                other => Ok(other),
            };
        }
        let unquoted = lower.trim_matches('"');
        if let Some(udt) = udts.iter().find(|u| u.name == unquoted) {
            return Ok(CqlType::Udt(Box::new(udt.clone())));
        }
        if let Some(inner) = generic(&lower, "list") {
            return Ok(CqlType::List(Box::new(parse(inner)?)));
        }
        if let Some(inner) = generic(&lower, "set") {
            return Ok(CqlType::Set(Box::new(parse(inner)?)));
        }
        if let Some(inner) = generic(&lower, "map") {
            let (k, v) = split_pair(inner).ok_or_else(|| {
                TypeError(format!("`{s}`: a map needs two types, map<key, value>"))
            })?;
            return Ok(CqlType::Map(Box::new(parse(k)?), Box::new(parse(v)?)));
        }
        if let Some(inner) = generic(&lower, "tuple") {
            if inner.is_empty() {
                return Err(TypeError(format!(
                    "`{s}`: a tuple needs at least one type, tuple<T1, T2>"
                )));
            }
            let members = split_all(inner)
                .into_iter()
                .map(parse)
                .collect::<Result<Vec<CqlType>, TypeError>>()?;
            return Ok(CqlType::Tuple(members));
        }
        if let Some(inner) = generic(&lower, "vector") {
            let usage = || {
                TypeError(format!(
                    "`{s}`: a vector is vector<type, dimensions>, e.g. vector<float, 384>"
                ))
            };
            let (t, n) = split_pair(inner).ok_or_else(usage)?;
            let n: usize = n.trim().parse().map_err(|_| usage())?;
            if n == 0 || n > MAX_DIMENSIONS {
                return Err(TypeError(format!(
                    "`{s}`: a vector has 1 to {MAX_DIMENSIONS} dimensions"
                )));
            }
            let t = parse(t)?;
            if t.is_collection() || matches!(t, CqlType::Vector(..) | CqlType::Udt(_)) {
                return Err(TypeError(format!("`{s}`: a vector holds simple values")));
            }
            return Ok(CqlType::Vector(Box::new(t), n));
        }
        Ok(match lower.as_str() {
            "ascii" => CqlType::Ascii,
            "bigint" => CqlType::Bigint,
            "blob" => CqlType::Blob,
            "boolean" => CqlType::Boolean,
            "date" => CqlType::Date,
            "decimal" => CqlType::Decimal,
            "double" => CqlType::Double,
            "float" => CqlType::Float,
            "inet" => CqlType::Inet,
            "int" => CqlType::Int,
            "smallint" => CqlType::Smallint,
            "text" | "varchar" => CqlType::Text,
            "time" => CqlType::Time,
            "timestamp" => CqlType::Timestamp,
            "timeuuid" => CqlType::Timeuuid,
            "tinyint" => CqlType::Tinyint,
            "uuid" => CqlType::Uuid,
            "varint" => CqlType::Varint,
            _ => {
                return Err(TypeError(format!(
                    "unknown CQL type `{s}` (supported: ascii, bigint, blob, boolean, date, decimal, double, float, inet, int, smallint, text, varchar, time, timestamp, timeuuid, tinyint, uuid, varint, list<T>, set<T>, map<K, V>, tuple<T1, T2, ...>, vector<T, n>, and the types of [cassandra.types])"
                )));
            }
        })
    }
}

/// `name<inner>` -> `inner`.
fn generic<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(name)?.trim_start();
    rest.strip_prefix('<')?.strip_suffix('>').map(str::trim)
}

/// Splits `a, b, c` at its top-level commas.
fn split_all(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((first, tail)) = split_pair(rest) {
        out.push(first.trim());
        rest = tail;
    }
    out.push(rest.trim());
    out
}

/// Splits `k, v` at the top-level comma (types may nest: `map<text, frozen<list<int>>>`).
fn split_pair(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

impl fmt::Display for CqlType {
    /// The type as CQL DDL writes it; collections nested in collections are frozen.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = CqlType::nested;
        match self {
            CqlType::List(t) => write!(f, "list<{}>", inner(t)),
            CqlType::Set(t) => write!(f, "set<{}>", inner(t)),
            CqlType::Map(k, v) => write!(f, "map<{}, {}>", inner(k), inner(v)),
            CqlType::Tuple(members) => {
                let members: Vec<String> = members.iter().map(inner).collect();
                write!(f, "tuple<{}>", members.join(", "))
            }
            CqlType::Vector(t, n) => write!(f, "vector<{t}, {n}>"),
            CqlType::Udt(udt) if udt.frozen => write!(f, "frozen<{}>", udt.name),
            CqlType::Udt(udt) => f.write_str(&udt.name),
            simple => f.write_str(match simple {
                CqlType::Ascii => "ascii",
                CqlType::Bigint => "bigint",
                CqlType::Blob => "blob",
                CqlType::Boolean => "boolean",
                CqlType::Date => "date",
                CqlType::Decimal => "decimal",
                CqlType::Double => "double",
                CqlType::Float => "float",
                CqlType::Inet => "inet",
                CqlType::Int => "int",
                CqlType::Smallint => "smallint",
                CqlType::Text => "text",
                CqlType::Time => "time",
                CqlType::Timestamp => "timestamp",
                CqlType::Timeuuid => "timeuuid",
                CqlType::Tinyint => "tinyint",
                CqlType::Uuid => "uuid",
                CqlType::Varint => "varint",
                CqlType::List(_)
                | CqlType::Set(_)
                | CqlType::Map(..)
                | CqlType::Tuple(_)
                | CqlType::Vector(..)
                | CqlType::Udt(_) => unreachable!("handled above"),
            }),
        }
    }
}

impl CqlType {
    /// The type where another type holds it (a collection, tuple or user-defined type's
    /// field): collections and user-defined types frozen, as Cassandra requires.
    pub fn nested(&self) -> String {
        match self {
            CqlType::Udt(udt) => format!("frozen<{}>", udt.name),
            t if t.is_collection() => format!("frozen<{t}>"),
            t => t.to_string(),
        }
    }

    /// The same type with its user-defined types in `keyspace`.
    pub fn in_keyspace(&self, keyspace: &str) -> CqlType {
        let boxed = |t: &CqlType| Box::new(t.in_keyspace(keyspace));
        match self {
            CqlType::List(t) => CqlType::List(boxed(t)),
            CqlType::Set(t) => CqlType::Set(boxed(t)),
            CqlType::Map(k, v) => CqlType::Map(boxed(k), boxed(v)),
            CqlType::Tuple(members) => {
                CqlType::Tuple(members.iter().map(|m| m.in_keyspace(keyspace)).collect())
            }
            CqlType::Vector(t, n) => CqlType::Vector(boxed(t), *n),
            CqlType::Udt(udt) => CqlType::Udt(Box::new(udt.in_keyspace(keyspace))),
            simple => simple.clone(),
        }
    }

    /// Lists, sets and maps.
    pub fn is_collection(&self) -> bool {
        matches!(self, CqlType::List(_) | CqlType::Set(_) | CqlType::Map(..))
    }

    /// Whether a JSON value of this kind can ever convert into this type (null always can).
    pub fn accepts(&self, kind: JsonKind) -> bool {
        use CqlType::*;
        match kind {
            JsonKind::Null => true,
            JsonKind::Bool => *self == Boolean,
            JsonKind::Number => matches!(
                self,
                Bigint
                    | Int
                    | Smallint
                    | Tinyint
                    | Varint
                    | Decimal
                    | Double
                    | Float
                    | Timestamp
                    | Time
            ),
            JsonKind::String => matches!(
                self,
                Ascii
                    | Text
                    | Blob
                    | Date
                    | Decimal
                    | Varint
                    | Inet
                    | Time
                    | Timestamp
                    | Timeuuid
                    | Uuid
            ),
            JsonKind::Array => matches!(self, List(_) | Set(_) | Tuple(_) | Vector(..)),
            JsonKind::Object => matches!(self, Map(..) | Udt(_)),
        }
    }

    /// Converts a JSON value; `null` becomes `None` (a CQL null).
    pub fn to_cql(&self, v: Value) -> Result<Option<CqlValue>, ValueError> {
        match (self, v) {
            (_, Value::Null) => Ok(None),
            // Moved, not copied: the common case of the hot path.
            (CqlType::Text, Value::String(s)) => Ok(Some(CqlValue::Text(s))),
            (_, v) => self.convert(&v).map(Some),
        }
    }

    fn convert(&self, v: &Value) -> Result<CqlValue, ValueError> {
        let wrong = || ValueError::Kind {
            expected: self.expected(),
            cql_type: self.to_string(),
            got: show(v),
        };
        let detail = |reason: String| ValueError::Invalid {
            got: show(v),
            cql_type: self.to_string(),
            reason,
        };
        Ok(match (self, v) {
            (CqlType::Text, Value::String(s)) => CqlValue::Text(s.clone()),
            (CqlType::Ascii, Value::String(s)) if s.is_ascii() => CqlValue::Ascii(s.clone()),
            (CqlType::Ascii, Value::String(_)) => {
                return Err(detail("it has non-ASCII characters".into()));
            }
            (CqlType::Boolean, Value::Bool(b)) => CqlValue::Boolean(*b),
            (CqlType::Bigint, Value::Number(_)) => CqlValue::BigInt(integer(v).ok_or_else(wrong)?),
            (CqlType::Int, Value::Number(_)) => CqlValue::Int(narrow(v).ok_or_else(wrong)?),
            (CqlType::Smallint, Value::Number(_)) => {
                CqlValue::SmallInt(narrow(v).ok_or_else(wrong)?)
            }
            (CqlType::Tinyint, Value::Number(_)) => CqlValue::TinyInt(narrow(v).ok_or_else(wrong)?),
            (CqlType::Double, Value::Number(n)) => CqlValue::Double(n.as_f64().ok_or_else(wrong)?),
            (CqlType::Float, Value::Number(n)) => {
                CqlValue::Float(n.as_f64().ok_or_else(wrong)? as f32)
            }
            (CqlType::Decimal, Value::Number(n)) => decimal(&n.to_string()).map_err(detail)?,
            (CqlType::Decimal, Value::String(s)) => decimal(s.trim()).map_err(detail)?,
            (CqlType::Varint, Value::Number(n)) => varint(&n.to_string()).map_err(detail)?,
            (CqlType::Varint, Value::String(s)) => varint(s.trim()).map_err(detail)?,
            (CqlType::Uuid, Value::String(s)) => {
                CqlValue::Uuid(Uuid::parse_str(s).map_err(|e| detail(e.to_string()))?)
            }
            (CqlType::Timeuuid, Value::String(s)) => {
                let u = Uuid::parse_str(s).map_err(|e| detail(e.to_string()))?;
                if u.get_version_num() != 1 {
                    return Err(detail("a timeuuid must be a version 1 UUID".into()));
                }
                CqlValue::Timeuuid(CqlTimeuuid::from(u))
            }
            (CqlType::Timestamp, Value::String(s)) => {
                let t = DateTime::parse_from_rfc3339(s).map_err(|e| {
                    detail(format!(
                        "{e} (expected RFC 3339, e.g. 1992-03-08T15:13:16.688Z)"
                    ))
                })?;
                CqlValue::Timestamp(CqlTimestamp(t.timestamp_millis()))
            }
            (CqlType::Timestamp, Value::Number(_)) => {
                CqlValue::Timestamp(CqlTimestamp(integer(v).ok_or_else(wrong)?))
            }
            (CqlType::Date, Value::String(s)) => {
                let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|e| detail(format!("{e} (expected YYYY-MM-DD)")))?;
                CqlValue::Date(CqlDate::from(d))
            }
            (CqlType::Time, Value::String(s)) => {
                let t = NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
                    .map_err(|e| detail(format!("{e} (expected HH:MM:SS[.fffffffff])")))?;
                let nanos = i64::from(t.num_seconds_from_midnight()) * 1_000_000_000
                    + i64::from(t.nanosecond());
                CqlValue::Time(CqlTime(nanos))
            }
            (CqlType::Time, Value::Number(_)) => {
                let nanos = integer(v).filter(|n| (0..86_400_000_000_000).contains(n));
                CqlValue::Time(CqlTime(
                    nanos.ok_or_else(|| detail("expected nanoseconds since midnight".into()))?,
                ))
            }
            (CqlType::Inet, Value::String(s)) => {
                CqlValue::Inet(IpAddr::from_str(s).map_err(|e| detail(e.to_string()))?)
            }
            (CqlType::Blob, Value::String(s)) => CqlValue::Blob(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| detail(format!("{e} (blobs are written as base64)")))?,
            ),
            (CqlType::List(t), Value::Array(items)) => CqlValue::List(elements(t, items)?),
            (CqlType::Set(t), Value::Array(items)) => CqlValue::Set(elements(t, items)?),
            (CqlType::Tuple(members), Value::Array(items)) if items.len() == members.len() => {
                CqlValue::Tuple(
                    members
                        .iter()
                        .zip(items)
                        .map(|(t, v)| {
                            if v.is_null() {
                                Ok(None)
                            } else {
                                t.convert(v).map(Some)
                            }
                        })
                        .collect::<Result<_, ValueError>>()?,
                )
            }
            (CqlType::Vector(t, n), Value::Array(items)) if items.len() == *n => {
                CqlValue::Vector(elements(t, items)?)
            }
            (CqlType::Tuple(_) | CqlType::Vector(..), Value::Array(items)) => {
                return Err(ValueError::Count {
                    expected: self.expected(),
                    cql_type: self.to_string(),
                    count: items.len(),
                });
            }
            (CqlType::Udt(udt), Value::Object(entries)) => {
                if let Some(unknown) = entries
                    .keys()
                    .find(|k| !udt.fields.iter().any(|(f, _)| f == *k))
                {
                    return Err(detail(format!("{} has no field `{unknown}`", udt.name)));
                }
                CqlValue::UserDefinedType {
                    keyspace: udt.keyspace.clone(),
                    name: udt.name.clone(),
                    fields: udt
                        .fields
                        .iter()
                        .map(|(field, t)| {
                            let value = match entries.get(field) {
                                None | Some(Value::Null) => None,
                                Some(v) => Some(t.convert(v).map_err(|e| ValueError::Field {
                                    field: field.clone(),
                                    error: Box::new(e),
                                })?),
                            };
                            Ok((field.clone(), value))
                        })
                        .collect::<Result<_, ValueError>>()?,
                }
            }
            (CqlType::Map(k, t), Value::Object(entries)) => CqlValue::Map(
                entries
                    .iter()
                    .map(|(key, value)| Ok((map_key(k, key)?, element(t, value)?)))
                    .collect::<Result<_, ValueError>>()?,
            ),
            _ => return Err(wrong()),
        })
    }

    fn expected(&self) -> String {
        use CqlType::*;
        match self {
            Tuple(members) => return format!("an array of {} value(s)", members.len()),
            Vector(_, n) => return format!("an array of {n} values"),
            _ => {}
        }
        match self {
            Ascii | Text => "a string",
            Boolean => "a boolean",
            Bigint | Int | Smallint | Tinyint => "an integer in range",
            Double | Float => "a number",
            Decimal | Varint => "a number or a numeric string",
            Uuid | Timeuuid => "a UUID string",
            Timestamp => "an RFC 3339 string or epoch milliseconds",
            Date => "a YYYY-MM-DD string",
            Time => "an HH:MM:SS string or nanoseconds since midnight",
            Inet => "an IP address string",
            Blob => "a base64 string",
            List(_) | Set(_) | Tuple(_) | Vector(..) => "an array",
            Map(..) | Udt(_) => "an object",
        }
        .to_owned()
    }
}

fn elements(t: &CqlType, items: &[Value]) -> Result<Vec<CqlValue>, ValueError> {
    items.iter().map(|v| element(t, v)).collect()
}

fn element(t: &CqlType, v: &Value) -> Result<CqlValue, ValueError> {
    if v.is_null() {
        return Err(ValueError::NullInCollection(t.to_string()));
    }
    t.convert(v)
}

/// JSON object keys are strings; a map keyed by numbers reads them as JSON numbers.
fn map_key(t: &CqlType, key: &str) -> Result<CqlValue, ValueError> {
    let as_string = Value::String(key.to_owned());
    if t.accepts(JsonKind::String) {
        return t.convert(&as_string);
    }
    match serde_json::from_str::<Value>(key) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => t.convert(&v),
        _ => t.convert(&as_string),
    }
}

/// An integral JSON number as i64 (`3.0` counts as integral; `3.5` does not).
fn integer(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        (f.fract() == 0.0 && f >= i64::MIN as f64 && f <= i64::MAX as f64).then_some(f as i64)
    })
}

fn narrow<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    integer(v).and_then(|i| T::try_from(i).ok())
}

fn decimal(s: &str) -> Result<CqlValue, String> {
    let d = BigDecimal::from_str(s).map_err(|e| e.to_string())?;
    let (digits, scale) = d.as_bigint_and_exponent();
    let scale = i32::try_from(scale).map_err(|_| "scale out of range".to_string())?;
    Ok(CqlValue::Decimal(
        CqlDecimal::from_signed_be_bytes_and_exponent(digits.to_signed_bytes_be(), scale),
    ))
}

fn varint(s: &str) -> Result<CqlValue, String> {
    let i = BigInt::from_str(s).map_err(|e| e.to_string())?;
    Ok(CqlValue::Varint(CqlVarint::from_signed_bytes_be(
        i.to_signed_bytes_be(),
    )))
}

/// A CQL value as the JSON a column of its type takes (`to_cql`'s inverse): what `preview`
/// prints and `test` compares. Timestamps are RFC 3339 in UTC with milliseconds, decimals and
/// varints strings (JSON numbers would round them), blobs base64.
pub fn to_json(v: &CqlValue) -> Value {
    use serde_json::json;
    match v {
        CqlValue::Ascii(s) | CqlValue::Text(s) => json!(s),
        CqlValue::Boolean(b) => json!(b),
        CqlValue::TinyInt(i) => json!(i),
        CqlValue::SmallInt(i) => json!(i),
        CqlValue::Int(i) => json!(i),
        CqlValue::BigInt(i) => json!(i),
        CqlValue::Float(f) => json!(f),
        CqlValue::Double(f) => json!(f),
        CqlValue::Decimal(d) => json!(BigDecimal::from(d.clone()).to_string()),
        CqlValue::Varint(i) => json!(BigInt::from(i.clone()).to_string()),
        CqlValue::Uuid(u) => json!(u.to_string()),
        CqlValue::Timeuuid(u) => json!(Uuid::from(*u).to_string()),
        // scylla implements TryInto (not TryFrom) for these.
        // RFC 3339 holds four-digit years only; other times as epoch milliseconds, which a
        // timestamp column takes as well (found by fuzzing: year 233,772 did not convert back).
        CqlValue::Timestamp(t) => match TryInto::<DateTime<chrono::Utc>>::try_into(*t) {
            Ok(at) if (0..=9999).contains(&chrono::Datelike::year(&at)) => {
                json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            }
            _ => json!(t.0),
        },
        CqlValue::Date(d) => {
            TryInto::<NaiveDate>::try_into(*d).map_or_else(|_| json!(d.0), |d| json!(d.to_string()))
        }
        CqlValue::Time(t) => {
            TryInto::<NaiveTime>::try_into(*t).map_or_else(|_| json!(t.0), |t| json!(t.to_string()))
        }
        CqlValue::Inet(ip) => json!(ip.to_string()),
        CqlValue::Blob(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        CqlValue::List(items) | CqlValue::Set(items) | CqlValue::Vector(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        CqlValue::UserDefinedType { fields, .. } => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map_or(Value::Null, to_json)))
                .collect(),
        ),
        CqlValue::Tuple(items) => Value::Array(
            items
                .iter()
                .map(|v| v.as_ref().map_or(Value::Null, to_json))
                .collect(),
        ),
        CqlValue::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        other => json!(format!("{other:?}")),
    }
}

/// A value for messages, cut short so a huge blob does not flood the log.
fn show(v: &Value) -> String {
    crate::text::shorten(&v.to_string(), 77)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `to_json` gives back the JSON each type takes: converting it again is the same value.
    #[test]
    fn to_json_round_trips_through_to_cql() {
        for (ty, v) in [
            ("text", json!("Zoë")),
            ("ascii", json!("plain")),
            ("boolean", json!(true)),
            ("tinyint", json!(-7)),
            ("smallint", json!(300)),
            ("int", json!(70000)),
            ("bigint", json!(1_700_000_000_000i64)),
            ("double", json!(2.5)),
            ("float", json!(0.25)),
            ("decimal", json!("-12.3400")),
            ("varint", json!("123456789012345678901234567890")),
            ("uuid", json!("7a0eed16-9430-4d68-901f-c0d4c1c3bf00")),
            ("timeuuid", json!("d2177dd0-eaa2-11de-a572-001b779c76e3")),
            ("timestamp", json!("1992-03-08T15:13:16.688Z")),
            ("date", json!("2024-02-29")),
            ("time", json!("13:14:15.123456789")),
            ("inet", json!("2001:db8::1")),
            ("blob", json!("AAEC/w==")),
            ("list<int>", json!([3, 1, 3])),
            ("set<text>", json!(["a", "b"])),
            ("map<int, text>", json!({"1": "one", "2": "two"})),
        ] {
            let cql = ok(ty, v.clone());
            assert_eq!(to_json(&cql), v, "{ty}");
            assert_eq!(ok(ty, to_json(&cql)), cql, "{ty}");
        }
        // Epoch milliseconds come back as RFC 3339.
        assert_eq!(
            to_json(&ok("timestamp", json!(0))),
            json!("1970-01-01T00:00:00.000Z")
        );
    }

    fn t(s: &str) -> CqlType {
        s.parse().unwrap()
    }

    fn ok(ty: &str, v: Value) -> CqlValue {
        t(ty).to_cql(v).unwrap().unwrap()
    }

    fn err(ty: &str, v: Value) -> String {
        t(ty).to_cql(v).unwrap_err().to_string()
    }

    #[test]
    fn parses_and_prints_types() {
        assert_eq!(t("VARCHAR"), CqlType::Text);
        assert_eq!(
            t("map<text, frozen<list<int>>>").to_string(),
            "map<text, frozen<list<int>>>"
        );
        assert_eq!(t("list<set<int>>").to_string(), "list<frozen<set<int>>>");
        assert!(
            "counter"
                .parse::<CqlType>()
                .unwrap_err()
                .to_string()
                .contains("unknown CQL type `counter`")
        );
        assert!("map<int>".parse::<CqlType>().is_err());
        assert!("list<nope>".parse::<CqlType>().is_err());
    }

    #[test]
    fn null_is_cql_null() {
        assert_eq!(t("int").to_cql(Value::Null).unwrap(), None);
    }

    #[test]
    fn text_and_ascii() {
        assert_eq!(ok("text", json!("Zoë")), CqlValue::Text("Zoë".into()));
        assert!(err("text", json!(10001)).contains("expected a string for text, got 10001"));
        assert_eq!(ok("ascii", json!("abc")), CqlValue::Ascii("abc".into()));
        assert!(err("ascii", json!("Zoë")).contains("non-ASCII"));
    }

    #[test]
    fn integers_check_range() {
        assert_eq!(ok("int", json!(42)), CqlValue::Int(42));
        assert_eq!(ok("int", json!(42.0)), CqlValue::Int(42));
        assert!(err("int", json!(4_000_000_000_i64)).contains("expected an integer in range"));
        assert!(err("int", json!("42")).contains("got \"42\""));
        assert!(err("int", json!(1.5)).contains("int"));
        assert_eq!(
            ok("bigint", json!(9_007_199_254_740_993_i64)),
            CqlValue::BigInt(9_007_199_254_740_993)
        );
        assert_eq!(ok("smallint", json!(-3)), CqlValue::SmallInt(-3));
        assert!(err("smallint", json!(40000)).contains("smallint"));
        assert_eq!(ok("tinyint", json!(127)), CqlValue::TinyInt(127));
        assert!(err("tinyint", json!(128)).contains("tinyint"));
    }

    #[test]
    fn floats_and_booleans() {
        assert_eq!(ok("double", json!(1.25)), CqlValue::Double(1.25));
        assert_eq!(ok("float", json!(2)), CqlValue::Float(2.0));
        assert_eq!(ok("boolean", json!(true)), CqlValue::Boolean(true));
        assert!(err("boolean", json!("true")).contains("boolean"));
    }

    #[test]
    fn decimal_and_varint_keep_digits() {
        assert_eq!(
            ok("decimal", json!("123.4500")),
            CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_and_exponent(
                BigInt::from(1_234_500).to_signed_bytes_be(),
                4
            ))
        );
        assert_eq!(
            ok("decimal", json!(0.1)),
            CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_and_exponent(vec![1], 1))
        );
        let big = "123456789012345678901234567890";
        assert_eq!(
            ok("varint", json!(big)),
            CqlValue::Varint(CqlVarint::from_signed_bytes_be(
                BigInt::from_str(big).unwrap().to_signed_bytes_be()
            ))
        );
        assert!(err("varint", json!("12a")).contains("not a valid varint"));
    }

    #[test]
    fn uuids() {
        let u = "7a0eed16-9430-4d68-901f-c0d4c1c3bf00";
        assert_eq!(
            ok("uuid", json!(u)),
            CqlValue::Uuid(Uuid::parse_str(u).unwrap())
        );
        assert!(err("uuid", json!("nope")).contains("\"nope\" is not a valid uuid"));
        assert!(err("timeuuid", json!(u)).contains("version 1"));
        let v1 = "c3f8a3a0-6a7e-11ee-8c99-0242ac120002";
        assert!(matches!(ok("timeuuid", json!(v1)), CqlValue::Timeuuid(_)));
    }

    #[test]
    fn timestamps_dates_times() {
        assert_eq!(
            ok("timestamp", json!("1992-03-08T15:13:16.688Z")),
            CqlValue::Timestamp(CqlTimestamp(700_067_596_688))
        );
        assert_eq!(
            ok("timestamp", json!("1992-03-08T16:13:16.688+01:00")),
            CqlValue::Timestamp(CqlTimestamp(700_067_596_688))
        );
        assert_eq!(
            ok("timestamp", json!(1_000)),
            CqlValue::Timestamp(CqlTimestamp(1_000))
        );
        assert!(err("timestamp", json!("yesterday")).contains("RFC 3339"));
        // Beyond year 9999 (found by fuzzing): back to JSON as epoch milliseconds, which
        // convert back to the same timestamp.
        for ms in [7_314_945_530_482_686i64, -70_000_000_000_000] {
            let far = CqlValue::Timestamp(CqlTimestamp(ms));
            assert_eq!(to_json(&far), json!(ms));
            assert_eq!(ok("timestamp", to_json(&far)), far);
        }
        let near = CqlValue::Timestamp(CqlTimestamp(700_067_596_688));
        assert_eq!(to_json(&near), json!("1992-03-08T15:13:16.688Z"));
        assert_eq!(
            ok("date", json!("1970-01-02")),
            CqlValue::Date(CqlDate((1 << 31) + 1))
        );
        assert!(err("date", json!("02/01/1970")).contains("YYYY-MM-DD"));
        assert_eq!(
            ok("time", json!("00:00:01.5")),
            CqlValue::Time(CqlTime(1_500_000_000))
        );
        assert_eq!(ok("time", json!(5)), CqlValue::Time(CqlTime(5)));
        assert!(err("time", json!(-1)).contains("nanoseconds"));
    }

    #[test]
    fn inet_and_blob() {
        assert_eq!(
            ok("inet", json!("::1")),
            CqlValue::Inet("::1".parse().unwrap())
        );
        assert!(err("inet", json!("300.1.1.1")).contains("inet"));
        assert_eq!(ok("blob", json!("aGk=")), CqlValue::Blob(b"hi".to_vec()));
        assert!(err("blob", json!("%%")).contains("base64"));
    }

    #[test]
    fn collections() {
        assert_eq!(
            ok("list<int>", json!([1, 2])),
            CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(2)])
        );
        assert_eq!(
            ok("set<text>", json!(["a"])),
            CqlValue::Set(vec![CqlValue::Text("a".into())])
        );
        assert_eq!(
            ok("map<text, double>", json!({"a": 1.5})),
            CqlValue::Map(vec![(CqlValue::Text("a".into()), CqlValue::Double(1.5))])
        );
        assert_eq!(
            ok("map<int, boolean>", json!({"7": true})),
            CqlValue::Map(vec![(CqlValue::Int(7), CqlValue::Boolean(true))])
        );
        assert!(err("list<int>", json!([1, null])).contains("cannot hold null"));
        assert!(err("list<int>", json!([1, "x"])).contains("got \"x\""));
        assert!(err("list<int>", json!({"a": 1})).contains("expected an array"));
    }

    #[test]
    fn tuples_and_vectors_hold_exactly_their_members() {
        let tuple = t("frozen<tuple<int, text, list<double>>>");
        assert_eq!(tuple.to_string(), "tuple<int, text, frozen<list<double>>>");
        assert_eq!(
            tuple.to_cql(json!([1, null, [0.5]])),
            Ok(Some(CqlValue::Tuple(vec![
                Some(CqlValue::Int(1)),
                None,
                Some(CqlValue::List(vec![CqlValue::Double(0.5)]))
            ])))
        );
        assert_eq!(
            tuple.to_cql(json!([1, "a"])).unwrap_err().to_string(),
            "expected an array of 3 value(s) for tuple<int, text, frozen<list<double>>>, got 2 value(s)"
        );
        let vector = t("vector<float, 3>");
        assert_eq!(vector.to_string(), "vector<float, 3>");
        assert_eq!(
            vector.to_cql(json!([0.25, -1, 2.5])),
            Ok(Some(CqlValue::Vector(vec![
                CqlValue::Float(0.25),
                CqlValue::Float(-1.0),
                CqlValue::Float(2.5)
            ])))
        );
        assert_eq!(
            vector.to_cql(json!([0.25, 1])).unwrap_err().to_string(),
            "expected an array of 3 values for vector<float, 3>, got 2 value(s)"
        );
        assert!(vector.to_cql(json!([0.25, null, 1])).is_err());
        for bad in [
            "vector<float>",
            "vector<float, 0>",
            "vector<float, x>",
            "vector<list<int>, 2>",
            "tuple<>",
        ] {
            assert!(bad.parse::<CqlType>().is_err(), "{bad}");
        }
        for (ty, v) in [
            (&tuple, json!([1, null, [0.5]])),
            (&vector, json!([0.25, -1.0, 2.5])),
        ] {
            let cql = ty.to_cql(v.clone()).unwrap().unwrap();
            assert_eq!(to_json(&cql), v);
        }
    }

    #[test]
    fn user_defined_types_resolve_by_name_and_take_objects_of_their_fields() {
        let street = Udt {
            keyspace: "ks".into(),
            name: "street".into(),
            fields: vec![("number".into(), t("int")), ("name".into(), t("text"))],
            frozen: false,
        };
        let udts = [street.clone()];
        let plain = CqlType::parse_with("street", &udts).unwrap();
        assert_eq!(plain.to_string(), "street");
        let frozen = CqlType::parse_with("frozen<\"street\">", &udts).unwrap();
        assert_eq!(frozen.to_string(), "frozen<street>");
        assert_eq!(
            CqlType::parse_with("list<street>", &udts)
                .unwrap()
                .to_string(),
            "list<frozen<street>>"
        );
        assert!(
            "street".parse::<CqlType>().is_err(),
            "unknown without its definition"
        );
        assert!(plain.accepts(JsonKind::Object));
        let v = plain.to_cql(json!({"name": "Main"})).unwrap().unwrap();
        assert_eq!(
            v,
            CqlValue::UserDefinedType {
                keyspace: "ks".into(),
                name: "street".into(),
                fields: vec![
                    ("number".into(), None),
                    ("name".into(), Some(CqlValue::Text("Main".into())))
                ]
            }
        );
        assert_eq!(to_json(&v), json!({"number": null, "name": "Main"}));
        assert!(
            plain
                .to_cql(json!({"nmae": "x"}))
                .unwrap_err()
                .to_string()
                .contains("street has no field `nmae`")
        );
        assert!(
            plain
                .to_cql(json!({"number": "8"}))
                .unwrap_err()
                .to_string()
                .contains("field number: expected an integer")
        );
        assert_eq!(
            plain.in_keyspace("other"),
            CqlType::Udt(Box::new(Udt {
                keyspace: "other".into(),
                ..street
            }))
        );
    }

    #[test]
    fn accepts_matches_conversion() {
        assert!(!t("int").accepts(JsonKind::String));
        assert!(t("timestamp").accepts(JsonKind::Number));
        assert!(t("timestamp").accepts(JsonKind::String));
        assert!(!t("text").accepts(JsonKind::Number));
        assert!(t("map<text, int>").accepts(JsonKind::Object));
    }
}
