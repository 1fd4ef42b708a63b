//! The module graph of `src/` is one-way: every `crate::` path of a module names only
//! modules the table below allows, the graph has no cycle, and the request path
//! (`routing`) cannot reach the probe loop, the shared store or the endpoints, even
//! through other modules. The table mirrors the diagram in the crate docs (`src/lib.rs`).
//!
//! Edges are read from the source at module granularity: the top-level module of a file
//! (`src/probe/http.rs` is `probe`) to the top-level module a `crate::`, `super::` or
//! `self::` path names (in `use` trees and in expressions). Comments, strings and
//! characters are skipped; a path through a root re-export (`crate::HealthState`) counts
//! as an edge to the module it is re-exported from.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Each module and the modules it may name directly. Lower layers first.
/// A module listed here need not exist yet; a module in `src/` not listed here fails.
const ALLOWED: &[(&str, &[&str])] = &[
    ("secret", &[]),
    ("time", &[]),
    ("deployment", &["secret"]),
    ("telemetry", &["deployment"]),
    ("error", &["deployment"]),
    // `classify` sits below `config`: a `Config` carries its classifier.
    (
        "classify",
        &["deployment", "secret", "time", "error", "telemetry"],
    ),
    (
        "config",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "classify",
        ],
    ),
    (
        "provider",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
        ],
    ),
    (
        "cooldown",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
        ],
    ),
    (
        "ejection",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
        ],
    ),
    (
        "stats",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
            "cooldown",
            "ejection",
        ],
    ),
    (
        "health",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
            "cooldown",
            "ejection",
            "stats",
        ],
    ),
    (
        "balance",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
            "stats",
            "health",
        ],
    ),
    (
        "routing",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
            "stats",
            "health",
            "cooldown",
            "ejection",
            "balance",
        ],
    ),
    (
        "retry",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
            "stats",
            "health",
            "cooldown",
            "ejection",
            "balance",
            "routing",
        ],
    ),
    (
        "probe",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
            "stats",
            "health",
            "cooldown",
            "ejection",
            "provider",
        ],
    ),
    (
        "shared",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
            "stats",
            "health",
            "cooldown",
            "ejection",
            "probe",
        ],
    ),
    (
        "endpoints",
        &[
            "deployment",
            "secret",
            "time",
            "error",
            "telemetry",
            "config",
            "classify",
            "stats",
            "health",
            "cooldown",
            "ejection",
            "provider",
            "probe",
            "shared",
        ],
    ),
];

/// What the request path must never reach, directly or not.
const ROUTING_NEVER_REACHES: &[&str] = &["probe", "shared", "endpoints"];

// === the source reader ===

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// Tokens of Rust source, without comments, string/char literals or lifetimes.
fn lex(src: &str) -> Vec<Tok> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if (c == 'r' || c == 'b') && raw_string_start(&b, i).is_some() {
            let (hashes, body) = raw_string_start(&b, i).unwrap();
            i = body;
            loop {
                if i >= b.len() {
                    break;
                }
                if b[i] == '"' && (0..hashes).all(|k| b.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < b.len() && b[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(b[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '.') {
                i += 1;
            }
        } else if c == ':' && next == Some(':') {
            out.push(Tok::Path);
            i += 2;
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    out
}

/// `r"`, `r#"`, `br"`, ...: the number of hashes and where the body starts.
fn raw_string_start(b: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if b[j] == 'b' {
        j += 1;
    }
    if b.get(j) != Some(&'r') {
        return None;
    }
    // Must not be the tail of an identifier (`for"` is not a raw string).
    if i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while b.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (b.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

/// Every path a `use` tree starting at `toks[*i]` names, fully expanded; stops after `;`.
fn use_tree(toks: &[Tok], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        match toks.get(*i) {
            Some(Tok::Ident(s)) if s == "as" => {
                *i += 2;
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *i += 1;
            }
            Some(Tok::Path) => *i += 1,
            Some(Tok::Punct('*')) => *i += 1,
            Some(Tok::Punct('{')) => {
                *i += 1;
                loop {
                    use_tree(toks, i, path.clone(), out);
                    match toks.get(*i) {
                        Some(Tok::Punct(',')) => *i += 1,
                        Some(Tok::Punct('}')) => {
                            *i += 1;
                            break;
                        }
                        _ => break,
                    }
                    if toks.get(*i) == Some(&Tok::Punct('}')) {
                        *i += 1;
                        break;
                    }
                }
                return;
            }
            _ => {
                if !path.is_empty() {
                    out.push(path);
                }
                return;
            }
        }
    }
}

/// A source file: its module path and every `crate`/`super`/`self`-rooted path it names,
/// each with the module path of the (possibly inline) module it appears in.
fn paths_of(module: &[String], src: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let toks = lex(src);
    let mut out = Vec::new();
    // Inline modules: (name, brace depth at which it closes).
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    let here = |stack: &[(String, usize)]| {
        let mut m = module.to_vec();
        m.extend(stack.iter().map(|(n, _)| n.clone()));
        m
    };
    while i < toks.len() {
        match &toks[i] {
            Tok::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Tok::Punct('}') => {
                if stack.last().is_some_and(|(_, d)| *d == depth) {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Tok::Ident(k) if k == "mod" => {
                if let (Some(Tok::Ident(name)), Some(Tok::Punct('{'))) =
                    (toks.get(i + 1), toks.get(i + 2))
                {
                    stack.push((name.clone(), depth + 1));
                }
                i += 1;
            }
            Tok::Ident(k) if k == "use" && toks.get(i + 1) != Some(&Tok::Punct('<')) => {
                i += 1;
                let mut found = Vec::new();
                use_tree(&toks, &mut i, Vec::new(), &mut found);
                let m = here(&stack);
                out.extend(found.into_iter().map(|p| (m.clone(), p)));
            }
            Tok::Ident(k)
                if (k == "crate" || k == "super" || k == "self")
                    && toks.get(i + 1) == Some(&Tok::Path)
                    && (i == 0 || toks[i - 1] != Tok::Path) =>
            {
                let mut p = vec![k.clone()];
                let mut j = i + 1;
                while toks.get(j) == Some(&Tok::Path) {
                    match toks.get(j + 1) {
                        Some(Tok::Ident(s)) => p.push(s.clone()),
                        _ => break,
                    }
                    j += 2;
                }
                out.push((here(&stack), p));
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

/// The absolute path (from the crate root) `path`, written in module `at`, names;
/// `None` for a path into another crate.
fn resolve(at: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut abs: Vec<String>;
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            abs = Vec::new();
            rest = &path[1..];
        }
        Some("self") => {
            abs = at.to_vec();
            rest = &path[1..];
        }
        Some("super") => {
            abs = at.to_vec();
            while rest.first().map(String::as_str) == Some("super") {
                abs.pop();
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    abs.extend(rest.iter().filter(|s| *s != "self").cloned());
    Some(abs)
}

fn module_of(src_dir: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src_dir).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// One edge between top-level modules, with where it was seen.
type Edges = BTreeMap<(String, String), Vec<String>>;

/// The top-level module edges of the crate in `src_dir`.
fn crate_edges(src_dir: &Path) -> (BTreeSet<String>, Edges) {
    let mut files = Vec::new();
    rust_files(src_dir, &mut files);
    files.sort();
    let lib = fs::read_to_string(src_dir.join("lib.rs")).unwrap();
    // Top-level modules: the `mod` items of lib.rs.
    let toks = lex(&lib);
    let modules: BTreeSet<String> = toks
        .windows(3)
        .filter_map(|w| match w {
            [Tok::Ident(m), Tok::Ident(name), Tok::Punct(';' | '{')] if m == "mod" => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect();
    // Root re-exports: `crate::HealthState` is an edge to `health`.
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    for (_, p) in paths_of(&[], &lib) {
        if p.len() > 1 && modules.contains(&p[0]) {
            reexports.insert(p.last().unwrap().clone(), p[0].clone());
        }
    }
    let mut edges = Edges::new();
    for file in &files {
        let module = module_of(src_dir, file);
        let Some(from) = module.first().cloned() else {
            continue; // lib.rs: the root may name every module
        };
        let src = fs::read_to_string(file).unwrap();
        for (at, p) in paths_of(&module, &src) {
            let Some(abs) = resolve(&at, &p) else {
                continue;
            };
            let Some(first) = abs.first() else { continue };
            let to = if modules.contains(first) {
                first.clone()
            } else if let Some(m) = reexports.get(first) {
                m.clone()
            } else {
                continue; // a root item that is not a module (a macro, `BoxError`, ...)
            };
            if to != from {
                let rel = file.strip_prefix(src_dir).unwrap().display();
                edges
                    .entry((from.clone(), to))
                    .or_default()
                    .push(format!("src/{rel}: {}", p.join("::")));
            }
        }
    }
    (modules, edges)
}

fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect()
}

/// Every module reachable from `from` over `graph`.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(m) = todo.pop() {
        for n in graph.get(&m).into_iter().flatten() {
            if seen.insert(n.clone()) {
                todo.push(n.clone());
            }
        }
    }
    seen
}

/// One cycle of `graph`, if it has any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == m) {
            let mut c = stack[pos..].to_vec();
            c.push(m.to_owned());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_owned());
        for n in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(g, n, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in g_keys(graph) {
        if let Some(c) = visit(graph, &m, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn g_keys(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    g.keys().cloned().collect()
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn actual_graph() -> BTreeMap<String, BTreeSet<String>> {
    let (modules, edges) = crate_edges(&src_dir());
    let mut g: BTreeMap<String, BTreeSet<String>> =
        modules.into_iter().map(|m| (m, BTreeSet::new())).collect();
    for (from, to) in edges.keys() {
        g.entry(from.clone()).or_default().insert(to.clone());
    }
    g
}

// === the tests ===

#[test]
fn every_edge_is_allowed_by_the_diagram() {
    let (modules, edges) = crate_edges(&src_dir());
    let allowed = allowed();
    let mut bad = Vec::new();
    for m in &modules {
        if !allowed.contains_key(m.as_str()) {
            bad.push(format!(
                "module `{m}` is not in the diagram: add it to ALLOWED (and to the crate docs)"
            ));
        }
    }
    for ((from, to), seen) in &edges {
        let ok = allowed
            .get(from.as_str())
            .is_some_and(|deps| deps.contains(to.as_str()));
        if !ok {
            bad.push(format!(
                "`{from}` may not use `{to}`; seen at:\n    {}",
                seen.join("\n    ")
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "edges against the diagram:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = actual_graph();
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn the_diagram_itself_is_one_way() {
    let g: BTreeMap<String, BTreeSet<String>> = ALLOWED
        .iter()
        .map(|(m, deps)| {
            (
                (*m).to_owned(),
                deps.iter().map(|d| (*d).to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(find_cycle(&g), None, "the allowed table has a cycle");
    for (m, deps) in &g {
        for d in deps {
            assert!(
                g.contains_key(d),
                "`{m}` allows `{d}`, which the table does not list"
            );
        }
    }
}

#[test]
fn routing_reaches_neither_probe_nor_shared_nor_endpoints() {
    // In the code as it is...
    let reach = reachable(&actual_graph(), "routing");
    // ...and in anything the diagram would still allow.
    let allowed_graph: BTreeMap<String, BTreeSet<String>> = ALLOWED
        .iter()
        .map(|(m, deps)| {
            (
                (*m).to_owned(),
                deps.iter().map(|d| (*d).to_owned()).collect(),
            )
        })
        .collect();
    let allowed_reach = reachable(&allowed_graph, "routing");
    for m in ROUTING_NEVER_REACHES {
        assert!(!reach.contains(*m), "routing reaches `{m}`: {reach:?}");
        assert!(
            !allowed_reach.contains(*m),
            "the diagram lets routing reach `{m}`: {allowed_reach:?}"
        );
    }
    // The reader itself works: routing does use the health snapshot.
    assert!(reach.contains("health"), "{reach:?}");
}

#[test]
fn the_reader_sees_every_kind_of_path() {
    let src = r#"
        use crate::{a::X, b::{self, Y as Z}, c};
        use super::d::*;
        // use crate::commented;
        /* crate::block::Comment */
        fn f() { let _ = "crate::in_string"; let _ = '"'; crate::e::f(); super::super::g::h(); }
        mod tests { use super::*; use super::super::i; }
        pub(crate) fn k<'a>(_: &'a str) { <crate::j::J as Tr>::go() }
    "#;
    let mods: Vec<String> = vec!["m".into(), "n".into()];
    let got: BTreeSet<Vec<String>> = paths_of(&mods, src)
        .into_iter()
        .filter_map(|(at, p)| resolve(&at, &p))
        .filter_map(|abs| abs.first().cloned().map(|f| vec![f]))
        .collect();
    let want: BTreeSet<Vec<String>> = ["a", "b", "c", "m", "e", "g", "j"]
        .iter()
        .map(|s| vec![(*s).to_owned()])
        .collect();
    assert_eq!(got, want);
}
