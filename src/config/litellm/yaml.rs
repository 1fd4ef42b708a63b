//! YAML text → a JSON value tree, read the way LiteLLM (PyYAML's `safe_load`) reads it.
//!
//! Where PyYAML and a strict YAML 1.2 reader differ, real LiteLLM configs rely on PyYAML:
//!
//! * a duplicate mapping key keeps the **last** value (PyYAML's behaviour); each one is
//!   reported by a warn-level event naming the key's path and line, since it is almost
//!   always a mistake;
//! * comments cost nothing: the parser does not buffer comment events (their text is never
//!   used), so a file with thousands of comment lines in a row loads;
//! * `20_000`-style integers are numbers (YAML 1.1, which PyYAML implements).
//!
//! The tree is built by our own visitor rather than `serde_json::Value`'s so that each key
//! can be read with its position ([`serde_saphyr::Spanned`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// Receives the entries of the top-level `model_list` one at a time, as each is read, so
/// that the tree of a 100,000-entry list is never held whole (see [`load_streaming`]).
pub(super) trait Entries {
    /// A top-level `model_list` sequence begins (again, for a duplicate key: the last wins).
    fn start(&mut self);
    /// Its entry `i`, as a value tree.
    fn entry(&mut self, i: usize, entry: Value);
}

/// Parses `text` into a value tree; `None` for an empty document.
#[cfg(test)]
pub(super) fn load(text: &str) -> Result<Option<Value>, serde_saphyr::Error> {
    load_with(text, None)
}

/// [`load`], except that the entries of a top-level `model_list` *sequence* go to `entries`
/// as they are read; in the tree that list is left empty. Anything else under `model_list`
/// (a mapping, a string) stays in the tree.
pub(super) fn load_streaming(
    text: &str,
    entries: &mut dyn Entries,
) -> Result<Option<Value>, serde_saphyr::Error> {
    load_with(text, Some(entries))
}

fn load_with(
    text: &str,
    entries: Option<&mut dyn Entries>,
) -> Result<Option<Value>, serde_saphyr::Error> {
    let budget = serde_saphyr::budget! {
        // Bounded by the text itself; comments are not emitted (see below) anyway.
        max_buffered_comment_events: usize::MAX,
        // The parser's defaults (250,000 nodes, 1,000,000 events) stop a config of some
        // 50,000 deployments. A node or event takes at least a byte of text, except alias
        // replays (capped on their own, and counted here too): so these grow with the file,
        // linearly, and an alias bomb still hits them.
        max_nodes: 250_000.max(text.len()),
        max_events: 1_000_000.max(2 * text.len()),
    };
    let opts = serde_saphyr::options! {
        // Snippets would quote the source text (credentials included) in the message.
        with_snippet: false,
        // `.nan`/`.inf` arrive as strings; conversion rejects them naming the field.
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
        // Duplicates are resolved (last wins) and reported by `Tree` below.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
        // Comment text is never used; not emitting it means a long run of comments is
        // never buffered while the parser looks ahead.
        emit_comments: false,
        budget: budget,
    };
    serde_saphyr::with_deserializer_from_str_with_options(text, opts, |d| {
        Document { entries }.deserialize(d)
    })
}

/// The document: `None` when empty, else the tree of its root node.
struct Document<'s> {
    entries: Option<&'s mut dyn Entries>,
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = Option<Value>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML document")
    }
    fn visit_none<E>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        let root = Node {
            at: At::Root,
            entries: self.entries,
        };
        root.deserialize(d).map(Some)
    }
}

/// Where a node sits: a chain up to the root, spelled out as a path (`a.b[2].c`) only when
/// a duplicate key is reported, so reading a node costs no allocation for its path.
#[derive(Clone, Copy)]
enum At<'p> {
    Root,
    Key(&'p At<'p>, &'p str),
    Index(&'p At<'p>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            At::Root => Ok(()),
            At::Key(parent, key) => {
                if matches!(parent, At::Root) {
                    f.write_str(key)
                } else {
                    write!(f, "{parent}.{key}")
                }
            }
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// The node at `at` (for the duplicate-key warning). `entries`: at the root, where the
/// `model_list` entries go; under it, set for the `model_list` node only.
struct Node<'p, 's> {
    at: At<'p>,
    entries: Option<&'s mut dyn Entries>,
}

impl<'p> Node<'p, '_> {
    fn at(at: At<'p>) -> Self {
        Self { at, entries: None }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(i.into()),
            Err(_) => Ok(Value::String(v.to_string())),
        }
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        match u64::try_from(v) {
            Ok(i) => Ok(i.into()),
            Err(_) => Ok(Value::String(v.to_string())),
        }
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // Non-finite floats come as strings (see the options); keep them so if one slips by.
        Ok(Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::String(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_newtype_struct<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if let Some(entries) = self.entries {
            entries.start();
            let mut i = 0;
            while let Some(v) = seq.next_element_seed(Node::at(At::Index(&self.at, i)))? {
                entries.entry(i, v);
                i += 1;
            }
            return Ok(Value::Array(Vec::new()));
        }
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Node::at(At::Index(&self.at, out.len())))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let root = matches!(self.at, At::Root);
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let entries: Option<&mut dyn Entries> = if root && key.value == "model_list" {
                match &mut self.entries {
                    Some(e) => Some(&mut **e),
                    None => None,
                }
            } else {
                None
            };
            let value = map.next_value_seed(Node {
                at: At::Key(&self.at, &key.value),
                entries,
            })?;
            if let Some(old) = out.get_mut(&key.value) {
                *old = value;
                tracing::warn!(
                    key = %At::Key(&self.at, &key.value),
                    line = key.referenced.line(),
                    "duplicate key in config.yaml: the last value is used (as LiteLLM does)"
                );
            } else {
                out.insert(key.value, value);
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_duplicate_wins() {
        let v = load("a:\n  b: 1\n  b: 2\nc: [1, 2]\n").unwrap().unwrap();
        assert_eq!(v["a"]["b"], 2);
        assert_eq!(v["c"][1], 2);
    }

    #[test]
    fn underscored_numbers_are_numbers() {
        let v = load("tpm: 20_000\nrpm: 1_000_000\n").unwrap().unwrap();
        assert_eq!(v["tpm"], 20_000);
        assert_eq!(v["rpm"], 1_000_000);
    }

    #[test]
    fn long_comment_runs_load() {
        let mut text = String::from("model_list:\n");
        for i in 0..5_000 {
            text.push_str(&format!("  # comment line {i}\n"));
        }
        text.push_str("  - model_name: a\n    litellm_params:\n      model: openai/a\n");
        let v = load(&text).unwrap().unwrap();
        assert_eq!(v["model_list"][0]["model_name"], "a");
    }

    #[test]
    fn empty_is_none() {
        assert!(load("").unwrap().is_none());
        assert!(load("# only a comment\n").unwrap().is_none());
    }
}
