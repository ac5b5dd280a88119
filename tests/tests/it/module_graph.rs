//! The modules of each crate import in one direction: no file imports from a file that (directly or through
//! others) imports it back. A knot means that none of its files can be read or changed alone; this test
//! names the files of every knot it finds.
//!
//! It reads the source, not the compiler's view: every path that starts at `crate::`, `super::`, `self::`,
//! a child module of the file, or (in a crate root) a top-level module, including `use` trees with braces,
//! is resolved to the file that defines the longest module prefix of it. Comments, string literals and
//! `#[cfg(test)]` modules (which may reach anywhere) are left out. A crate's binaries (`main.rs`) are crates
//! of their own and only import the library.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose `src/` is checked, relative to the workspace root.
const CRATES: &[&str] = &["core", "api", "workers", "bench", "tests"];

#[test]
fn no_file_imports_from_a_file_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut knots = Vec::new();
    for krate in CRATES {
        let graph = crate_graph(&root.join(krate).join("src"));
        assert!(!graph.is_empty(), "{krate}/src has modules");
        for knot in cycles(&graph) {
            let mut lines = vec![format!("{krate}: {}", knot.join(", "))];
            for file in &knot {
                for target in &graph[file] {
                    if knot.contains(target) {
                        lines.push(format!("    {file} -> {target}"));
                    }
                }
            }
            knots.push(lines.join("\n"));
        }
    }
    assert!(
        knots.is_empty(),
        "modules that import each other (move the shared types down a layer):\n{}",
        knots.join("\n")
    );
}

#[test]
fn the_checker_sees_use_trees_super_and_crate_root_paths() {
    let source = r#"
        // crate::commented::Out is not an import
        use crate::{db::{self, rooms::Claim}, state::AppState};
        use super::sibling::Thing;
        fn f() { let s = "crate::quoted::Out"; child::run(); crate::error::problem(); }
        #[cfg(test)]
        mod tests { use crate::tests_only::Anything; }
    "#;
    let modules: BTreeSet<Vec<String>> = ["db", "db::rooms", "state", "x", "x::sibling", "x::me"]
        .iter()
        .map(|m| m.split("::").map(str::to_owned).collect())
        .collect();
    let here: Vec<String> = vec!["x".into(), "me".into()];
    let paths = referenced_paths(source, &here, &["child".to_owned()]);
    let resolved: BTreeSet<String> = paths
        .iter()
        .filter_map(|p| longest_module(p, &modules))
        .map(|m| m.join("::"))
        .collect();
    let expected: BTreeSet<String> = ["db", "db::rooms", "state", "x::sibling", "x::me"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    // `crate::error::problem` resolves to the crate root (""), `child::run` to x::me (its child is not a
    // file here, so the longest module is the file itself).
    let named: BTreeSet<String> = resolved.into_iter().filter(|m| !m.is_empty()).collect();
    assert_eq!(named, expected);
    assert!(!paths.iter().any(|p| p.contains(&"commented".to_owned())));
    assert!(!paths.iter().any(|p| p.contains(&"quoted".to_owned())));
    assert!(!paths.iter().any(|p| p.contains(&"tests_only".to_owned())));
}

/// File (relative to `src/`) to the files it imports from, for one crate's library.
fn crate_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    // Module path (segments from the crate root) to file name. The crate root is lib.rs; a crate with no
    // library (the bench) has main.rs as its root, otherwise main.rs is a crate of its own.
    let has_lib = src.join("lib.rs").exists();
    let mut modules: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for file in &files {
        let rel = file
            .strip_prefix(src)
            .expect("under src")
            .to_string_lossy()
            .into_owned();
        if rel.starts_with("bin/") || (rel == "main.rs" && has_lib) {
            continue;
        }
        let path = if rel == "main.rs" {
            Vec::new()
        } else {
            module_path(&rel)
        };
        modules.insert(path, rel);
    }
    let known: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (here, file) in &modules {
        let source = std::fs::read_to_string(src.join(file)).expect("readable source");
        let children: Vec<String> = known
            .iter()
            .filter(|m| m.len() == here.len() + 1 && m.starts_with(here))
            .map(|m| m.last().expect("non-empty").clone())
            .collect();
        let mut targets = BTreeSet::new();
        for path in referenced_paths(&source, here, &children) {
            let target = longest_module(&path, &known).and_then(|module| modules.get(&module));
            if let Some(target) = target.filter(|target| *target != file) {
                targets.insert(target.clone());
            }
        }
        graph.insert(file.clone(), targets);
    }
    graph
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `lib.rs` → [], `db/mod.rs` → [db], `db/rooms.rs` → [db, rooms].
fn module_path(rel: &str) -> Vec<String> {
    let without = rel.trim_end_matches(".rs");
    let mut segments: Vec<String> = without.split('/').map(str::to_owned).collect();
    if matches!(segments.last().map(String::as_str), Some("lib" | "mod")) {
        segments.pop();
    }
    segments
}

/// The longest prefix of `path` that is a module of the crate (the root, `[]`, always is one).
fn longest_module(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| prefix.is_empty() || modules.contains(prefix))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Other,
}

/// The absolute module paths (from the crate root) that `source`, the file of module `here`, names.
/// `children` are the modules declared below `here`, which it may name without `self::`; a crate root may
/// name its top-level modules the same way (they are its children).
fn referenced_paths(source: &str, here: &[String], children: &[String]) -> Vec<Vec<String>> {
    let tokens = tokenize(&without_test_modules(source));
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts_path = match &tokens[i] {
            Token::Ident(word) => {
                let after_sep = i > 0 && tokens[i - 1] == Token::PathSep;
                !after_sep
                    && tokens.get(i + 1) == Some(&Token::PathSep)
                    && (matches!(word.as_str(), "crate" | "super" | "self")
                        || children.contains(word))
            }
            _ => false,
        };
        if !starts_path {
            i += 1;
            continue;
        }
        let mut found = Vec::new();
        i = use_tree(&tokens, i, Vec::new(), &mut found);
        for relative in found {
            if let Some(absolute) = absolute(&relative, here) {
                paths.push(absolute);
            }
        }
    }
    paths
}

/// Reads a path or `use` tree starting at `tokens[i]`, pushing each full path (segments after `prefix`) to
/// `out`; returns the index after it.
fn use_tree(
    tokens: &[Token],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut segments = prefix;
    loop {
        match tokens.get(i) {
            Some(Token::Ident(word)) => {
                segments.push(word.clone());
                i += 1;
            }
            Some(Token::Open) => {
                i += 1;
                loop {
                    match tokens.get(i) {
                        Some(Token::Close) => return i + 1,
                        Some(Token::Comma) => i += 1,
                        Some(Token::Ident(_)) | Some(Token::Open) => {
                            i = use_tree(tokens, i, segments.clone(), out);
                        }
                        None => return i,
                        Some(_) => i += 1,
                    }
                }
            }
            _ => break,
        }
        if tokens.get(i) == Some(&Token::PathSep) {
            i += 1;
        } else {
            break;
        }
    }
    // `use a::b::{self}` names `a::b`.
    if segments.last().map(String::as_str) == Some("self") && segments.len() > 1 {
        segments.pop();
    }
    out.push(segments);
    i
}

/// Makes a path that starts at `crate`, `super`, `self` or a child of `here` absolute.
fn absolute(path: &[String], here: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = here.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => {}
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The source without `#[cfg(test)]` modules: by convention they close the file, so everything from the
/// first `#[cfg(test)]` that is followed by a `mod` line is cut.
fn without_test_modules(source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let cut = lines.iter().enumerate().position(|(n, line)| {
        line.trim() == "#[cfg(test)]"
            && lines
                .get(n + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod ") || next.contains(" mod "))
    });
    lines[..cut.unwrap_or(lines.len())].join("\n")
}

/// Identifiers, `::`, braces and commas; comments, strings and character literals are skipped.
fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r'
            && (next == Some('"') || (next == Some('#') && raw_string_start(&chars, i + 1)))
        {
            // r"..." or r#"..."#: ends at a quote followed by as many hashes.
            let mut hashes = 0;
            i += 1;
            while chars.get(i) == Some(&'#') {
                hashes += 1;
                i += 1;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            tokens.push(Token::Other);
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            tokens.push(Token::Other);
        } else if c == '\'' {
            // A character literal ('x', '\n', '"') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
            tokens.push(Token::Other);
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && next == Some(':') {
            tokens.push(Token::PathSep);
            i += 2;
        } else {
            tokens.push(match c {
                '{' => Token::Open,
                '}' => Token::Close,
                ',' => Token::Comma,
                _ if c.is_whitespace() => {
                    i += 1;
                    continue;
                }
                _ => Token::Other,
            });
            i += 1;
        }
    }
    tokens
}

fn raw_string_start(chars: &[char], mut i: usize) -> bool {
    while chars.get(i) == Some(&'#') {
        i += 1;
    }
    chars.get(i) == Some(&'"')
}

/// Every set of two or more files that reach each other (strongly connected components), each sorted.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(file) = stack.pop() {
            for next in graph.get(&file).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|f| (f, reach(f))).collect();
    let mut assigned = BTreeSet::new();
    let mut components = Vec::new();
    for file in graph.keys() {
        if assigned.contains(file) || !reachable[file].contains(file) {
            continue;
        }
        let component: Vec<String> = graph
            .keys()
            .filter(|other| reachable[file].contains(*other) && reachable[*other].contains(file))
            .cloned()
            .collect();
        assigned.extend(component.iter().cloned());
        components.push(component);
    }
    components
}
