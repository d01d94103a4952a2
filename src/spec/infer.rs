//! A static guess of which kinds of JSON value a jq expression can yield, so that
//! `aqueduct check` can report a column whose expression can never fit its CQL type (an `int`
//! column fed by `.name.first`, say) before any record flows.
//!
//! The guess is conservative: anything it cannot see through is "any kind", and only an
//! expression whose every possible output is known is ever reported.

use jaq_core::load::parse::{BinaryOp, Term};
use jaq_core::ops::Math;

use crate::cql::JsonKind;

/// The kinds an expression may yield; `None` means it could be anything.
pub type Kinds = Option<Vec<JsonKind>>;

/// Infers the output kinds of `code`; `None` if unknown or unparsable.
pub fn kinds(code: &str) -> Kinds {
    let term = jaq_core::load::parse(code, |p| p.term())?;
    infer(&term)
}

fn one(k: JsonKind) -> Kinds {
    Some(vec![k])
}

fn union(a: Kinds, b: Kinds) -> Kinds {
    let mut a = a?;
    for k in b? {
        if !a.contains(&k) {
            a.push(k);
        }
    }
    Some(a)
}

fn infer(t: &Term<&str>) -> Kinds {
    use JsonKind::*;
    match t {
        Term::Num(_) => one(Number),
        Term::Str(_, _) => one(String),
        Term::Arr(_) => one(Array),
        Term::Obj(_) => one(Object),
        Term::Neg(_) => one(Number),
        Term::BinOp(l, op, r) => match op {
            BinaryOp::Pipe(None) if matches!(**r, Term::Id) => infer(l),
            BinaryOp::Pipe(_) => infer(r),
            BinaryOp::Comma => union(infer(l), infer(r)),
            BinaryOp::Alt => union(infer(l), infer(r)),
            BinaryOp::Or | BinaryOp::And | BinaryOp::Cmp(_) => one(Bool),
            BinaryOp::Math(op) => math(op, infer(l), infer(r)),
            _ => None,
        },
        Term::IfThenElse(branches, otherwise) => {
            let otherwise = otherwise.as_deref().and_then(infer);
            let otherwise = if let Some(k) = otherwise {
                Some(k)
            } else {
                return None;
            };
            branches
                .iter()
                .fold(otherwise, |acc, (_, then)| union(acc, infer(then)))
        }
        Term::Call(name, args) => call(name, args.len()),
        _ => None,
    }
}

fn math(op: &Math, l: Kinds, r: Kinds) -> Kinds {
    use JsonKind::*;
    let (l, r) = (l?, r?);
    let only = |ks: &[JsonKind], k| ks.iter().all(|x| *x == k);
    match op {
        Math::Add if only(&l, String) && only(&r, String) => one(String),
        _ if only(&l, Number) && only(&r, Number) => one(Number),
        _ => None,
    }
}

/// Builtins whose output kind is fixed whatever their input.
fn call(name: &str, arity: usize) -> Kinds {
    use JsonKind::*;
    match (name, arity) {
        (
            "tostring" | "tojson" | "ascii_downcase" | "ascii_upcase" | "ltrimstr" | "rtrimstr"
            | "trim" | "ltrim" | "rtrim" | "join" | "implode" | "type" | "todate" | "sub" | "gsub"
            | "strftime" | "strflocaltime",
            _,
        ) => one(String),
        (
            "tonumber" | "length" | "utf8bytelength" | "floor" | "ceil" | "round" | "fabs" | "sqrt"
            | "now" | "fromdate" | "mktime" | "abs",
            _,
        ) => one(Number),
        (
            "true" | "false" | "not" | "test" | "startswith" | "endswith" | "contains" | "inside"
            | "has" | "in" | "isempty" | "all" | "any",
            _,
        ) => one(Bool),
        (
            "keys" | "to_entries" | "split" | "map" | "sort" | "sort_by" | "unique" | "reverse"
            | "explode",
            _,
        ) => one(Array),
        ("null", 0) => one(Null),
        ("empty" | "error", _) => Some(vec![]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JsonKind::*;

    #[test]
    fn literals_and_paths() {
        assert_eq!(kinds(".a"), None);
        assert_eq!(kinds("\"x\""), Some(vec![String]));
        assert_eq!(kinds("\"\\(.a) \\(.b)\""), Some(vec![String]));
        assert_eq!(kinds("42"), Some(vec![Number]));
        assert_eq!(kinds("[.a[]]"), Some(vec![Array]));
        assert_eq!(kinds("{a: 1}"), Some(vec![Object]));
    }

    #[test]
    fn pipes_take_the_last_stage() {
        assert_eq!(kinds(".name.first | ascii_downcase"), Some(vec![String]));
        assert_eq!(kinds(".postcode | tostring"), Some(vec![String]));
        assert_eq!(kinds(".s | tonumber"), Some(vec![Number]));
        assert_eq!(kinds("\"x\" | ."), Some(vec![String]));
        assert_eq!(kinds(".a | .b"), None);
    }

    #[test]
    fn branches_and_operators() {
        assert_eq!(kinds(".a == 1"), Some(vec![Bool]));
        assert_eq!(
            kinds("if .a then \"x\" else 1 end"),
            Some(vec![Number, String])
        );
        assert_eq!(kinds("if .a then \"x\" end"), None);
        assert_eq!(kinds(".a // \"none\""), None);
        assert_eq!(kinds("\"a\" + \"b\""), Some(vec![String]));
        assert_eq!(kinds("1 + 2"), Some(vec![Number]));
        assert_eq!(kinds(".a + 1"), None);
        assert_eq!(kinds("null"), Some(vec![Null]));
        assert_eq!(kinds("true"), Some(vec![Bool]));
    }
}
