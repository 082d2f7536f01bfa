//! What the built component asks of a host and what it offers: its imports must be the few
//! it needs, and its exports exactly the interfaces of `wit/`.

use std::collections::BTreeSet;
use std::path::Path;

use wit_component::DecodedWasm;
use wit_parser::{Resolve, WorldItem, WorldKey};

/// The interfaces the component may import: HTTP out, and the basics of a WASI program.
const ALLOWED_IMPORTS: &[&str] = &[
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

fn decoded() -> (Resolve, wit_parser::WorldId) {
    let bytes = std::fs::read(host_test::runtime::COMPONENT_PATH).expect("the built component");
    match wit_component::decode(&bytes).expect("a valid component") {
        DecodedWasm::Component(resolve, world) => (resolve, world),
        DecodedWasm::WitPackage(..) => panic!("expected a component, found a WIT package"),
    }
}

/// `package/interface` without its version, e.g. `wasi:http/types`.
fn interface_name(resolve: &Resolve, key: &WorldKey, item: &WorldItem) -> Option<String> {
    let WorldItem::Interface { id, .. } = item else {
        return match key {
            WorldKey::Name(name) => Some(name.clone()),
            WorldKey::Interface(_) => None,
        };
    };
    let interface = &resolve.interfaces[*id];
    let package = &resolve.packages[interface.package?];
    Some(format!(
        "{}:{}/{}",
        package.name.namespace,
        package.name.name,
        interface.name.as_deref()?
    ))
}

#[test]
fn the_component_imports_only_what_it_needs() {
    let (resolve, world) = decoded();

    let imports: BTreeSet<String> = resolve.worlds[world]
        .imports
        .iter()
        .filter_map(|(key, item)| interface_name(&resolve, key, item))
        .collect();

    let unexpected: Vec<_> = imports
        .iter()
        .filter(|name| !ALLOWED_IMPORTS.contains(&name.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected imports: {unexpected:?} (all: {imports:?})"
    );
    assert!(imports.contains("wasi:http/outgoing-handler"));
    assert!(!imports
        .iter()
        .any(|i| i.starts_with("wasi:filesystem") || i.starts_with("wasi:sockets")));
}

/// Renders each exported interface's functions with their full types, so two worlds can be
/// compared regardless of the order things were declared in.
fn exported_signatures(resolve: &Resolve, world: wit_parser::WorldId) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (key, item) in &resolve.worlds[world].exports {
        let WorldItem::Interface { id, .. } = item else {
            panic!(
                "the component exports a bare item: {}",
                resolve.name_world_key(key)
            );
        };
        let name = resolve.name_world_key(key);
        for (function, def) in &resolve.interfaces[*id].functions {
            let params: Vec<String> = def
                .params
                .iter()
                .map(|p| format!("{}: {}", p.name, type_text(resolve, &p.ty)))
                .collect();
            let result = def
                .result
                .as_ref()
                .map(|t| type_text(resolve, t))
                .unwrap_or_default();
            out.insert(format!(
                "{name}#{function}({}) -> {result}",
                params.join(", ")
            ));
        }
        for (type_name, type_id) in &resolve.interfaces[*id].types {
            out.insert(format!(
                "{name}#type {type_name} = {}",
                type_def_text(resolve, *type_id)
            ));
        }
    }
    out
}

fn type_text(resolve: &Resolve, ty: &wit_parser::Type) -> String {
    match ty {
        wit_parser::Type::Id(id) => match &resolve.types[*id].name {
            Some(name) => name.clone(),
            None => type_def_text(resolve, *id),
        },
        other => format!("{other:?}").to_lowercase(),
    }
}

fn type_def_text(resolve: &Resolve, id: wit_parser::TypeId) -> String {
    use wit_parser::TypeDefKind as K;
    let opt = |t: &Option<wit_parser::Type>| {
        t.as_ref()
            .map(|t| type_text(resolve, t))
            .unwrap_or("_".into())
    };
    match &resolve.types[id].kind {
        K::Record(r) => format!(
            "record {{{}}}",
            r.fields
                .iter()
                .map(|f| format!("{}: {}", f.name, type_text(resolve, &f.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        K::Variant(v) => format!(
            "variant {{{}}}",
            v.cases
                .iter()
                .map(|c| format!("{}({})", c.name, opt(&c.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        K::Enum(e) => format!(
            "enum {{{}}}",
            e.cases
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        K::Option(t) => format!("option<{}>", type_text(resolve, t)),
        K::List(t) => format!("list<{}>", type_text(resolve, t)),
        K::Result(r) => format!("result<{}, {}>", opt(&r.ok), opt(&r.err)),
        K::Type(t) => type_text(resolve, t),
        other => format!("{other:?}"),
    }
}

#[test]
fn the_component_exports_exactly_the_contract_in_wit() {
    let (built, built_world) = decoded();
    let mut source = Resolve::default();
    let wit_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let (package, _) = source.push_path(&wit_dir).expect("parsing wit/");
    let source_world = source
        .select_world(&[package], Some("video-agent"))
        .expect("the world");

    let built = exported_signatures(&built, built_world);
    let declared = exported_signatures(&source, source_world);

    let missing: Vec<_> = declared.difference(&built).collect();
    let extra: Vec<_> = built.difference(&declared).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "drift: missing {missing:#?}, extra {extra:#?}"
    );
    assert!(declared.iter().any(|s| s.contains("runs@0.1.0#create-run")));
}

#[test]
fn every_export_returns_a_result_whose_error_has_execution_failed() {
    let (resolve, world) = decoded();

    for (key, item) in &resolve.worlds[world].exports {
        let WorldItem::Interface { id, .. } = item else {
            continue;
        };
        for (name, function) in &resolve.interfaces[*id].functions {
            let Some(wit_parser::Type::Id(result)) = function.result else {
                panic!("{name} returns no result");
            };
            let wit_parser::TypeDefKind::Result(result) = &resolve.types[result].kind else {
                panic!(
                    "{} {name} must return result<T, E>",
                    resolve.name_world_key(key)
                );
            };
            let Some(wit_parser::Type::Id(error)) = result.err else {
                panic!("{name}'s error is not a variant");
            };
            let wit_parser::TypeDefKind::Variant(variant) = &resolve.types[error].kind else {
                panic!("{name}'s error is not a variant");
            };
            assert!(
                variant
                    .cases
                    .iter()
                    .any(|c| c.name == "execution-failed" && c.ty.is_none()),
                "{name}'s error lacks a payload-free execution-failed case"
            );
        }
    }
}
