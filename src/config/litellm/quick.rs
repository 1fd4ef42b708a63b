//! A quick reader for the plainest `model_list` items, used by the split read (`split.rs`)
//! in place of the YAML parser for each item it can read for certain.
//!
//! Why: serde-saphyr and its tokenizer take some 90,000 instructions per item of a typical
//! generated list (`- model_name: g`, `litellm_params: { model: m, api_base: "u" }`,
//! ...), nine tenths of a large file's start-up. Most items of such a file use a handful
//! of shapes, which this reader turns into the same value tree in a small fraction of
//! that.
//!
//! It *declines* (answers `None`) anything outside a narrow subset, and the item is then
//! parsed by serde-saphyr as before, so what it accepts must read exactly as the parser
//! reads it (the tests below compare the two on every shape and scalar spelling it takes):
//!
//! * an item is a block mapping starting on the `- ` line (one space after the dash),
//!   each key on a line of its own at the mapping's column; a key with nothing after its
//!   colon holds a nested block mapping (on the lines below, further in);
//! * a key is plain: an ASCII letter or `_`, then letters, digits, `_` and `-` (never a
//!   boolean or null spelling), followed by `:` and a space or the line's end;
//! * a value on the key's line is a scalar or a flow mapping `{ k: v, ... }` of scalars
//!   (no nested collection, no trailing comma, not empty);
//! * a scalar is quoted (`"..."` or `'...'`, no escape, no quote inside), an unsigned
//!   decimal integer without leading zero (up to 18 digits), a YAML 1.1 boolean (`yes`,
//!   `off`, `True`, ...: what serde-saphyr's untyped read takes), or a plain string that
//!   starts with a letter and holds only letters, digits and `-_./+=@%~` (and, outside a
//!   flow mapping, `?`, `&` and `:`, not at its end);
//! * no comment, blank line, tab, carriage return, backslash, control or non-ASCII byte
//!   anywhere in the item, no duplicate key.
//!
//! The split's line check (`split::line`) has already vouched that every line is
//! complete on its own; this reader only ever narrows what is taken.

use serde_json::{Map, Value};

/// The value tree of the item `chunk` (whole lines: the item's `- ` line at `indent`,
/// and the lines below it), or `None` when it is not written plainly enough.
pub(super) fn item(chunk: &str, indent: usize) -> Option<Value> {
    let bytes = chunk.as_bytes();
    if bytes.iter().any(|&b| {
        matches!(b, b'#' | b'\\' | b'\r' | b'\t') || !(b == b'\n' || (0x20..0x7f).contains(&b))
    }) {
        return None;
    }
    let body = chunk.strip_suffix('\n').unwrap_or(chunk);
    let mut lines = Vec::with_capacity(4);
    for (n, l) in body.split('\n').enumerate() {
        let spaces = l.bytes().take_while(|&b| b == b' ').count();
        if n == 0 {
            // `{indent}- key: ...`: the mapping starts two columns in.
            let rest = l.get(indent..)?.strip_prefix("- ")?;
            if spaces != indent || rest.starts_with(' ') {
                return None;
            }
            lines.push((indent + 2, rest));
        } else {
            lines.push((spaces, &l[spaces..]));
        }
    }
    let mut pos = 0;
    let map = block_mapping(&lines, &mut pos, indent + 2)?;
    (pos == lines.len()).then_some(Value::Object(map))
}

/// The block mapping whose keys sit at column `col`, from line `pos` on.
fn block_mapping(
    lines: &[(usize, &str)],
    pos: &mut usize,
    col: usize,
) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    while let Some(&(c, content)) = lines.get(*pos) {
        if c < col {
            break;
        }
        if c > col {
            return None;
        }
        let (key, rest) = key(content)?;
        *pos += 1;
        let value = if rest.is_empty() {
            // A nested mapping on the lines below, further in.
            let &(inner, _) = lines.get(*pos)?;
            if inner <= col {
                return None;
            }
            Value::Object(block_mapping(lines, pos, inner)?)
        } else {
            let v = rest.trim_start_matches(' ');
            let (value, after) = if v.starts_with('{') {
                let (m, after) = flow_mapping(v)?;
                (Value::Object(m), after)
            } else {
                scalar(v, false)?
            };
            if !after.bytes().all(|b| b == b' ') {
                return None;
            }
            value
        };
        if out.insert(key.to_owned(), value).is_some() {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A flow mapping of scalars at the start of `s`, and what follows its `}`.
fn flow_mapping(s: &str) -> Option<(Map<String, Value>, &str)> {
    let mut out = Map::new();
    let mut s = s.strip_prefix('{')?;
    loop {
        let (k, rest) = key(s.trim_start_matches(' '))?;
        // `k:` at the end of the line would be a null; `k:v` no key at all.
        let rest = rest.strip_prefix(' ')?.trim_start_matches(' ');
        let (value, after) = scalar(rest, true)?;
        if out.insert(k.to_owned(), value).is_some() {
            return None;
        }
        let after = after.trim_start_matches(' ');
        match after.as_bytes().first()? {
            b',' => s = &after[1..],
            b'}' => return Some((out, &after[1..])),
            _ => return None,
        }
    }
}

/// A plain key at the start of `s` and what follows its colon (nothing, or a space first).
fn key(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    if !b.first()?.is_ascii_alphabetic() && b[0] != b'_' {
        return None;
    }
    let len = b
        .iter()
        .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        .count();
    let (k, rest) = s.split_at(len);
    let rest = rest.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) || special_word(k) {
        return None;
    }
    Some((k, rest))
}

/// A scalar at the start of `s` (in a flow mapping when `flow`), and what follows it.
fn scalar(s: &str, flow: bool) -> Option<(Value, &str)> {
    let b = s.as_bytes();
    match *b.first()? {
        q @ (b'"' | b'\'') => {
            let end = 1 + s[1..].find(q as char)?;
            // `''` inside single quotes is an escaped quote: the parser's business.
            if q == b'\'' && b.get(end + 1) == Some(&b'\'') {
                return None;
            }
            Some((Value::String(s[1..end].to_owned()), &s[end + 1..]))
        }
        c if c.is_ascii_alphanumeric() => {
            let len = b
                .iter()
                .take_while(|&&c| {
                    c.is_ascii_alphanumeric()
                        || matches!(
                            c,
                            b'-' | b'_' | b'.' | b'/' | b'+' | b'=' | b'@' | b'%' | b'~'
                        )
                        || (matches!(c, b':' | b'?' | b'&') && !flow)
                })
                .count();
            let (text, after) = s.split_at(len);
            if text.ends_with(':') {
                return None;
            }
            let value = if c.is_ascii_digit() {
                // An unsigned decimal integer, nothing else (floats, dates, `1_000`,
                // `0x1F`, octal spellings go to the parser).
                if c == b'0' || len > 18 || !text.bytes().all(|d| d.is_ascii_digit()) {
                    return None;
                }
                Value::from(text.parse::<u64>().ok()?)
            } else if text.len() <= 5
                && let Some(flag) = yaml11_bool(text)
            {
                Value::Bool(flag)
            } else if special_word(text) {
                // A null spelling.
                return None;
            } else {
                Value::String(text.to_owned())
            };
            Some((value, after))
        }
        _ => None,
    }
}

/// serde-saphyr's untyped reading of a YAML 1.1 boolean (its `parse_yaml11_bool`).
fn yaml11_bool(t: &str) -> Option<bool> {
    let is = |w: &str| t.eq_ignore_ascii_case(w);
    if is("true") || is("yes") || is("y") || is("on") {
        Some(true)
    } else if is("false") || is("no") || is("n") || is("off") {
        Some(false)
    } else {
        None
    }
}

/// Whether `t` is a boolean or null spelling in any case (none is longer than 5 bytes).
fn special_word(t: &str) -> bool {
    t.len() <= 5 && (yaml11_bool(t).is_some() || t.eq_ignore_ascii_case("null"))
}

#[cfg(test)]
mod tests {
    use super::{super::yaml, *};

    /// What serde-saphyr reads for the item `chunk` (via the same `Items` part the split uses).
    fn parsed(chunk: &str) -> Value {
        struct One(Option<Value>);
        impl yaml::Entries for One {
            fn start(&mut self) {}
            fn entry(&mut self, _: usize, entry: Value) {
                assert!(self.0.replace(entry).is_none(), "two items");
            }
        }
        let mut one = One(None);
        let tree = yaml::load_part(chunk, chunk, Some(&mut one), yaml::Part::Items { first: 0 });
        assert!(
            matches!(&tree, Ok(Some(Value::Array(a))) if a.is_empty()),
            "{chunk:?}: {tree:?}"
        );
        one.0.expect("an item")
    }

    /// What serde-saphyr reads for the item `chunk`, or `None` when it reads no single item.
    fn parsed_or_none(chunk: &str) -> Option<Value> {
        struct One(Vec<Value>);
        impl yaml::Entries for One {
            fn start(&mut self) {}
            fn entry(&mut self, _: usize, entry: Value) {
                self.0.push(entry);
            }
        }
        let mut one = One(Vec::new());
        let tree = yaml::load_part(chunk, chunk, Some(&mut one), yaml::Part::Items { first: 0 });
        let ok = matches!(&tree, Ok(Some(Value::Array(a))) if a.is_empty());
        (ok && one.0.len() == 1).then(|| one.0.remove(0))
    }

    #[track_caller]
    fn same(chunk: &str) {
        let quick = item(chunk, 2).unwrap_or_else(|| panic!("{chunk:?} declined"));
        assert_eq!(quick, parsed(chunk), "{chunk:?}");
    }

    #[test]
    fn reads_what_the_parser_reads() {
        same(
            "  - model_name: group-1\n    litellm_params: { model: openai/gpt-4o-mini, api_base: \"http://127.0.0.1:18181/v1\", api_key: sk-upstream-3 }\n    model_info: { id: dep-7 }\n",
        );
        same(
            "  - model_name: 'g 1'\n    litellm_params:\n      model: azure/gpt-4o\n      api_base: https://x.openai.azure.com:443/a?b=c%20d\n      api_key: os.environ/AZURE_KEY\n      rpm: 1000\n    model_info:\n      id: a_b\n      mode: chat\n",
        );
        same("  - model_name: a\n    litellm_params: {model: m,tpm: 20,  weight: 3 }  \n");
        same("  - model_name: \"\"\n    a: ''\n    b: \"null\"\n    c: 'yes'\n");
        same(
            "  - model_name: a\n    deep:\n        more:\n          k: v\n        k2: v2\n    k3: 123456789012345678\n",
        );
        for word in [
            "y", "Y", "yes", "Yes", "YES", "yEs", "n", "N", "no", "NO", "true", "True", "TRUE",
            "tRuE", "false", "FALSE", "on", "ON", "On", "off", "OFF", "Off", "inf", "Infinity",
            "nan", "NaN", "e5", "x1", "a-b", "a.b", "a/b", "a+b", "a=b", "a@b", "a%b", "a~b", "a1",
            "Z",
        ] {
            same(&format!("  - k: {word}\n"));
            same(&format!("  - k: {{ a: {word}, b: 1 }}\n"));
        }
        for block_only in ["a:b", "a::b", "a?b", "a&b", "h://x:1/p?q=1&r=2"] {
            same(&format!("  - k: {block_only}\n"));
            assert_eq!(item(&format!("  - k: {{ a: {block_only} }}\n"), 2), None);
        }
        for number in ["1", "7", "10", "99999", "1000000", "123456789012345678"] {
            same(&format!("  - k: {number}\n"));
            same(&format!("  - k: {{ v: {number} }}\n"));
        }
        // The last item of a text ending without a line break.
        assert_eq!(item("  - k: v", 2), Some(parsed("  - k: v\n")));
    }

    #[test]
    fn declines_what_it_cannot_be_sure_of() {
        for chunk in [
            "  - k: null\n",
            "  - k: Null\n",
            "  - k: nULL\n",
            "  - k: ~\n",
            "  - k:\n",
            "  - k:   \n",
            "  - k: 0\n",
            "  - k: 012\n",
            "  - k: 1_000\n",
            "  - k: 1.5\n",
            "  - k: 1e5\n",
            "  - k: 2024-01-01\n",
            "  - k: 0x1F\n",
            "  - k: -1\n",
            "  - k: +1\n",
            "  - k: .inf\n",
            "  - k: 1234567890123456789\n",
            "  - k: a b\n",
            "  - k: a:\n",
            "  - k: 'it''s'\n",
            "  - k: \"a\\\"b\"\n",
            "  - k: v # comment\n",
            "  - k: v\n\n",
            "  - k: v\r\n",
            "  - k: é\n",
            "  - k: [a, b]\n",
            "  - k: { a: { b: c } }\n",
            "  - k: { a: b, }\n",
            "  - k: {}\n",
            "  - k: { a:b }\n",
            "  - k: { a: b:c }\n",
            "  - k: { a: b } x\n",
            "  - k: v\n    k: w\n",
            "  - k: { a: 1, a: 2 }\n",
            "  - yes: v\n",
            "  - null: v\n",
            "  - 1: v\n",
            "  - \"k\": v\n",
            "  -   k: v\n",
            "  - k: v\n     j: w\n",
            "  - k: v\n   j: w\n",
            "  - k:\n    j: w\n",
            "  - - a\n",
            "  - { k: v }\n",
            "  # a comment\n  - k: v\n",
            "  - k: &a v\n",
            "  - k: *a\n",
            "  - k: !t v\n",
            "  - k: |\n      v\n",
        ] {
            assert_eq!(item(chunk, 2), None, "{chunk:?}");
        }
    }

    // Items put together from spellings near the edges of what the reader takes (and
    // past them, one in ten): whatever it accepts, serde-saphyr must read the same, and
    // accept.
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3_000))]
        #[test]
        fn what_it_accepts_the_parser_reads_the_same(
            keys in proptest::collection::vec(
                (
                    word(KEYS, EDGE_KEYS),
                    proptest::prop_oneof![
                        3 => word(VALUES, EDGE_VALUES).prop_map(Shape::Inline),
                        1 => proptest::collection::vec(
                            (word(KEYS, EDGE_KEYS), word(VALUES, EDGE_VALUES)),
                            1..4,
                        )
                        .prop_map(Shape::Nested),
                    ],
                    0usize..3,
                ),
                1..5,
            ),
            deeper in 1usize..4,
        ) {
            let mut chunk = String::new();
            for (n, (k, shape, trailing)) in keys.iter().enumerate() {
                chunk.push_str(if n == 0 { "  - " } else { "    " });
                chunk.push_str(k);
                chunk.push(':');
                match shape {
                    Shape::Inline(v) => {
                        chunk.push(' ');
                        chunk.push_str(v);
                    }
                    Shape::Nested(inner) => {
                        for (k, v) in inner {
                            chunk.push('\n');
                            chunk.push_str(&" ".repeat(4 + deeper));
                            chunk.push_str(k);
                            chunk.push_str(": ");
                            chunk.push_str(v);
                        }
                    }
                }
                chunk.push_str(&" ".repeat(*trailing));
                chunk.push('\n');
            }
            if let Some(quick) = item(&chunk, 2) {
                proptest::prop_assert_eq!(Some(quick), parsed_or_none(&chunk), "{:?}", chunk);
            }
        }
    }

    use proptest::strategy::Strategy;

    /// A word of `usual` nine times in ten, else one of `edge`.
    fn word(
        usual: &'static [&'static str],
        edge: &'static [&'static str],
    ) -> impl Strategy<Value = &'static str> {
        proptest::prop_oneof![
            9 => proptest::sample::select(usual),
            1 => proptest::sample::select(edge),
        ]
    }

    #[derive(Debug, Clone)]
    enum Shape {
        Inline(&'static str),
        Nested(Vec<(&'static str, &'static str)>),
    }

    const KEYS: &[&str] = &[
        "model_name",
        "litellm_params",
        "model_info",
        "api_base",
        "k",
        "a_b",
        "a-b",
        "_x",
        "K9",
        "rpm",
        "id",
        "mode",
        "Yes1",
        "nullable",
        "on_call",
        "n-1",
    ];

    const EDGE_KEYS: &[&str] = &[
        "yes", "No", "null", "NULL", "1", "y", "on", "a.b", "a b", "k:", "~", "\"k\"", "'k'",
    ];

    const VALUES: &[&str] = &[
        "v",
        "a:b",
        "'q'",
        "\"q\"",
        "''",
        "\"\"",
        "1",
        "7",
        "10",
        "123456789012345678",
        "true",
        "Off",
        "yEs",
        "n",
        "Y",
        "NaN",
        "inf",
        "Infinity",
        "e5",
        "a#b",
        "h://x:1/p?q=1&r=2",
        "a?b",
        "a&b",
        "a%20b",
        "os.environ/KEY",
        "a=b",
        "a.b",
        "a-",
        "a_",
        "a~",
        "a+b@c",
        "{ a: b }",
        "{a: 1,b: c}",
        "{ a: 'x,y' }",
        "{ a: \"}\" }",
        "{ a: yes, b: 'no' }",
        "{ a: \"h://x:1/p\" }",
        "{ a: a.b, b: 12, c: nulls }",
        "nulls",
        "Nope",
        "yess",
    ];

    const EDGE_VALUES: &[&str] = &[
        "a: b",
        "a:",
        "'it''s'",
        "\"a\\\"b\"",
        "0",
        "01",
        "007",
        "1.5",
        "1e5",
        "1_000",
        "0x1F",
        "-1",
        "+1",
        "1234567890123456789",
        "null",
        "Null",
        "~",
        ".inf",
        "a #b",
        "x y",
        "x  y",
        "{ a: b, }",
        "{}",
        "{ a: b:c }",
        "{ a:b }",
        "{ a: b } x",
        "{ a: { b: c } }",
        "[a]",
        "&x v",
        "*x",
        "!t v",
        "|",
        ">",
        "é",
        "a\tb",
        "2024-01-01",
        "12:30",
        "@a",
        "%a",
        "`a`",
        "'a' 'b'",
        "\"a\" x",
        "a'b",
        "a\"b",
        "{ a: 1, a: 2 }",
        "- x",
        "? x",
        "{ a: }",
        "{ a: null }",
        "{ : b }",
    ];
}
