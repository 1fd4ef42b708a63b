//! YAML text → a JSON value tree, read the way LiteLLM (PyYAML's `safe_load`) reads it.
//!
//! Where PyYAML and a strict YAML 1.2 reader differ, real LiteLLM configs rely on PyYAML:
//!
//! * a duplicate mapping key keeps the **last** value (PyYAML's behaviour); each one is
//!   reported by a warn-level event naming the key's path and line, since it is almost
//!   always a mistake;
//! * comments cost nothing: serde-saphyr is built without its `comments` feature, so the
//!   parser skips comments without making events of them (their text is never used), and a
//!   file with thousands of comment lines in a row loads;
//! * `20_000`-style integers are numbers (YAML 1.1, which PyYAML implements).
//!
//! The tree is built by our own visitor rather than `serde_json::Value`'s so that a
//! duplicate key can be reported with its line. Keys are read as plain strings (reading each
//! one as a `serde_saphyr::Spanned` cost about a tenth of a large file's parse): a plain or
//! simply quoted key is borrowed from the text, so its line is found from where it sits,
//! only when it is a duplicate.

use std::{borrow::Cow, fmt};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

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
    load_part(text, text, None, Part::Document)
}

/// [`load`], except that the entries of a top-level `model_list` *sequence* go to `entries`
/// as they are read; in the tree that list is left empty. Anything else under `model_list`
/// (a mapping, a string) stays in the tree.
pub(super) fn load_streaming(
    text: &str,
    entries: &mut dyn Entries,
) -> Result<Option<Value>, serde_saphyr::Error> {
    load_part(text, text, Some(entries), Part::Document)
}

/// What [`load_part`] reads of a text cut in pieces (see `split.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Part {
    /// A document: the whole text, its beginning up to a cut in `model_list`, or what
    /// follows the list. A top-level `model_list` sequence is streamed, as by
    /// [`load_streaming`].
    Document,
    /// A run of top-level `model_list` items on their own, the first being entry `first`;
    /// read as a sequence, each item going to the [`Entries`] as entry `first + i`.
    Items {
        /// The index in `model_list` of the first item.
        first: usize,
    },
}

/// From this size of text on, [`parse`](super::parse) uses [`load_pipelined`]: below it
/// (some 1,500 deployments) a thread costs more than the overlap saves.
pub(super) const PIPELINE_MIN_BYTES: usize = 256 * 1024;

/// Entries handed from the parser thread to the reader per message: one wake-up per batch
/// rather than per entry.
const BATCH: usize = 128;

/// [`load_streaming`], with the parser on a thread of its own: it hands the `model_list`
/// entries over in batches and `entries` reads them on this thread while the parse goes
/// on (on two cores, the typed read of each entry overlaps the parse instead of following
/// it). `entries` sees the same calls in the same order as with [`load_streaming`]; the
/// parser's events (a duplicate key's warning) go to this thread's tracing subscriber.
/// If no thread can be started, the load runs here, as [`load_streaming`].
pub(super) fn load_pipelined(
    text: &str,
    entries: &mut dyn Entries,
) -> Result<Option<Value>, serde_saphyr::Error> {
    enum Batch {
        Start,
        Entries(Vec<(usize, Value)>),
    }
    /// The parser side: buffers entries and sends them `BATCH` at a time.
    struct Handoff {
        tx: std::sync::mpsc::SyncSender<Batch>,
        buf: Vec<(usize, Value)>,
    }
    impl Handoff {
        fn flush(&mut self) {
            if !self.buf.is_empty() {
                let full = std::mem::replace(&mut self.buf, Vec::with_capacity(BATCH));
                // A send fails only once the reader is gone, and then nobody needs it.
                let _ = self.tx.send(Batch::Entries(full));
            }
        }
    }
    impl Entries for Handoff {
        fn start(&mut self) {
            self.flush();
            let _ = self.tx.send(Batch::Start);
        }
        fn entry(&mut self, i: usize, entry: Value) {
            self.buf.push((i, entry));
            if self.buf.len() >= BATCH {
                self.flush();
            }
        }
    }

    // A few batches in flight: the parser runs ahead while the reader keeps up.
    let (tx, rx) = std::sync::mpsc::sync_channel(8);
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    std::thread::scope(|s| {
        // The default stack is enough: the budget's depth limit (the parser's default, 64
        // levels) bounds the recursion of the parse and of the tree built.
        let parser = std::thread::Builder::new()
            .name("thr-config-yaml".to_owned())
            .spawn_scoped(s, move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let mut handoff = Handoff {
                        tx,
                        buf: Vec::with_capacity(BATCH),
                    };
                    let loaded = load_streaming(text, &mut handoff);
                    handoff.flush();
                    loaded
                })
            });
        let Ok(parser) = parser else {
            return load_streaming(text, entries);
        };
        for batch in rx {
            match batch {
                Batch::Start => entries.start(),
                Batch::Entries(list) => {
                    for (i, entry) in list {
                        entries.entry(i, entry);
                    }
                }
            }
        }
        match parser.join() {
            Ok(loaded) => loaded,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Parses `part`, `text` itself or a subslice of it, as `kind` (see [`Part`]): a
/// duplicate key's line and path are those of the whole text, and the budget is the whole
/// text's. `Items` sit one level lower than in the whole text, so their depth limit is one
/// less.
pub(super) fn load_part(
    text: &str,
    part: &str,
    entries: Option<&mut dyn Entries>,
    kind: Part,
) -> Result<Option<Value>, serde_saphyr::Error> {
    let mut budget = serde_saphyr::budget! {
        // The parser's defaults (250,000 nodes, 1,000,000 events) stop a config of some
        // 50,000 deployments. A node or event takes at least a byte of text, except alias
        // replays (capped on their own, and counted here too): so these grow with the file,
        // linearly, and an alias bomb still hits them.
        max_nodes: 250_000.max(text.len()),
        max_events: 1_000_000.max(2 * text.len()),
    };
    if let (Part::Items { .. }, Some(b)) = (kind, &mut budget) {
        // The items are read without the root mapping and `model_list` above them.
        b.max_depth = b.max_depth.saturating_sub(1);
    }
    let opts = serde_saphyr::options! {
        // Snippets would quote the source text (credentials included) in the message.
        with_snippet: false,
        // `.nan`/`.inf` arrive as strings; conversion rejects them naming the field.
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::AsString,
        // Duplicates are resolved (last wins) and reported by `Tree` below.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
        budget: budget,
    };
    serde_saphyr::with_deserializer_from_str_with_options(part, opts, |d| {
        Document {
            text,
            entries,
            kind,
        }
        .deserialize(d)
    })
}

/// The document: `None` when empty, else the tree of its root node.
struct Document<'t, 's> {
    /// The whole text, for the line of a duplicate key.
    text: &'t str,
    entries: Option<&'s mut dyn Entries>,
    kind: Part,
}

impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
    type Value = Option<Value>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Document<'_, '_> {
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
        let root = At::Root(self.text);
        let (at, first) = match self.kind {
            Part::Document => (root, 0),
            Part::Items { first } => (At::Key(&root, "model_list"), first),
        };
        Node {
            at,
            entries: self.entries,
            first,
        }
        .deserialize(d)
        .map(Some)
    }
}

/// Where a node sits: a chain up to the root, spelled out as a path (`a.b[2].c`) only when
/// a duplicate key is reported, so reading a node costs no allocation for its path.
#[derive(Clone, Copy)]
enum At<'p> {
    /// The document, whose text this is.
    Root(&'p str),
    Key(&'p At<'p>, &'p str),
    Index(&'p At<'p>, usize),
}

impl<'p> At<'p> {
    /// The document's text (from the root of the chain).
    fn text(&self) -> &'p str {
        let mut at = *self;
        loop {
            match at {
                At::Root(text) => return text,
                At::Key(parent, _) | At::Index(parent, _) => at = *parent,
            }
        }
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            At::Root(_) => Ok(()),
            At::Key(parent, key) => {
                if matches!(parent, At::Root(_)) {
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
/// `model_list` entries go; under it, set for the `model_list` node only. `first`: the
/// index of that sequence's first item (0 but for [`Part::Items`]).
struct Node<'p, 's> {
    at: At<'p>,
    entries: Option<&'s mut dyn Entries>,
    first: usize,
}

impl<'p> Node<'p, '_> {
    fn at(at: At<'p>) -> Self {
        Self {
            at,
            entries: None,
            first: 0,
        }
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
            let mut i = self.first;
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
        let root = matches!(self.at, At::Root(_));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let entries: Option<&mut dyn Entries> = if root && key == "model_list" {
                match &mut self.entries {
                    Some(e) => Some(&mut **e),
                    None => None,
                }
            } else {
                None
            };
            let value = map.next_value_seed(Node {
                at: At::Key(&self.at, &key),
                entries,
                first: 0,
            })?;
            if let Some(old) = out.get_mut(&*key) {
                *old = value;
                tracing::warn!(
                    key = %At::Key(&self.at, &key),
                    line = line_in(&key, self.at.text()),
                    "duplicate key in config.yaml: the last value is used (as LiteLLM does)"
                );
            } else {
                out.insert(key.into_owned(), value);
            }
        }
        Ok(Value::Object(out))
    }
}

/// A mapping key: borrowed from the text when the parser could (a plain or simply quoted
/// scalar), else its own copy (escapes, folded lines, an alias).
type Key<'de> = Cow<'de, str>;

/// `key`'s line in `text` (1-based), when it is borrowed from it.
fn line_in(key: &Key<'_>, text: &str) -> Option<usize> {
    let Cow::Borrowed(key) = key else {
        return None;
    };
    let start = text.as_ptr() as usize;
    let at = (key.as_ptr() as usize).checked_sub(start)?;
    let before = text.as_bytes().get(..at)?;
    Some(before.iter().filter(|&&b| b == b'\n').count() + 1)
}

/// Reads a [`Key`].
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Cow::Owned(v))
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

    /// Records what an [`Entries`] sees.
    #[derive(Default, PartialEq, Debug)]
    struct Seen(Vec<Option<(usize, Value)>>);

    impl Entries for Seen {
        fn start(&mut self) {
            self.0.push(None);
        }
        fn entry(&mut self, i: usize, entry: Value) {
            self.0.push(Some((i, entry)));
        }
    }

    fn big(n: usize, tail: &str) -> String {
        let mut text = String::from("model_list:\n");
        for i in 0..n {
            text.push_str(&format!(
                "  - model_name: g{i}\n    litellm_params: {{ model: openai/m, rpm: {i} }}\n"
            ));
        }
        text.push_str(tail);
        text
    }

    #[test]
    fn the_pipeline_hands_over_what_streaming_reads() {
        // A duplicate `model_list` too: both lists start, in order.
        let text = big(
            3_000,
            "general_settings: { a: 1 }\nmodel_list:\n  - model_name: last\n",
        );
        assert!(text.len() > BATCH * 10);
        let (mut inline, mut piped) = (Seen::default(), Seen::default());
        let a = load_streaming(&text, &mut inline).unwrap();
        let b = load_pipelined(&text, &mut piped).unwrap();
        assert_eq!(a, b);
        assert_eq!(inline, piped);
        assert_eq!(piped.0.len(), 3_000 + 1 + 2);
        assert_eq!(
            piped.0[3_000],
            Some((2_999, inline.0[3_000].clone().unwrap().1))
        );
    }

    #[test]
    fn the_pipeline_reports_the_parsers_error() {
        let text = big(3_000, "  - [unclosed\n");
        let a = load_streaming(&text, &mut Seen::default()).unwrap_err();
        let b = load_pipelined(&text, &mut Seen::default()).unwrap_err();
        assert_eq!(a.to_string(), b.to_string());
    }

    #[test]
    fn a_borrowed_key_knows_its_line() {
        let text = "a: 1\nb:\n  c: 2\n";
        let key = Cow::Borrowed(&text[text.find('c').unwrap()..][..1]);
        assert_eq!(line_in(&key, text), Some(3));
        assert_eq!(line_in(&Cow::Owned("c".to_owned()), text), None);
        assert_eq!(line_in(&Cow::Borrowed("c"), text), None);
    }

    #[test]
    fn plain_and_quoted_keys_are_borrowed() {
        /// Whether the parser lends every key of a mapping.
        struct Lent;
        impl<'de> DeserializeSeed<'de> for Lent {
            type Value = bool;
            fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for Lent {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
                let mut all = true;
                while let Some(k) = map.next_key_seed(KeySeed)? {
                    all &= matches!(k, Cow::Borrowed(_));
                    map.next_value::<de::IgnoredAny>()?;
                }
                Ok(all)
            }
        }
        let text = "plain: 1\n'single': 2\n\"double\": 3\n";
        let lent = serde_saphyr::with_deserializer_from_str(text, |d| Lent.deserialize(d));
        assert!(lent.unwrap());
    }

    #[test]
    fn empty_is_none() {
        assert!(load("").unwrap().is_none());
        assert!(load("# only a comment\n").unwrap().is_none());
    }
}
