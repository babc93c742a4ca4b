//! The layers of `src/` point one way (`src/ARCHITECTURE.md`, "Architecture invariants"): every
//! `crate::<module>` path in a file of one top-level module must name the same module or one
//! below it. Like rust-analyzer's tidy tests, this reads the sources rather than trusting review.

use std::path::{Path, PathBuf};

/// Bottom first. A module may import only modules that come before it (and itself).
const LAYERS: &[&str] = &[
    "kernel",
    "telemetry",
    "config",
    "store",
    "llm",
    "handler",
    "upstream",
    "tools",
    "ingress",
    "connectors",
    "scheduler",
    "approvals",
    "agent",
    "fixture",
    "app",
    "http",
    "server",
    "cases",
    "cli",
];

/// Items `lib.rs` re-exports at the crate root, by the module that defines them.
fn defining_module(name: &str) -> &str {
    match name {
        "init_tls" => "kernel",
        "serve" | "Server" | "Shutdown" => "server",
        other => other,
    }
}

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|m| *m == module)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<module>` a line of code names (comments skipped), grouped imports included.
fn imported_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or_default();
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a::X, b}`: every top-level name in the group.
            let inner = group.split('}').next().unwrap_or_default();
            for part in inner.split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
        rest = after;
    }
    found
}

/// (file:line, importing module, imported module) for every import against the order.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let Some(own) = rank(&module) else {
            bad.push(format!(
                "src/{}: module `{module}` is not in the layer list",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for imported in imported_modules(line) {
                let imported = defining_module(&imported);
                match rank(imported) {
                    Some(r) if r <= own => {}
                    Some(_) => bad.push(format!(
                        "src/{}:{}: `{module}` imports `crate::{imported}`, a layer above it",
                        relative.display(),
                        n + 1
                    )),
                    None => bad.push(format!(
                        "src/{}:{}: `crate::{imported}` is not in the layer list",
                        relative.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    bad
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = violations(&src);
    assert!(
        bad.is_empty(),
        "imports against the layering:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_checker_sees_plain_grouped_and_inline_paths() {
    assert_eq!(
        imported_modules("use crate::store::{JobId, SharedStore};"),
        ["store"]
    );
    assert_eq!(
        imported_modules("use crate::{kernel::Secret, tools};"),
        ["kernel", "tools"]
    );
    assert_eq!(
        imported_modules("    let x = crate::upstream::excerpt(t); // crate::cli in a comment"),
        ["upstream"]
    );
}
