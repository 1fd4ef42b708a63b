//! A large config's `model_list` read on two threads at once: the text is cut at an item
//! boundary near the list's middle, and each half is parsed and read (steps 1 to 4 of the
//! pipeline) on its own thread; the entries are then put back in order.
//!
//! This is done only when a conservative check of the text says where the items begin
//! for certain (see [`line`]): every line of the list, and every line before it, must be
//! complete on its own (no quoted scalar, flow collection or plain scalar going on to the
//! next line, no block scalar, anchor, alias, tag, merge key, tab or document marker).
//! Then a line `- ` at the items' indentation starts an item, whatever comes around it.
//!
//! Each half's items are then read one by one: an item written plainly enough is read by
//! [`quick::item`] (a small reader giving the same value tree at a fraction of the
//! parser's cost), every run of the others is parsed by serde-saphyr, as a part of the
//! text (see [`read_items`]); what precedes the list and what follows it are parsed as
//! documents of their own.
//!
//! On anything else, and whenever a part fails to parse, an entry fails to read, the
//! counts of items disagree with the check's, or a part would log an event (a duplicate
//! key's warning, an ignored key's debug event: their order across threads would differ),
//! the split is given up *before anything is reported*, and the text is read by the
//! one-thread path, which then reports exactly what it always did. Events are held back
//! by running both halves under [`Watch`], which records nothing and notes whether the
//! caller's subscriber would have recorded an event.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering::Relaxed},
};

use serde_json::Value;
use tracing::{Dispatch, Event, Metadata, span, subscriber::Interest};

use super::{
    Config, ConfigError, Extras, ModelEntry, Resolver, SharedEnv, Streamed, finish, quick, yaml,
};
use crate::secret::Secret;

/// Above this size the parser's whole-text budgets (64 MiB of scalars) could tell the
/// parts apart from the whole; such a file takes the one-thread path.
const MAX_BYTES: usize = 64 << 20;

/// The text cut in three: `head` (everything up to the cut: what precedes `model_list`,
/// the key, and its first items), `tail` (the items from the cut to the end of the list)
/// and `rest` (what follows the list, from a line at column 0).
#[derive(Debug, PartialEq)]
struct Cut<'t> {
    head: &'t str,
    tail: &'t str,
    rest: &'t str,
    /// Where the items begin in `head` (the line after `model_list:`).
    items: usize,
    /// The items' indentation.
    indent: usize,
    /// How many items `head` holds (the index of the tail's first).
    first: usize,
}

/// The result of a split read: `None` when the one-thread path must read the text.
pub(super) fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    shared_env: Option<SharedEnv<'_>>,
) -> Option<Result<Config, ConfigError>> {
    if !(yaml::PIPELINE_MIN_BYTES..MAX_BYTES).contains(&text.len()) {
        return None;
    }
    let cut = cut(text)?;
    let logged = Arc::new(AtomicUsize::new(0));
    let watch = Dispatch::new(Watch {
        inner: tracing::dispatcher::get_default(Clone::clone),
        max_level: tracing::level_filters::LevelFilter::current(),
        logged: Arc::clone(&logged),
    });
    let (head, tail) = std::thread::scope(|s| {
        let tail = std::thread::Builder::new()
            .name("thr-config-yaml".to_owned())
            .spawn_scoped(s, || {
                tracing::dispatcher::with_default(&watch, || read_tail(text, &cut, shared_env))
            })
            .ok()?;
        let head = tracing::dispatcher::with_default(&watch, || read_head(text, &cut, env));
        match tail.join() {
            Ok(tail) => Some((head, tail)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })?;
    if logged.load(Relaxed) > 0 {
        return None;
    }
    let (tree, mut resolver, (mut list, mut extras)) = head?;
    let (tail_list, tail_extras, secrets) = tail?;
    list.extend(tail_list);
    extras.extend(tail_extras);
    resolver.absorb(secrets);
    Some(finish(Some(tree), Some(((list, extras), None)), resolver))
}

/// The tree of the head and the rest, the head's resolver and entries, when they parsed
/// and every entry read.
type Head<'e> = (Value, Resolver<'e>, (Vec<ModelEntry>, Vec<Extras>));

/// Parses what precedes the list and reads the head's items, then parses what follows
/// the list (on the calling thread, whose `env` need not be shared).
fn read_head<'e>(
    text: &str,
    cut: &Cut<'_>,
    env: &'e dyn Fn(&str) -> Option<String>,
) -> Option<Head<'e>> {
    let mut resolver = Resolver::new(env);
    let mut streamed = Streamed::new(&mut resolver);
    // The tail's entries are numbered from the items counted by `cut`.
    let head_items = read_items(text, &cut.head[cut.items..], cut, 0, &mut streamed)?;
    let Streamed {
        list,
        error,
        starts,
        ..
    } = streamed;
    let list = list?;
    if head_items != cut.first || starts != 1 || error.is_some() || list.0.len() != cut.first {
        return None;
    }
    // What precedes the items ends with the `model_list:` line, whose value is then empty:
    // the streamed list's place in the tree (an empty sequence, as streaming leaves it).
    // A top-level `model_list` sequence in it (under a key the cut did not see as one, such
    // as `model_list :`) is beyond the split, as before.
    let mut sequences = Sequences(0);
    let mut tree = yaml::load_part(
        text,
        &cut.head[..cut.items],
        Some(&mut sequences),
        yaml::Part::Document,
    )
    .ok()??;
    match tree.get_mut("model_list") {
        Some(v @ Value::Null) if sequences.0 == 0 => *v = Value::Array(Vec::new()),
        _ => return None,
    }
    // What follows the list: its keys join the head's (a key in both takes the one-thread
    // path, which warns of the duplicate).
    match (
        &mut tree,
        yaml::load_part(text, cut.rest, None, yaml::Part::Document).ok()?,
    ) {
        (_, None) => {}
        (Value::Object(top), Some(Value::Object(more))) => {
            for (k, v) in more {
                if top.insert(k, v).is_some() {
                    return None;
                }
            }
        }
        _ => return None,
    }
    Some((tree, resolver, list))
}

/// The tail's entries and the secrets met in them (on its own thread: `env`, when the
/// caller's cannot be shared, is needed only if the tail names no variable).
fn read_tail(
    text: &str,
    cut: &Cut<'_>,
    shared_env: Option<SharedEnv<'_>>,
) -> Option<(Vec<ModelEntry>, Vec<Extras>, Vec<Secret>)> {
    let no_env = |_: &str| None;
    let env: &dyn Fn(&str) -> Option<String> = match shared_env {
        Some(env) => env,
        None if !cut.tail.contains(super::env::ENV_PREFIX) => &no_env,
        None => return None,
    };
    let mut resolver = Resolver::new(env);
    let mut streamed = Streamed::new(&mut resolver);
    let tail_items = read_items(text, cut.tail, cut, cut.first, &mut streamed)?;
    let Streamed {
        list,
        error,
        starts,
        ..
    } = streamed;
    let (list, extras) = list?;
    if starts != 1 || error.is_some() || list.len() != tail_items {
        return None;
    }
    Some((list, extras, resolver.into_secrets()))
}

/// Counts the top-level `model_list` sequences of a part (whose entries are not wanted).
struct Sequences(usize);

impl yaml::Entries for Sequences {
    fn start(&mut self) {
        self.0 += 1;
    }
    fn entry(&mut self, _: usize, _: Value) {}
}

/// Reads the items of `run` (whole lines of the list, checked by [`check_items`]; its first
/// item is entry `first`) into `streamed`, which it starts: each item that [`quick::item`]
/// reads for certain by it, each run of the others by serde-saphyr (as a part of `text`).
/// Returns how many items there were; `None` gives the split up.
fn read_items(
    text: &str,
    run: &str,
    cut: &Cut<'_>,
    first: usize,
    streamed: &mut Streamed<'_, '_>,
) -> Option<usize> {
    let starts = check_items(run, cut.indent)?;
    yaml::Entries::start(streamed);
    // The run of items declined so far: where it begins in `run`, and its first item.
    let mut pending: Option<(usize, usize)> = None;
    for (k, &at) in starts.iter().enumerate() {
        // Lines before the first item (comments) go with it.
        let from = if k == 0 { 0 } else { at };
        let to = starts.get(k + 1).copied().unwrap_or(run.len());
        match quick::item(&run[from..to], cut.indent) {
            Some(entry) => {
                if let Some((p, pk)) = pending.take() {
                    parse_items(text, &run[p..from], first + pk, k - pk, streamed)?;
                }
                yaml::Entries::entry(streamed, first + k, entry);
            }
            None => {
                pending.get_or_insert((from, k));
            }
        }
    }
    if let Some((p, pk)) = pending {
        parse_items(text, &run[p..], first + pk, starts.len() - pk, streamed)?;
    }
    Some(starts.len())
}

/// Parses `items`, `count` whole items of the list of `text` (the first being entry
/// `first`), with serde-saphyr, handing each to `streamed`.
fn parse_items(
    text: &str,
    items: &str,
    first: usize,
    count: usize,
    streamed: &mut Streamed<'_, '_>,
) -> Option<()> {
    /// Passes the entries on, counting them and the sequence's starts (the part's one
    /// sequence must not restart the list).
    struct Counted<'s, 'r, 'e> {
        inner: &'s mut Streamed<'r, 'e>,
        starts: usize,
        entries: usize,
    }
    impl yaml::Entries for Counted<'_, '_, '_> {
        fn start(&mut self) {
            self.starts += 1;
        }
        fn entry(&mut self, i: usize, entry: Value) {
            self.entries += 1;
            yaml::Entries::entry(self.inner, i, entry);
        }
    }
    let mut counted = Counted {
        inner: streamed,
        starts: 0,
        entries: 0,
    };
    let tree = yaml::load_part(text, items, Some(&mut counted), yaml::Part::Items { first });
    let whole = matches!(tree, Ok(Some(Value::Array(a))) if a.is_empty());
    (whole && counted.starts == 1 && counted.entries == count).then_some(())
}

/// Where to cut `text`: after the top-level `model_list:` line (the only one, at column 0,
/// with nothing after the colon but a comment), at the line `- ` at the items' indentation
/// nearest the middle of the list. The lines before the list must pass [`line`]; the list's
/// own lines are checked by [`check_items`], each half on its thread.
fn cut(text: &str) -> Option<Cut<'_>> {
    let bytes = text.as_bytes();
    // The key's line, and the lines before it.
    let mut at = 0;
    let items = loop {
        let end = line_end(text, at);
        let l = &bytes[at..end];
        let next = (end + 1).min(bytes.len());
        if let Some(after) = l.strip_prefix(b"model_list:") {
            let after = trim_comment(after);
            if !after.iter().all(|&b| b == b' ') {
                return None;
            }
            break next;
        }
        let info = line(l)?;
        if !info.blank && !info.key && !info.dash {
            return None;
        }
        if next >= bytes.len() {
            return None;
        }
        at = next;
    };
    // The first item sets the indentation; the list ends at a line at column 0 that is
    // not an item of it (blank and comment lines belong to the list).
    let mut indent = None;
    let mut starts = Vec::new();
    let mut at = items;
    let mut end = bytes.len();
    while at < bytes.len() {
        let e = line_end(text, at);
        let l = &bytes[at..e];
        let spaces = l.iter().take_while(|&&b| b == b' ').count();
        let content = &l[spaces..];
        if !(content.is_empty() || content.starts_with(b"#") || content == b"\r") {
            let dash = is_dash(content);
            match indent {
                None if dash => indent = Some(spaces),
                None => return None,
                Some(n) if spaces == 0 && !(n == 0 && dash) => {
                    end = at;
                    break;
                }
                Some(_) => {}
            }
            if dash && indent == Some(spaces) {
                starts.push(at);
            }
        }
        at = e + 1;
    }
    // The cut: the first item after the middle of the list (never its first item).
    let middle = items + (end - items) / 2;
    let first = starts.partition_point(|&s| s <= middle).max(1);
    let cut = *starts.get(first)?;
    // What follows the list is parsed on its own: a document marker or directive there
    // would begin a document of its own instead of a second one.
    let marker = |l: &str| l.starts_with("---") || l.starts_with("...") || l.starts_with('%');
    if text.get(end..)?.split('\n').any(marker) {
        return None;
    }
    // `text` is cut at line starts, which are character boundaries.
    Some(Cut {
        head: text.get(..cut)?,
        tail: text.get(cut..end)?,
        rest: text.get(end..)?,
        items,
        indent: indent?,
        first,
    })
}

/// The end of the line starting at `at` (the index of its `\n`, or the text's end).
fn line_end(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |i| at + i)
}

/// Whether a line's content (after its indentation) starts with a `- ` indicator.
fn is_dash(content: &[u8]) -> bool {
    matches!(content, [b'-'] | [b'-', b' ' | b'\r', ..])
}

/// `l` without a trailing ` # comment`.
fn trim_comment(l: &[u8]) -> &[u8] {
    match l.windows(2).position(|w| w == b" #") {
        Some(i) => &l[..i],
        None => l,
    }
}

/// Checks the lines of `items` (whole lines of the list, indented by `indent`): each must
/// pass [`line`] and sit at the list's indentation or deeper; one at the list's
/// indentation starts an item. Returns where the items start (offsets in `items`).
fn check_items(items: &str, indent: usize) -> Option<Vec<usize>> {
    let mut starts = Vec::new();
    let mut at = 0;
    for l in items.split('\n') {
        let this = at;
        at += l.len() + 1;
        let info = line(l.as_bytes())?;
        if info.blank {
            continue;
        }
        if !info.key && !info.dash {
            // A scalar going on from the line before, or a stray one.
            return None;
        }
        match info.indent {
            i if i == indent && info.dash => starts.push(this),
            i if i <= indent => return None,
            _ => {}
        }
    }
    Some(starts)
}

/// What [`line`] found on one line.
#[derive(Debug, PartialEq)]
struct Line {
    /// Its indentation (spaces).
    indent: usize,
    /// Whether it starts with a `- ` indicator.
    dash: bool,
    /// Whether it holds a mapping key outside any flow collection (`key:`).
    key: bool,
    /// Whether it is empty or a comment.
    blank: bool,
}

/// Reads one line of YAML for [`cut`]: `None` unless the line is complete on its own.
/// Quoted scalars and flow collections must close on it, and may only begin where a node
/// begins (the line's start, after `- `, `: `, `{`, `[` or a `,` in a flow); a quote or
/// bracket anywhere else (inside a plain scalar) is beyond the check, as are the
/// indicators of anchors, aliases, tags, block scalars, directives and merge keys where a
/// node begins, complex keys, tabs, carriage returns but a last one, YAML 1.1's other
/// line breaks, and document markers.
fn line(l: &[u8]) -> Option<Line> {
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let indent = l.iter().take_while(|&&b| b == b' ').count();
    if indent == 0 && (l.starts_with(b"---") || l.starts_with(b"...")) {
        return None;
    }
    let mut out = Line {
        indent,
        dash: false,
        key: false,
        blank: true,
    };
    // `lead`: no node on the line yet (only `- ` indicators); `start`: where a node begins.
    let (mut lead, mut start, mut depth) = (true, true, 0usize);
    let mut i = indent;
    while let Some(&c) = l.get(i) {
        let spaced = matches!(l.get(i + 1), None | Some(b' '));
        match c {
            b' ' => {}
            b'#' if l.get(i.wrapping_sub(1)) == Some(&b' ') || i == 0 => break,
            b'-' if lead && spaced => {
                out.dash |= out.blank;
                out.blank = false;
            }
            b':' if spaced || (depth > 0 && matches!(l.get(i + 1), Some(b',' | b']' | b'}'))) => {
                out.key |= depth == 0;
                (lead, start, out.blank) = (false, true, false);
            }
            b'{' | b'[' if start => {
                depth += 1;
                (lead, start, out.blank) = (false, true, false);
            }
            b'}' | b']' if depth > 0 => {
                depth -= 1;
                start = false;
            }
            b',' if depth > 0 => start = true,
            b'\'' | b'"' if start => {
                i = closing_quote(l, i)?;
                (lead, start, out.blank) = (false, false, false);
            }
            b'{' | b'[' | b'}' | b']' | b'\'' | b'"' | b'\t' | b'\r' => return None,
            b'&' | b'*' | b'!' | b'|' | b'>' | b'%' | b'@' | b'`' | b'<' | b'?' if start => {
                return None;
            }
            // U+0085, U+2028 and U+2029, line breaks to YAML 1.1.
            0xC2 if l.get(i + 1) == Some(&0x85) => return None,
            0xE2 if l.get(i + 1) == Some(&0x80) && matches!(l.get(i + 2), Some(0xA8 | 0xA9)) => {
                return None;
            }
            _ => {
                (lead, start, out.blank) = (false, false, false);
                // The rest of a run of such bytes changes nothing more.
                while l.get(i + 1).is_some_and(|&b| !SPECIAL[usize::from(b)]) {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    (depth == 0).then_some(out)
}

/// The bytes [`line`] reads other than as part of a plain scalar (in some state).
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let bytes = b" #-:{}[],'\"\t\r&*!|>%@`<?\xC2\xE2";
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
};

/// The index of the quote closing the quoted scalar opened at `open`, on the same line.
fn closing_quote(l: &[u8], open: usize) -> Option<usize> {
    let q = l[open];
    let mut i = open + 1;
    loop {
        match *l.get(i)? {
            b'\\' if q == b'"' => i += 2,
            b'\'' if q == b'\'' && l.get(i + 1) == Some(&b'\'') => i += 2,
            c if c == q => return Some(i),
            0xC2 if l.get(i + 1) == Some(&0x85) => return None,
            0xE2 if l.get(i + 1) == Some(&0x80) && matches!(l.get(i + 2), Some(0xA8 | 0xA9)) => {
                return None;
            }
            b'\t' | b'\r' => return None,
            _ => i += 1,
        }
    }
}

/// A tracing subscriber that records nothing, and counts the events `inner` (the caller's)
/// would have recorded.
struct Watch {
    inner: Dispatch,
    max_level: tracing::level_filters::LevelFilter,
    logged: Arc<AtomicUsize>,
}

impl tracing::Subscriber for Watch {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        // The most verbose level some subscriber wants now (the caller's own hint is not
        // public): no event is turned on that was off.
        Some(self.max_level)
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata)
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, _: &Event<'_>) {
        self.logged.fetch_add(1, Relaxed);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SPLIT_TEST_KEY").then(|| "sk-from-env".to_owned())
    }

    /// A config of `n` entries in several styles, between settings before and after.
    fn config(n: usize, entry: impl Fn(usize) -> String) -> String {
        let mut text = String::from(
            "# a LiteLLM config\ngeneral_settings:\n  master_key: \"sk-master-1234\" # quoted\n  \
             health_check_interval: 30\nmodel_list:\n  # the list\n",
        );
        for i in 0..n {
            text.push_str(&entry(i));
        }
        text.push_str(
            "# after the list\nrouter_settings:\n  routing_strategy: simple-shuffle\n  \
             num_retries: 2\nlitellm_settings: { request_timeout: 30 }\n",
        );
        assert!(text.len() > yaml::PIPELINE_MIN_BYTES, "too small to split");
        text
    }

    fn mixed(i: usize) -> String {
        match i % 4 {
            0 => format!(
                "  - model_name: group-{g}\n    litellm_params: {{ model: openai/gpt-4o-mini, \
                 api_base: \"http://127.0.0.1:9/v1\", api_key: sk-upstream-{k} }}\n    \
                 model_info: {{ id: dep-{i} }}\n",
                g = i / 100,
                k = i % 7
            ),
            1 => format!(
                "  - model_name: 'group-{g}' # a comment: with - a dash\n    litellm_params:\n      \
                 model: \"openai/a # not a comment\"\n      rpm: 1_000\n      api_key: \
                 os.environ/SPLIT_TEST_KEY\n      custom_llm_provider: openai\n\n    \
                 model_info:\n      id: \"dep-{i}\"\n",
                g = i / 100
            ),
            2 => format!(
                "  - {{ model_name: \"group-{g}\", litellm_params: {{ model: 'it''s/m', \
                 tpm: 20_000 }}, model_info: {{ id: dep-{i}, mode: chat }} }}\n",
                g = i / 100
            ),
            _ => format!(
                "  -   model_name: group-{g}\n      litellm_params: {{model: openai/m, weight: 2}}\n      \
                 model_info: {{id: dep-{i}, tags: [a, \"b, c\", 'd']}}\n# a comment at column 0\n",
                g = i / 100
            ),
        }
    }

    /// What a config holds, secrets included (its `Debug` redacts them).
    fn seen(c: &Config) -> String {
        let keys: Vec<_> = c
            .deployments
            .iter()
            .map(|d| d.params().api_key.as_ref().map(|k| k.expose().to_owned()))
            .collect();
        let master = c.master_key.as_ref().map(|k| k.expose().to_owned());
        format!("{c:?}\n{keys:?}\n{master:?}")
    }

    fn split(text: &str) -> Option<Result<Config, ConfigError>> {
        parse(text, &env, Some(&env))
    }

    fn one(text: &str) -> Result<Config, ConfigError> {
        super::super::one_thread(text, &env)
    }

    #[test]
    fn the_split_reads_what_one_thread_reads() {
        let text = config(4_000, mixed);
        let c = cut(&text).expect("a cut");
        assert!(c.first > 1_600 && c.first < 2_400, "{}", c.first);
        assert!(c.tail.starts_with("  - "));
        assert!(c.rest.starts_with("router_settings:"));
        // Both readers have their share: the plain style is read quickly, the commented
        // one (and the flow items) by the parser.
        assert!(quick::item(&mixed(0), 2).is_some());
        assert!(quick::item(&mixed(1), 2).is_none());
        let a = split(&text).expect("split").expect("loads");
        let b = one(&text).expect("loads");
        assert_eq!(a.deployments.len(), 4_000);
        assert_eq!(seen(&a), seen(&b));
        assert_eq!(
            a.deployments[4_000 - 3]
                .params()
                .api_key
                .as_ref()
                .unwrap()
                .expose(),
            "sk-from-env"
        );
    }

    #[test]
    fn items_at_column_0_and_a_list_at_the_end_split() {
        let text = format!(
            "model_list:\n{}",
            (0..4_000)
                .map(|i| mixed(i)
                    .replacen("  - ", "- ", 1)
                    .replace("\n    ", "\n  ")
                    .replace("\n      ", "\n    "))
                .collect::<String>()
        );
        let c = cut(&text).expect("a cut");
        assert_eq!((c.indent, c.rest), (0, ""));
        let a = split(&text).expect("split").expect("loads");
        assert_eq!(seen(&a), seen(&one(&text).expect("loads")));
    }

    #[test]
    fn texts_beyond_the_check_are_not_cut() {
        let plain =
            |i: usize| format!("  - model_name: g{i}\n    litellm_params: {{ model: openai/m }}\n");
        let with = |odd: &str| {
            let mut text = config(6_000, plain);
            let at = text.len() / 2;
            let at = at + text[at..].find("  - ").unwrap();
            text.insert_str(at, odd);
            text
        };
        for odd in [
            "  - &anchor\n    model_name: a\n",
            "  - model_name: *alias\n",
            "  - model_name: !!str tagged\n",
            "  - model_name: \"two\n  - lines\"\n",
            "  - model_name: 'two\n  - lines'\n",
            "  - model_name: plain\n      going on\n",
            "  - model_name: |\n      block\n",
            "  - model_name: >\n      folded\n",
            "  - { model_name: a,\n  - b }\n",
            "  - [a,\n  - b]\n",
            "  - model_name: it's\n",
            "  - model_name: a\"b\n",
            "  - model_name:\ta\n",
            "  - model_name: a\r\r\n",
            "  - <<: { model_name: a }\n",
            "  - ? model_name\n    : a\n",
            "---\n",
            "  - model_name: a\u{2028}  - b\n",
            "  not_an_item: 1\n",
        ] {
            let text = with(odd);
            let c = cut(&text);
            let checked = c.as_ref().map(|c| {
                (
                    check_items(&c.head[c.items..], c.indent),
                    check_items(c.tail, c.indent),
                )
            });
            // A document marker ends the list; what follows is then no mapping.
            assert!(
                odd == "---\n" || matches!(checked, None | Some((None, _) | (_, None))),
                "{odd:?} passed the check"
            );
            assert!(split(&text).is_none(), "{odd:?} was split");
        }
        for tail in ["---\nx: 1\n", "...\n", "%YAML 1.1\n---\nx: 1\n"] {
            let text = format!("{}{tail}", config(6_000, plain));
            assert!(cut(&text).is_none(), "{tail:?} was cut");
        }
        for head in [
            "x: |\n  block\n",
            "model_list: []\n",
            "model_list:\n  - a\n",
        ] {
            let text = format!("{head}{}", config(6_000, plain));
            assert!(split(&text).is_none(), "{head:?} was split");
        }
    }

    #[test]
    fn what_goes_wrong_is_reported_by_the_one_thread_path() {
        let plain = |i: usize| {
            format!("  - model_name: g{i}\n    litellm_params: {{ model: openai/m, rpm: {i} }}\n")
        };
        let mut text = config(6_000, plain);
        let at = text.find("rpm: 5000 ").unwrap();
        text.replace_range(at..at + 9, "rpm: lots");
        assert!(split(&text).is_none());
        let e = crate::config::Config::from_yaml_str(&text).unwrap_err();
        assert_eq!(e.field(), "model_list[5000].litellm_params.rpm", "{e}");
        // Broken YAML in the tail: the same error as the one-thread path's.
        let broken = text.replace("rpm: lots", "rpm: [lots");
        assert!(split(&broken).is_none());
        let e = crate::config::Config::from_yaml_str(&broken).unwrap_err();
        assert_eq!(e.to_string(), one(&broken).unwrap_err().to_string());
        // A check failing after the parse (a duplicate id across the halves): the same error.
        let dup = config(6_000, |i| {
            plain(i).replace(
                &format!("g{i}\n"),
                &format!("g{i}\n    model_info: {{ id: {} }}\n", i % 5_500),
            )
        });
        let a = split(&dup).expect("split").unwrap_err();
        assert_eq!(a.to_string(), one(&dup).unwrap_err().to_string());
    }

    #[test]
    fn an_event_in_a_half_gives_the_split_up_and_is_logged_once() {
        let text = config(6_000, |i| {
            if i == 5_000 {
                "  - model_name: a\n    litellm_params: { model: openai/m }\n    model_name: b\n"
                    .to_owned()
            } else {
                format!("  - model_name: g{i}\n    litellm_params: {{ model: openai/m }}\n")
            }
        });
        let count = Arc::new(AtomicUsize::new(0));
        let all = Dispatch::new(Watch {
            inner: Dispatch::new(tracing_subscriber::registry()),
            max_level: tracing::level_filters::LevelFilter::TRACE,
            logged: Arc::clone(&count),
        });
        tracing::dispatcher::with_default(&all, || {
            assert!(split(&text).is_none());
            assert_eq!(count.load(Relaxed), 0, "the split logged");
            let c = super::super::parse_shared(&text, &env).expect("loads");
            assert_eq!(c.deployments[5_000].route(), "b");
        });
        assert_eq!(count.load(Relaxed), 1);
        // Without a subscriber that wants it, the same text splits.
        assert!(split(&text).is_some());
    }

    #[test]
    fn lines() {
        let l = |s: &str| line(s.as_bytes());
        let at = |indent, dash, key| {
            Some(Line {
                indent,
                dash,
                key,
                blank: false,
            })
        };
        assert_eq!(l("  - a: b"), at(2, true, true));
        assert_eq!(l("    a: {b: 'c, d', e: [\"f]\"]}"), at(4, false, true));
        assert_eq!(l("  - - x"), at(2, true, false));
        assert_eq!(l("  a: http://x:80/#frag"), at(2, false, true));
        assert_eq!(l("  a: 'it''s' # c'"), at(2, false, true));
        assert_eq!(l("  a: \"\\\"\""), at(2, false, true));
        assert_eq!(l("  -1"), at(2, false, false));
        assert_eq!(
            l("   # c"),
            Some(Line {
                indent: 3,
                dash: false,
                key: false,
                blank: true
            })
        );
        for bad in [
            "  a: 'b",
            "  a: {b",
            "  a: b}",
            "  a: b'c",
            "  a: &x b",
            "  a: !t b",
            "  - |",
            "a:\tb",
            "...",
            "  ? a",
        ] {
            assert_eq!(l(bad), None, "{bad:?}");
        }
    }
}
