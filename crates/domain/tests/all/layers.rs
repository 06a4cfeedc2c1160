//! The domain's top modules form layers: none uses, through any chain of
//! `crate::` paths, a module that uses it. A change to one module then
//! touches only what lies above it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top module → the top modules its code names through `crate::`, comments
/// and unit tests aside.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut tops = BTreeSet::new();
    for entry in std::fs::read_dir(&src).expect("src is readable") {
        let path = entry.expect("an entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a name")
            .to_owned();
        if name != "lib" && name != "main" {
            tops.insert(name);
        }
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("readable") {
                files.push(entry.expect("an entry").path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|c| c.trim_end_matches(".rs").to_owned())
            .expect("a top module");
        if !tops.contains(&top) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let used = graph.entry(top.clone()).or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or_default();
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if tops.contains(&name) && name != top {
                    used.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn the_top_modules_form_layers() {
    let graph = uses();
    assert!(
        graph.contains_key("lifecycle") && graph.contains_key("policy"),
        "{graph:?}"
    );
    // Peel off, again and again, the modules that use none of those left or
    // that none of those left uses: what remains is in a cycle.
    let mut left: BTreeSet<&String> = graph.keys().collect();
    loop {
        let free: Vec<&String> = left
            .iter()
            .copied()
            .filter(|m| {
                graph[*m].iter().all(|u| !left.contains(u))
                    || left.iter().all(|other| !graph[*other].contains(*m))
            })
            .collect();
        if free.is_empty() {
            break;
        }
        for m in free {
            left.remove(m);
        }
    }
    let cycle: BTreeMap<&String, Vec<&String>> = left
        .iter()
        .map(|m| (*m, graph[*m].iter().filter(|u| left.contains(u)).collect()))
        .collect();
    assert!(
        left.is_empty(),
        "modules that use each other, through a chain (module → the ones it uses): {cycle:?}"
    );
}
