//! The crate's folders form layers: each imports only folders below it, so none can be split
//! off or reasoned about without the ones above (ARCHITECTURE.md). This reads every source
//! file's `crate::<module>` paths (comments aside) and fails on any import that goes up or
//! sideways to a module not listed.

use std::collections::BTreeMap;
use std::path::Path;

/// Every top-level module of `src/`, lowest first; a module may import only those of a lower
/// layer.
const LAYERS: &[&[&str]] = &[
    &[
        "types",
        "sqltext",
        "metrics",
        "unsafe_faults",
        "audit",
        "config",
    ],
    &["net", "shard"],
    &["db"],
    &["raft"],
    &["service"],
    &["catalog"],
    &["router"],
    &["auth", "alerts"],
    &["backup"],
    &["http", "pgwire", "shell", "bench"],
    &["admin", "demo"],
    &["node"],
    &["recover", "fuzzing"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The top-level module a source file belongs to (`src/raft/group.rs` → `raft`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src/");
    let first = relative
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy()
        .to_string();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules `text` names as `crate::<module>`, outside `//` comments.
fn imported_modules(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_modules_of_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            panic!("src/{module} is in no layer of tests/layers.rs: place it");
        };
        let text = std::fs::read_to_string(file).expect("read a source file");
        for imported in imported_modules(&text) {
            if imported == module {
                continue;
            }
            let allowed = layer_of(&imported).is_some_and(|layer| layer < own);
            if !allowed {
                upward
                    .entry(format!("{module} -> {imported}"))
                    .or_default()
                    .push(file.display().to_string());
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that go up or sideways between layers: {upward:#?}"
    );
}

#[test]
fn the_scan_sees_imports_and_skips_comments() {
    let text =
        "use crate::raft::types::X; // crate::http is only mentioned\nlet a = crate::db::f();";
    assert_eq!(imported_modules(text), ["raft", "db"]);
}
