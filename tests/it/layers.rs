//! The layering of `src/`: every module imports only modules of a lower
//! layer, so data and dependencies flow one way (no cycles, no upward
//! arrows). A new module must be given a layer here.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::root;

/// Layers from the bottom up; a module may import only modules of a lower
/// layer (modules of one layer may not import each other).
const LAYERS: &[&[&str]] = &[
    &["failpoint", "money"],
    &["model", "logging"],
    &["formats", "storage"],
    &["config", "manifest"],
    &["directory"],
    &["ingest"],
    &["meter"],
    &["rate"],
    &["export", "revision"],
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
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
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
