//! The JSON field scanner (`connbench::proto::jsonfield::find`), with serde_json as oracle.
//!
//! Input: a dotted field path, a newline, then the JSON document.
//!
//! Checks, for any input:
//! 1. No panic (any bytes, any nesting).
//! 2. When serde_json accepts the document, `find` returns what the path names in serde_json's
//!    reading of it — the first matching key at each level (the scanner's documented rule;
//!    the oracle keeps duplicate keys in order to apply it), array elements by canonical index —
//!    with numbers equal as serde_json numbers and strings equal once their escapes are decoded.
//! 3. `find_u64` agrees with `find` and, for a plain integer, with `str::parse::<u64>`.
#![no_main]

use std::fmt;

use connbench::proto::jsonfield::{find, find_u64, number_to_u64, FieldPath, Raw};
use libfuzzer_sys::fuzz_target;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// serde_json's reading, keeping every key in order (duplicates included).
#[derive(Debug)]
enum Json {
    Null,
    Bool,
    Number(serde_json::Number),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Str(v.to_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut pairs = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            pairs.push((k, v));
        }
        Ok(Json::Object(pairs))
    }
}

/// A canonical array index: digits only, no leading zero unless "0", fits in usize.
fn index(segment: &str) -> Option<usize> {
    let canonical = segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'));
    canonical.then(|| segment.parse().ok()).flatten()
}

fn lookup<'a>(mut at: &'a Json, path: &str) -> Option<&'a Json> {
    for segment in path.split('.') {
        at = match at {
            Json::Object(pairs) => &pairs.iter().find(|(k, _)| k == segment)?.1,
            Json::Array(items) => items.get(index(segment)?)?,
            _ => return None,
        };
    }
    Some(at)
}

fuzz_target!(|data: &[u8]| {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (path_bytes, doc) = (&data[..newline], &data[newline + 1..]);
    let Ok(path_text) = std::str::from_utf8(path_bytes) else {
        return;
    };
    let Ok(path) = FieldPath::parse(path_text) else {
        return;
    };
    let found = find(doc, &path);
    let as_u64 = find_u64(doc, &path);
    let expect_u64 = match found {
        Some(Raw::Number(n) | Raw::Str(n)) => number_to_u64(n),
        _ => None,
    };
    assert_eq!(as_u64, expect_u64);
    if let Some(Raw::Number(n)) = found {
        if let Some(plain) = std::str::from_utf8(n)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
        {
            if !n.starts_with(b"+") {
                assert_eq!(as_u64, Some(plain), "{:?}", String::from_utf8_lossy(n));
            }
        }
    }

    let Ok(tree) = serde_json::from_slice::<Json>(doc) else {
        return;
    };
    match (lookup(&tree, path_text), found) {
        (None, None) => {}
        (Some(Json::Number(want)), Some(Raw::Number(raw))) => {
            let got: serde_json::Number = serde_json::from_slice(raw).expect("a number token");
            assert_eq!(&got, want);
        }
        (Some(Json::Str(want)), Some(Raw::Str(raw))) => {
            let mut quoted = b"\"".to_vec();
            quoted.extend_from_slice(raw);
            quoted.push(b'"');
            let got: String = serde_json::from_slice(&quoted).expect("a string's inside");
            assert_eq!(&got, want);
        }
        (Some(Json::Null | Json::Bool | Json::Array(_) | Json::Object(_)), Some(Raw::Other)) => {}
        (want, got) => panic!("serde_json: {want:?}, find: {got:?}"),
    }
});
