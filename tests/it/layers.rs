//! The layering of `src/`: every module imports only modules of a lower
//! layer, so data and dependencies flow one way (no cycles, no upward
//! arrows). A new module must be given a layer here.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::root;

/// Layers from the bottom up; a module may import only modules of a lower
/// layer (modules of one layer may not import each other).
const LAYERS: &[&[&str]] = &[
    &["failpoint", "money", "country", "memory"],
    &["model", "logging"],
    &["formats", "storage"],
    &["config", "manifest"],
    &["directory"],
    &["ingest", "collect"],
    &["meter"],
    &["rate"],
    &["export", "revision"],
    &["einvoice"],
    &["alerts"],
    &["error"],
    &["pipeline"],
    &["report", "summary"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules a source text names as `crate::NAME` or inside
/// `crate::{...}` groups, ignoring comments.
fn imported_modules(text: &str) -> Vec<String> {
    named_after(text, "crate::")
}

/// The names that follow `prefix` in a source text (`prefix NAME` or inside
/// `prefix {...}` groups), ignoring comments.
fn named_after(text: &str, prefix: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find(prefix) {
        rest = &rest[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: split at commas outside nested braces.
            let (mut depth, mut start) = (0usize, 0usize);
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(group[start..j].to_owned());
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(group[start..j].to_owned());
                        start = j + 1;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(rest.to_owned());
        }
    }
    out.iter()
        .map(|s| s.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>())
        .filter(|s| !s.is_empty() && s != "self")
        .collect()
}

/// Every upward or sideways import of the modules under `src`, as
/// `file: module (layer) imports other (layer)`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            out.push(format!("{}: module {module} has no layer in tests/it/layers.rs", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests may reach across layers for their fixtures.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        for other in imported_modules(text) {
            if other == module {
                continue;
            }
            match layer_of(&other) {
                Some(l) if l < own => {}
                Some(l) => out.push(format!("{}: {module} (layer {own}) imports {other} (layer {l})", rel.display())),
                None => out.push(format!("{}: {module} imports {other}, which has no layer", rel.display())),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Import cycles between the files of one stage's folder (`src/meter/*.rs`
/// naming each other through `super::` or `crate::meter::`), as the cycle's
/// files; `mod.rs`, the folder's front, is left out.
fn sibling_cycles(src: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut folders: Vec<_> =
        std::fs::read_dir(src).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    for folder in folders {
        let stage = folder.file_name().unwrap().to_string_lossy().into_owned();
        let mut files: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().to_string_lossy().strip_suffix(".rs").map(str::to_owned))
            .filter(|f| f != "mod")
            .collect();
        files.sort();
        let edges: BTreeMap<&str, Vec<String>> = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(folder.join(format!("{f}.rs"))).unwrap();
                let text = text.split("#[cfg(test)]").next().unwrap_or_default().to_owned();
                let mut to = named_after(&text, "super::");
                to.extend(named_after(&text, &format!("crate::{stage}::")));
                to.retain(|t| t != f && files.contains(t));
                (f.as_str(), to)
            })
            .collect();
        // Depth-first search for a path that comes back to where it started.
        fn visit<'a>(
            at: &'a str,
            edges: &'a BTreeMap<&str, Vec<String>>,
            path: &mut Vec<&'a str>,
            found: &mut Vec<String>,
        ) {
            if let Some(i) = path.iter().position(|p| *p == at) {
                found.push(path[i..].join(" → ") + " → " + at);
                return;
            }
            path.push(at);
            for next in &edges[at] {
                visit(next, edges, path, found);
            }
            path.pop();
        }
        for f in &files {
            let mut found = Vec::new();
            visit(f, &edges, &mut Vec::new(), &mut found);
            out.extend(found.into_iter().filter(|c| c.starts_with(&format!("{f} "))).map(|c| format!("{stage}: {c}")));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn no_import_cycles_between_the_files_of_a_stage() {
    let cycles = sibling_cycles(&root().join("src"));
    assert!(cycles.is_empty(), "import cycles:\n  {}", cycles.join("\n  "));
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("meter");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("mod.rs"), "mod a; mod b; mod c;\n").unwrap();
    std::fs::write(m.join("a.rs"), "use super::{b::X, COUNT};\n").unwrap();
    std::fs::write(m.join("b.rs"), "fn f() { crate::meter::c::g(); }\n").unwrap();
    std::fs::write(m.join("c.rs"), "use super::a;\n#[cfg(test)]\nmod tests { use super::super::b; }\n").unwrap();
    assert_eq!(sibling_cycles(dir.path()), ["meter: a → b → c → a", "meter: b → c → a → b", "meter: c → a → b → c"]);
    std::fs::write(m.join("c.rs"), "// use super::a;\n").unwrap();
    assert!(sibling_cycles(dir.path()).is_empty());
}

#[test]
fn no_module_imports_upward() {
    let v = violations(&root().join("src"));
    assert!(v.is_empty(), "imports against the layering:\n  {}", v.join("\n  "));
}

#[test]
fn every_declared_module_has_a_layer() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let declared: Vec<&str> =
        lib.lines().filter_map(|l| l.trim().strip_prefix("pub mod ")?.strip_suffix(';')).collect();
    let by_layer: BTreeMap<&str, usize> =
        LAYERS.iter().enumerate().flat_map(|(i, l)| l.iter().map(move |m| (*m, i))).collect();
    assert!(declared.len() > 10, "{declared:?}");
    for m in &declared {
        assert!(by_layer.contains_key(m), "src/lib.rs declares {m}, which has no layer");
    }
    for m in by_layer.keys() {
        assert!(declared.contains(m), "layer list names {m}, which src/lib.rs does not declare");
    }
}

#[test]
fn the_check_sees_upward_imports_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("meter")).unwrap();
    std::fs::write(src.join("money.rs"), "//! x\n// use crate::cli; (a comment)\nuse polars::prelude::*;\n").unwrap();
    std::fs::write(
        src.join("meter/mod.rs"),
        "use crate::{\n    directory::Directory,\n    rate::{self, RateOptions},\n};\nfn f() { crate::export::x(); }\n\
         #[cfg(test)]\nmod tests { use crate::cli::Cli; }\n",
    )
    .unwrap();
    std::fs::write(src.join("gadget.rs"), "use crate::model;\n").unwrap();
    assert_eq!(
        violations(src),
        [
            "gadget.rs: module gadget has no layer in tests/it/layers.rs",
            "meter/mod.rs: meter (layer 6) imports export (layer 8)",
            "meter/mod.rs: meter (layer 6) imports rate (layer 7)",
        ]
    );
}
