//! The crate's architecture, read from its source: three rooms in one direction —
//! `engine` (the pure core) ← `adapters` (configuration, reference data) ← `runtime` (the
//! shell) — and no dependency cycle between modules. A module is a layer's direct child
//! (`engine::stats` with its files under `engine/stats/`); its dependencies are every
//! `crate::` path it names, in `use` trees (`use crate::engine::{a, b::C}`) and inline, and
//! every `super::` path that leaves it. Test modules at the end of a file
//! (`#[cfg(test)] mod tests`) are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers in order: a module may use its own layer and those before it.
const LAYERS: [&str; 3] = ["engine", "adapters", "runtime"];

/// Crates that do I/O, and calls that read a clock: the core names none of them.
const NOT_IN_ENGINE: [&str; 12] = [
    "tokio::", "datafusion::", "rdkafka::", "axum::", "lettre::", "prometheus::", "std::fs", "std::net", "std::thread",
    "std::process", "::now()", "tracing_subscriber::",
];

/// One source file: its module path (`["engine", "stats", "binned"]`) and its code without
/// comments and without its test module.
struct Source {
    module: Vec<String>,
    code: String,
}

fn sources(dir: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    collect(dir, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(dir).ok()?;
            let mut module: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            let last = module.pop()?;
            match last.as_str() {
                "mod.rs" => {}
                name => module.push(name.trim_end_matches(".rs").to_string()),
            }
            if !LAYERS.contains(&module.first()?.as_str()) {
                return None; // lib.rs, main.rs and the tests
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            Some(Source { module, code: code_of(&text) })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text without line comments and without the trailing test module.
fn code_of(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") && lines.peek().is_some_and(|l| l.trim_start().starts_with("mod tests"))
        {
            break;
        }
        let code = match line.find("//") {
            // A `//` inside a string ("http://…") keeps the line whole.
            Some(i) if line[..i].matches('"').count() % 2 == 0 => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every path named after `crate::`, `super::` or `self::` in `code`, expanded through
/// `use` groups, as absolute module paths (`["engine", "profile", "Profile"]`).
fn paths(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (anchor, base) in [
        ("crate::", Vec::new()),
        // `engine/stats/binned.rs` is `engine::stats::binned`, `engine/stats/mod.rs` is
        // `engine::stats`: either way `super` drops the last name.
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
        ("self::", module.to_vec()),
    ] {
        let mut from = 0;
        while let Some(i) = code[from..].find(anchor) {
            let at = from + i;
            from = at + anchor.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // `super::super::`, `my_crate::` and the like
            }
            let mut rest = code[from..].chars().peekable();
            tree(&mut rest, base.clone(), &mut out);
        }
    }
    out
}

/// Reads one use tree (`a::b::{c, d::e}` or a plain path) into `out`.
fn tree(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            loop {
                tree(chars, path.clone(), out);
                while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                    chars.next();
                }
                match chars.peek() {
                    Some('}') => {
                        chars.next();
                        return;
                    }
                    None => return,
                    Some(c) if !(c.is_alphanumeric() || *c == '_' || *c == '{') => {
                        chars.next(); // not a use tree after all
                    }
                    _ => {}
                }
            }
        }
        let ident: String = std::iter::from_fn(|| chars.next_if(|c| c.is_alphanumeric() || *c == '_')).collect();
        if ident.is_empty() {
            chars.next_if_eq(&'*'); // a glob names the module it is in
            out.push(path);
            return;
        }
        path.push(ident);
        let mut lookahead = chars.clone();
        if lookahead.next() == Some(':') && lookahead.next() == Some(':') {
            chars.next();
            chars.next();
        } else {
            out.push(path);
            return;
        }
    }
}

/// The graph: module (`engine::stats`) → the modules it names, each with one example path.
fn graph(sources: &[Source]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in sources {
        let node = s.module[..2.min(s.module.len())].join("::");
        let entry = graph.entry(node.clone()).or_default();
        for path in paths(&s.module, &s.code) {
            if path.len() < 2 || !LAYERS.contains(&path[0].as_str()) {
                continue;
            }
            let target = path[..2].join("::");
            if target != node {
                entry
                    .entry(target)
                    .or_insert_with(|| format!("{} names crate::{}", s.module.join("/"), path.join("::")));
            }
        }
    }
    graph
}

/// Every rule the sources break, one line each.
fn findings(sources: &[Source]) -> Vec<String> {
    let mut out = Vec::new();
    let graph = graph(sources);
    let rank = |node: &str| LAYERS.iter().position(|l| node.split("::").next() == Some(*l)).unwrap_or(0);
    for (from, edges) in &graph {
        for (to, why) in edges {
            if rank(to) > rank(from) {
                out.push(format!("layering: {from} may not use {to} ({why})"));
            }
        }
    }
    for s in sources.iter().filter(|s| s.module[0] == "engine") {
        for name in NOT_IN_ENGINE {
            if let Some(i) = s.code.find(name) {
                let line = s.code[..i].lines().count();
                out.push(format!(
                    "engine/{}: line {line} names {name}, which the core may not",
                    s.module[1..].join("/")
                ));
            }
        }
    }
    for cycle in cycles(&graph) {
        let steps: Vec<String> =
            cycle.windows(2).map(|w| graph[&w[0]].get(&w[1]).cloned().unwrap_or_default()).collect();
        out.push(format!("cycle: {} ({})", cycle.join(" → "), steps.join("; ")));
    }
    out
}

/// One cycle (first node repeated at the end) for every strongly connected component of
/// more than one module, found by Tarjan's algorithm.
fn cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    let nodes: Vec<&String> = graph.keys().collect();
    let index_of: BTreeMap<&String, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let edges: Vec<Vec<usize>> =
        nodes.iter().map(|n| graph[*n].keys().filter_map(|t| index_of.get(t).copied()).collect()).collect();
    let mut components = Vec::new();
    let mut state = Tarjan { index: vec![None; nodes.len()], low: vec![0; nodes.len()], ..Tarjan::default() };
    for v in 0..nodes.len() {
        if state.index[v].is_none() {
            state.visit(v, &edges, &mut components);
        }
    }
    components
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|component| {
            // The shortest way round inside the component, from its first module back to it
            // (breadth first, so every step is a real edge).
            let inside: BTreeSet<usize> = component.iter().copied().collect();
            let start = component[0];
            let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            'search: while let Some(v) = queue.pop_front() {
                for &w in &edges[v] {
                    if w == start {
                        parent.insert(start, v);
                        break 'search;
                    }
                    if inside.contains(&w) && !parent.contains_key(&w) {
                        parent.insert(w, v);
                        queue.push_back(w);
                    }
                }
            }
            let mut path = vec![start];
            let mut at = start;
            while let Some(&p) = parent.get(&at) {
                path.push(p);
                if p == start {
                    break;
                }
                at = p;
            }
            path.reverse();
            path.into_iter().map(|i| nodes[i].clone()).collect()
        })
        .collect()
}

#[derive(Default)]
struct Tarjan {
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    stack: Vec<usize>,
    on_stack: BTreeSet<usize>,
    next: usize,
}

impl Tarjan {
    fn visit(&mut self, v: usize, edges: &[Vec<usize>], out: &mut Vec<Vec<usize>>) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack.insert(v);
        for &w in &edges[v] {
            match self.index[w] {
                None => {
                    self.visit(w, edges, out);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(i) if self.on_stack.contains(&w) => self.low[v] = self.low[v].min(i),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack.remove(&w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            component.reverse();
            out.push(component);
        }
    }
}

#[test]
fn the_crate_has_three_layers_and_no_cycles() {
    let sources = sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("agent"));
    assert!(sources.iter().any(|s| s.module == ["engine", "profile"]), "the engine's files are found");
    let found = findings(&sources);
    assert!(found.is_empty(), "{} architecture findings:\n{}", found.len(), found.join("\n"));
}

/// The checker itself: each kind of forbidden dependency, written as it would be, is found.
#[test]
fn a_forbidden_import_is_found() {
    let source = |module: &str, code: &str| Source {
        module: module.split('/').map(String::from).collect(),
        code: code_of(code),
    };
    let clean = [
        source("engine/profile", "use crate::engine::rng::splitmix;\n"),
        source("engine/rng", "pub fn splitmix() {}\n"),
        source("runtime/run", "use crate::{adapters::config::{self, Model}, engine::{profile::Profile, rng}};\n"),
        source("adapters/config", "fn f() { let x = crate::engine::profile::DEFAULT_BINS; }\n// crate::runtime::run\n"),
    ];
    assert_eq!(findings(&clean), Vec::<String>::new());

    let upward = [source("engine/profile", "use crate::{engine::rng, runtime::metrics::Metrics};\n")];
    let found = findings(&upward);
    assert!(
        found.len() == 1 && found[0].starts_with("layering: engine::profile may not use runtime::metrics"),
        "{found:?}"
    );

    let io = [source("engine/window", "use datafusion::arrow::array::UInt32Array;\n")];
    assert!(findings(&io)[0].contains("names datafusion::"), "{:?}", findings(&io));

    let inline = [source("adapters/config", "fn f() { crate::runtime::http::serve(); }\n")];
    assert!(findings(&inline)[0].starts_with("layering: adapters::config may not use runtime::http"));

    let cycle = [
        source("engine/alert", "use crate::engine::rules::Rule;\n"),
        source("engine/rules", "use super::report::Report;\n"),
        source("engine/report", "fn f() -> crate::engine::alert::State { todo!() }\n"),
    ];
    let found = findings(&cycle);
    assert!(
        found.len() == 1
            && found[0].starts_with("cycle: engine::alert → engine::rules → engine::report → engine::alert"),
        "{found:?}"
    );

    let tests_only =
        [source("engine/alert", "fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::runtime::http::Shared;\n}\n")];
    assert_eq!(findings(&tests_only), Vec::<String>::new());
}
