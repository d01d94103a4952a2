//! Editing a JSON value at a JSON pointer (RFC 6901): where `serde_json`'s `pointer_mut` finds
//! a value, these also put one in and take one out. Used by `[source.cursor] body` (the cursor
//! put into a POST body) and by `aqueduct test`'s `set`, `null` and `remove` edits.

use serde_json::Value;

/// The pointer's tokens, unescaped (`~1` is `/`, `~0` is `~`).
fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "{pointer:?} is not a JSON pointer (they start with /)"
        ));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// Sets what `pointer` names to `value`: an object's field (added if missing) or an existing
/// array element. With `make_path`, missing objects on the way are made; without, the parent
/// must exist.
pub fn set(root: &mut Value, pointer: &str, value: Value, make_path: bool) -> Result<(), String> {
    let tokens = tokens(pointer)?;
    let (last, path) = tokens.split_last().expect("split yields a token at least");
    let mut at = root;
    for token in path {
        at = match at {
            Value::Object(map) => {
                if make_path && !map.contains_key(token) {
                    map.insert(token.clone(), Value::Object(Default::default()));
                }
                map.get_mut(token)
                    .ok_or_else(|| format!("nothing at {token:?} on the way to {pointer:?}"))?
            }
            Value::Array(items) => index(items, token)
                .ok_or_else(|| format!("no element {token:?} on the way to {pointer:?}"))?,
            _ => {
                return Err(format!(
                    "{token:?} in {pointer:?} is inside a value that is neither object nor array"
                ));
            }
        };
    }
    match at {
        Value::Object(map) => {
            map.insert(last.clone(), value);
        }
        Value::Array(items) => match index(items, last) {
            Some(item) => *item = value,
            None => return Err(format!("no element {last:?} in the array at {pointer:?}")),
        },
        _ => {
            return Err(format!(
                "{pointer:?} is inside a value that is neither object nor array"
            ));
        }
    }
    Ok(())
}

/// Takes out the object field `pointer` names; an error when there is none.
pub fn remove(root: &mut Value, pointer: &str) -> Result<Value, String> {
    let tokens = tokens(pointer)?;
    let (last, path) = tokens.split_last().expect("split yields a token at least");
    let parent = path.iter().try_fold(root, |at, token| match at {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => index(items, token),
        _ => None,
    });
    match parent {
        Some(Value::Object(map)) => map.remove(last),
        _ => None,
    }
    .ok_or_else(|| format!("nothing at {pointer:?}"))
}

fn index<'a>(items: &'a mut [Value], token: &str) -> Option<&'a mut Value> {
    token.parse::<usize>().ok().and_then(|i| items.get_mut(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_makes_the_path_only_when_asked_and_removes() {
        let mut v = json!({"a": {"b": [1, 2]}, "x~/y": 0});
        set(&mut v, "/a/b/1", json!(9), false).unwrap();
        set(&mut v, "/a/c", json!("new"), false).unwrap();
        set(&mut v, "/x~0~1y", json!(1), false).unwrap();
        assert!(set(&mut v, "/m/n", json!(1), false).is_err());
        set(&mut v, "/m/n", json!(1), true).unwrap();
        assert!(set(&mut v, "/a/b/7", json!(1), false).is_err());
        assert!(set(&mut v, "a", json!(1), false).is_err());
        assert_eq!(
            v,
            json!({"a": {"b": [1, 9], "c": "new"}, "x~/y": 1, "m": {"n": 1}})
        );
        assert_eq!(remove(&mut v, "/a/c").unwrap(), json!("new"));
        assert!(remove(&mut v, "/a/c").is_err());
        assert!(
            remove(&mut v, "/a/b/0").is_err(),
            "array elements are not removed"
        );
    }
}
