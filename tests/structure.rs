//! The shape of `src/` as rules a change cannot quietly break (DESIGN.md
//! "Structure, round 3"): no file over 600 lines before its unit tests, no
//! function over 80 lines, and no two files that import each other. Text
//! scans, not a parser: comments and strings are blanked out first, which is
//! enough for code written in this repository's style.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FUNCTION_LINES: usize = 80;

/// Modules that `backend.rs` and `http.rs` load by `#[path]` from `src/`:
/// `crate::backend::store::x` lives in `src/store/x.rs`.
const LOADED_BY_PATH: &[(&str, &str)] = &[
    ("backend", "store"),
    ("backend", "service"),
    ("backend", "provision"),
    ("backend", "webhooks"),
    ("http", "api"),
    ("http", "console"),
    ("http", "edge"),
    ("http", "server"),
    ("http", "app"),
];

fn sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                out.push((path, text));
            }
        }
    }
    out.sort();
    out
}

/// The code before the file's `#[cfg(test)]` module.
fn before_tests(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |at| &text[..at])
}

/// Comments, strings and character literals blanked out, newlines kept.
fn strip(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let newlines = |from: usize, to: usize| "\n".repeat(text[from..to].matches('\n').count());
    while i < bytes.len() {
        let rest = &text[i..];
        let skip_to = if rest.starts_with("//") {
            Some(rest.find('\n').map_or(bytes.len(), |n| i + n))
        } else if let Some(comment) = rest.strip_prefix("/*") {
            Some(comment.find("*/").map_or(bytes.len(), |n| i + 2 + n + 2))
        } else if let Some(end) = raw_string_end(text, i) {
            Some(end)
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            Some((j + 1).min(bytes.len()))
        } else {
            char_literal_len(rest).map(|n| i + n)
        };
        match skip_to {
            Some(end) => {
                out.push_str(&newlines(i, end));
                i = end;
            }
            None => {
                let c = rest.chars().next().expect("a char at a boundary");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

fn raw_string_end(text: &str, i: usize) -> Option<usize> {
    let rest = &text[i..];
    let after_ident = i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric();
    if after_ident || !rest.starts_with('r') {
        return None;
    }
    let hashes = rest[1..].bytes().take_while(|b| *b == b'#').count();
    if rest.as_bytes().get(1 + hashes) != Some(&b'"') {
        return None;
    }
    let close = format!("\"{}", "#".repeat(hashes));
    let body = i + 2 + hashes;
    Some(
        text[body..]
            .find(&close)
            .map_or(text.len(), |n| body + n + close.len()),
    )
}

fn char_literal_len(rest: &str) -> Option<usize> {
    let mut chars = rest.char_indices();
    if chars.next()?.1 != '\'' {
        return None;
    }
    let (_, c) = chars.next()?;
    let (at, next) = if c == '\\' {
        chars.next()?;
        chars.next()?
    } else {
        chars.next()?
    };
    (next == '\'').then_some(at + 1)
}

/// (lines, name, first line) of every function with a body.
fn functions(text: &str) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        let (mut depth, mut started) = (0i32, false);
        'scan: for (j, body_line) in lines.iter().enumerate().skip(i) {
            for c in body_line.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        started = true;
                    }
                    '}' => depth -= 1,
                    ';' if !started && depth == 0 => break 'scan,
                    _ => {}
                }
            }
            if started && depth == 0 {
                out.push((j - i + 1, name, i + 1));
                break;
            }
        }
    }
    out
}

fn fn_name(line: &str) -> Option<String> {
    let mut words = line.split(|c: char| !(c.is_alphanumeric() || c == '_'));
    while let Some(word) = words.next() {
        if word == "fn" {
            return words.find(|w| !w.is_empty()).map(str::to_string);
        }
    }
    None
}

fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file each `crate::`/`super::` path in `code` names.
fn imports(
    code: &str,
    here: &[String],
    is_mod_file: bool,
    modules: &BTreeMap<Vec<String>, PathBuf>,
) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("crate::") || w.starts_with("super::"))
        .collect();
    for word in words {
        let segs: Vec<&str> = word.split("::").filter(|s| !s.is_empty()).collect();
        let mut path: Vec<String> = Vec::new();
        let mut rest = &segs[1..];
        if segs[0] == "crate" {
            if let [outer, inner, ..] = rest {
                if LOADED_BY_PATH.contains(&(*outer, *inner)) {
                    rest = &rest[1..];
                }
            }
        } else {
            path = if is_mod_file {
                here.to_vec()
            } else {
                here[..here.len().saturating_sub(1)].to_vec()
            };
            while rest.first() == Some(&"super") {
                path.pop();
                rest = &rest[1..];
            }
        }
        path.extend(rest.iter().map(|s| s.to_string()));
        while !path.is_empty() {
            if let Some(file) = modules.get(&path) {
                out.insert(file.clone());
                break;
            }
            path.pop();
        }
    }
    out
}

#[test]
fn no_file_is_over_600_lines_before_its_unit_tests() {
    let long: Vec<String> = sources()
        .iter()
        .map(|(path, text)| (before_tests(text).lines().count(), path))
        .filter(|(lines, _)| *lines > MAX_FILE_LINES)
        .map(|(lines, path)| format!("{} ({lines} lines)", path.display()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long:#?}"
    );
}

#[test]
fn no_function_is_over_80_lines() {
    let mut long = Vec::new();
    for (path, text) in sources() {
        for (lines, name, at) in functions(&strip(&text)) {
            if lines > MAX_FUNCTION_LINES {
                long.push(format!("{name} at {}:{at} ({lines} lines)", path.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: {long:#?}"
    );
}

#[test]
fn no_two_files_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = sources();
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .map(|(path, _)| (module_of(&src, path), path.clone()))
        .collect();
    let mut uses: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (path, text) in &files {
        let code = strip(before_tests(text));
        let is_mod_file = path
            .file_name()
            .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
        let mut found = imports(&code, &module_of(&src, path), is_mod_file, &modules);
        found.remove(path);
        uses.insert(path.clone(), found);
    }
    let mut pairs = Vec::new();
    for (a, targets) in &uses {
        for b in targets {
            if a < b && uses.get(b).is_some_and(|back| back.contains(a)) {
                pairs.push(format!("{} <-> {}", a.display(), b.display()));
            }
        }
    }
    assert!(pairs.is_empty(), "files importing each other: {pairs:#?}");
}

#[test]
fn the_scans_see_what_they_should() {
    // A function of 3 lines, a string with a brace, and a comment with `fn`.
    let code = "fn a() {\n    let s = \"}\"; // fn fake() {\n}\nfn b();\n";
    let found = functions(&strip(code));
    assert_eq!(found, vec![(3, "a".to_string(), 1)]);
    let src = Path::new("/x/src");
    let modules: BTreeMap<Vec<String>, PathBuf> = [
        (
            vec!["store".to_string()],
            PathBuf::from("/x/src/store/mod.rs"),
        ),
        (
            vec!["store".to_string(), "read".to_string()],
            PathBuf::from("/x/src/store/read.rs"),
        ),
    ]
    .into_iter()
    .collect();
    let here = module_of(src, Path::new("/x/src/api/orders.rs"));
    let seen = imports(
        "use crate::backend::store::read::Page;",
        &here,
        false,
        &modules,
    );
    assert!(seen.contains(Path::new("/x/src/store/read.rs")));
}
