//! The checked-in C header must be exactly what the pinned cbindgen generates from
//! src/ffi/mod.rs (and the modules it declares, which cbindgen follows) with
//! cbindgen.toml. Regenerate with `TRIB_BLESS_HEADER=1 cargo test --test header_drift`.

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("reading cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate the header from src/ffi/mod.rs");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("cbindgen wrote non-UTF-8")
}

#[test]
fn checked_in_header_matches_cbindgen_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("include/tributary.h");
    let fresh = generate();
    if std::env::var_os("TRIB_BLESS_HEADER").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).expect("writing include/tributary.h");
        eprintln!("wrote {}", path.display());
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != fresh {
        let first_diff = checked_in
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(fresh.lines().count()));
        panic!(
            "include/tributary.h is out of date with src/ffi/ (first difference at line {}).\n\
             Regenerate it with:\n\n    TRIB_BLESS_HEADER=1 cargo test --test header_drift\n\n\
             then review and commit the new header.\n--- checked in: {:?}\n+++ generated:  {:?}",
            first_diff + 1,
            checked_in.lines().nth(first_diff),
            fresh.lines().nth(first_diff)
        );
    }
}

/// The C ABI's source files: src/ffi/mod.rs and its modules.
fn ffi_sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ffi");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("reading src/ffi")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap())).collect()
}

#[test]
fn header_declares_every_exported_function() {
    // Every `#[no_mangle] pub ... extern "C" fn trib_*` in src/ffi/ is in the header: a
    // module cbindgen does not reach (a `mod` it cannot follow) fails here.
    let header = generate();
    let mut n = 0;
    for (file, src) in ffi_sources() {
        for line in src.lines() {
            if let Some(rest) = line.split("extern \"C\" fn ").nth(1) {
                let name = rest.split('(').next().unwrap();
                assert!(name.starts_with("trib_"), "{file}: exported function {name} lacks the trib_ prefix");
                assert!(header.contains(&format!("{name}(")), "{file}: {name} is missing from the generated header");
                n += 1;
            }
        }
    }
    assert!(n >= 25, "found only {n} exported functions in src/ffi/");
}

#[test]
fn every_fallible_function_is_one_ffi_call_under_its_safety_contract() {
    // The boundary macro `ffi_call!` (src/ffi/boundary.rs) writes the prologue of every
    // function that returns a result code and takes `err_out`, and its SAFETY comments
    // rely on what each such function's `# Safety` section promises: `err_out` is NULL or
    // writable, and the handle parameter it looks up is NULL or open. Both are checked
    // here, with the body being one `ffi_call!`.
    let mut n = 0;
    for (file, src) in ffi_sources() {
        let lines: Vec<&str> = src.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(rest) = line.split("extern \"C\" fn ").nth(1) else { continue };
            let name = rest.split('(').next().unwrap();
            let end = (i..lines.len()).find(|&k| lines[k].ends_with('{')).expect("a signature ending in `{`");
            if !lines[i..=end].concat().contains("err_out: *mut *mut trib_error") {
                continue;
            }
            let doc_start =
                (0..i).rev().take_while(|&k| lines[k].starts_with("///") || lines[k].starts_with("#[")).last();
            let doc = doc_start.map_or(String::new(), |s| lines[s..i].join("\n"));
            let safety =
                doc.split("# Safety").nth(1).unwrap_or_else(|| panic!("{file}: {name} has no # Safety section"));
            assert!(safety.contains("`err_out`"), "{file}: {name}'s # Safety section does not cover `err_out`");
            let body = lines[end + 1].trim();
            let args = body
                .strip_prefix("ffi_call!(err_out, ")
                .unwrap_or_else(|| panic!("{file}: the body of {name} is not one `ffi_call!(err_out, ...)`: {body}"));
            if !args.starts_with('|') {
                let handle = args.split(',').next().unwrap();
                assert!(
                    safety.contains(&format!("`{handle}`")),
                    "{file}: {name}'s # Safety section does not cover its handle `{handle}`"
                );
            }
            n += 1;
        }
    }
    assert!(n >= 25, "found only {n} fallible functions in src/ffi/");
}
