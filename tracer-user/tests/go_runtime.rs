//! `host::goruntime` against real Go processes: tests/data/goruntime (500 goroutines
//! blocked, a 32 MiB live set, a memory limit, three forced GCs, then its own
//! runtime.NumGoroutine, MemStats and limit on stdout) built by every Go release from 1.19
//! to 1.27, stripped (`-ldflags=-s -w`) and not. What leaktracer reads from outside must
//! agree with what the program says of itself, the variables found in stripped code must
//! be where the symbol table says, and the offsets tables must be what DWARF says.
//! Reading another process needs root (or ptrace rights over it): the e2e environment.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use leaktracer::host::{
    gobin::GoBinary,
    goruntime::{
        Found, GoRuntimeSample, GoRuntimes, OffsetsFrom, RuntimeLayout, Unreadable,
        fields::{self, TABLE_RELEASES},
        locate,
    },
};

/// (go command, release). Kept in step with xtask's prereqs.rs GO_TOOLCHAINS.
const TOOLCHAINS: &[(&str, (u32, u32))] = &[
    ("/usr/bin/go", (1, 19)),
    ("/opt/go121/bin/go", (1, 21)),
    ("/opt/go122/bin/go", (1, 22)),
    ("/opt/go123/bin/go", (1, 23)),
    ("/opt/go124/bin/go", (1, 24)),
    ("/opt/go125/bin/go", (1, 25)),
    ("/opt/go126/bin/go", (1, 26)),
    ("/opt/go127/bin/go", (1, 27)),
];

const GOROUTINES: u64 = 500;
const LIVE_MIB: u64 = 32;
/// An odd number, so that reading it is no coincidence.
const MEMORY_LIMIT: u64 = (3 << 30) + 12_345;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Build {
    Full,
    Stripped,
    /// Position-independent and stripped: addresses move by the load bias.
    PieStripped,
    /// Symbols kept, DWARF dropped, with flags as long as the stripped build's: the build
    /// information (which records the flags) has the same size, so every variable is at
    /// the same address as in the stripped build, and the symbol table says where.
    StrippedLayoutWithSymbols,
}

fn build(toolchain: &str, how: Build, dir: &Path) -> PathBuf {
    build_program("goruntime", toolchain, how, dir)
}

/// `program` is a directory of tests/data (a Go module).
fn build_program(program: &str, toolchain: &str, how: Build, dir: &Path) -> PathBuf {
    assert!(
        Path::new(toolchain).exists(),
        "Go toolchain {toolchain} is missing: `cargo xtask setup` installs it"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(program);
    let exe = dir.join(format!("{program}-{how:?}"));
    let mut c = Command::new(toolchain);
    c.env("GOTOOLCHAIN", "local")
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "-mod=mod")
        .current_dir(&src)
        .arg("build")
        .arg("-o")
        .arg(&exe);
    match how {
        Build::Full => {}
        Build::Stripped => {
            c.arg("-ldflags=-s -w");
        }
        Build::PieStripped => {
            c.args(["-buildmode=pie", "-ldflags=-s -w"]);
        }
        Build::StrippedLayoutWithSymbols => {
            c.arg("-ldflags=-w -w");
        }
    }
    c.arg(".");
    let out = c.output().expect("running go build");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// What the program says of itself once settled.
#[derive(Debug)]
struct Truth {
    goroutines: u64,
    heap_alloc: u64,
    num_gc: u32,
    next_gc: u64,
    memory_limit: u64,
    procs: u64,
}

/// A running test program; killed when dropped.
struct Program {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Program {
    fn start(exe: &Path) -> (Self, Truth) {
        let mut child = Command::new(exe)
            .args([
                GOROUTINES.to_string(),
                LIVE_MIB.to_string(),
                MEMORY_LIMIT.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the Go program");
        let mut program = Self {
            stdin: child.stdin.take().unwrap(),
            stdout: BufReader::new(child.stdout.take().unwrap()),
            child,
        };
        let truth = program.truth();
        (program, truth)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line it prints, once settled: reading it is the wait.
    fn truth(&mut self) -> Truth {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let value = |key: &str| -> u64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("{key} missing in {line:?}"))
                .parse()
                .unwrap()
        };
        Truth {
            goroutines: value("goroutines"),
            heap_alloc: value("heap_alloc"),
            num_gc: u32::try_from(value("num_gc")).unwrap(),
            next_gc: value("next_gc"),
            memory_limit: value("memory_limit"),
            procs: value("procs"),
        }
    }

    /// Set its GOMAXPROCS (the runtime reallocates or drops Ps), then it collects and
    /// reports again.
    fn set_procs(&mut self, procs: u64) -> Truth {
        use std::io::Write as _;
        writeln!(self.stdin, "{procs}").unwrap();
        self.stdin.flush().unwrap();
        let truth = self.truth();
        assert_eq!(truth.procs, procs);
        truth
    }
}

fn within(ours: u64, truth: u64, fraction: f64) -> bool {
    (ours as f64 - truth as f64).abs() <= truth as f64 * fraction
}

fn assert_agrees(what: &str, s: &GoRuntimeSample, truth: &Truth) {
    assert_eq!(s.gc_cycles, truth.num_gc, "{what}: GC cycles");
    assert_eq!(s.memory_limit_bytes, Some(truth.memory_limit), "{what}");
    assert_eq!(
        truth.memory_limit, MEMORY_LIMIT,
        "{what}: the program's own"
    );
    assert!(
        within(s.goroutines, truth.goroutines, 0.05),
        "{what}: {} goroutines, the program says {}",
        s.goroutines,
        truth.goroutines
    );
    let live = s.live_heap_bytes.unwrap();
    assert!(
        within(live, truth.heap_alloc, 0.10),
        "{what}: live heap {live}, HeapAlloc after GC {}",
        truth.heap_alloc
    );
    let goal = s.heap_goal_bytes.unwrap();
    assert!(
        within(goal, truth.next_gc, 0.10),
        "{what}: heap goal {goal}, NextGC {}",
        truth.next_gc
    );
}

#[test]
fn readings_match_what_each_go_program_says_of_itself() {
    let dir = tempfile::tempdir().unwrap();
    let mut runtimes = GoRuntimes::default();
    let mut checked = 0;
    for &(toolchain, release) in TOOLCHAINS {
        let mut builds = vec![Build::Full, Build::Stripped];
        if release == (1, 26) {
            builds.push(Build::PieStripped);
        }
        for how in builds {
            let what = format!("Go {}.{} {how:?}", release.0, release.1);
            let exe = build(toolchain, how, dir.path());
            let (mut program, truth) = Program::start(&exe);
            let pid = program.pid();
            let sample = runtimes
                .sample(pid)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .unwrap_or_else(|| panic!("{what}: not seen as Go"));
            // And again: the second read is the steady state (P addresses cached), timed.
            let started = std::time::Instant::now();
            let again = runtimes.sample(pid).unwrap().unwrap();
            for _ in 0..199 {
                runtimes.sample(pid).unwrap().unwrap();
            }
            eprintln!(
                "{what}: {:?} per steady-state sample",
                started.elapsed() / 200
            );
            let layout = runtimes.layout_of(pid).unwrap();
            eprintln!("{what}: truth {truth:?}\n  read {sample:?}\n  layout {layout:?}");
            let (found, offsets) = match how {
                Build::Full => (Found::Symbols, OffsetsFrom::Dwarf),
                _ => (Found::Code, OffsetsFrom::Table),
            };
            assert_eq!(
                (layout.found, layout.offsets_from),
                (found, offsets),
                "{what}"
            );
            assert_eq!(layout.pie, how == Build::PieStripped, "{what}");
            assert_eq!(layout.release, release, "{what}");
            for s in [&sample, &again] {
                assert_agrees(&what, s, &truth);
                assert!(
                    s.go_version
                        .starts_with(&format!("go{}.{}", release.0, release.1))
                );
            }
            assert!(truth.goroutines > GOROUTINES && truth.heap_alloc > LIVE_MIB << 20);
            // More Ps, then one: the cached P addresses must follow.
            for procs in [truth.procs + 3, 1] {
                let truth = program.set_procs(procs);
                let s = runtimes.sample(pid).unwrap().unwrap();
                assert_agrees(&format!("{what}, GOMAXPROCS {procs}"), &s, &truth);
            }
            drop(program);
            runtimes.forget(pid);
            checked += 1;
        }
    }
    assert_eq!(checked, TOOLCHAINS.len() * 2 + 1);
}

#[test]
fn stripped_code_leads_to_the_addresses_the_symbol_table_gives() {
    let dir = tempfile::tempdir().unwrap();
    for &(toolchain, release) in TOOLCHAINS {
        let what = format!("Go {}.{}", release.0, release.1);
        let full_bytes = std::fs::read(build(toolchain, Build::Full, dir.path())).unwrap();
        let stripped_bytes = std::fs::read(build(toolchain, Build::Stripped, dir.path())).unwrap();
        let full = object::File::parse(&*full_bytes).unwrap();
        let by_symbols = locate::from_symbols(&full).unwrap().unwrap();
        let dwarf = fields::from_dwarf(&full, release).unwrap().unwrap();
        // The code path on the unstripped binary itself...
        let go = GoBinary::parse(&full_bytes).unwrap().unwrap();
        let by_code = locate::from_code(&full, go.pclntab.as_ref().unwrap(), &dwarf).unwrap();
        assert_eq!(by_code, by_symbols, "{what}: unstripped, from its code");
        // ...and on the stripped build, against the symbols of a build laid out like it.
        let twin_bytes = std::fs::read(build(
            toolchain,
            Build::StrippedLayoutWithSymbols,
            dir.path(),
        ))
        .unwrap();
        let twin = object::File::parse(&*twin_bytes).unwrap();
        let twin_symbols = locate::from_symbols(&twin).unwrap().unwrap();
        let started = std::time::Instant::now();
        let stripped = RuntimeLayout::analyse(&stripped_bytes).unwrap().unwrap();
        let stripped_took = started.elapsed();
        let started = std::time::Instant::now();
        RuntimeLayout::analyse(&full_bytes).unwrap().unwrap();
        eprintln!(
            "{what}: analysed in {stripped_took:?} stripped ({} bytes), {:?} unstripped ({} bytes)",
            stripped_bytes.len(),
            started.elapsed(),
            full_bytes.len()
        );
        assert_eq!(stripped.found, Found::Code);
        assert_eq!(stripped.globals, twin_symbols, "{what}: stripped");
        eprintln!("{what}: unstripped {by_symbols:x?}, stripped {twin_symbols:x?}");
    }
}

/// A program that never calls runtime.ReadMemStats has no runtime.readmemstats_m: the GC's
/// own functions lead to the same addresses as the symbol table, on every release.
#[test]
fn without_readmemstats_the_gc_functions_lead_to_the_symbol_table_addresses() {
    let dir = tempfile::tempdir().unwrap();
    for &(toolchain, release) in TOOLCHAINS {
        let what = format!("Go {}.{}", release.0, release.1);
        let bytes = std::fs::read(build_program(
            "goruntime-minimal",
            toolchain,
            Build::Full,
            dir.path(),
        ))
        .unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        let go = GoBinary::parse(&bytes).unwrap().unwrap();
        let pclntab = go.pclntab.as_ref().unwrap();
        assert!(
            pclntab.find("runtime.readmemstats_m").is_none(),
            "{what}: the linker kept readmemstats_m"
        );
        let by_symbols = locate::from_symbols(&file).unwrap().unwrap();
        let dwarf = fields::from_dwarf(&file, release).unwrap().unwrap();
        let by_code = locate::from_code(&file, pclntab, &dwarf).unwrap();
        assert_eq!(by_code, by_symbols, "{what}: from the GC's code");
    }
}

#[test]
fn offsets_tables_match_dwarf() {
    let dir = tempfile::tempdir().unwrap();
    let (mut releases, mut wrong) = (Vec::new(), Vec::new());
    for &(toolchain, release) in TOOLCHAINS {
        let bytes = std::fs::read(build(toolchain, Build::Full, dir.path())).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        let dwarf = fields::from_dwarf(&file, release).unwrap().unwrap();
        if fields::table(release).as_ref() != Some(&dwarf) {
            wrong.push(format!("{release:?}: DWARF says {dwarf:?}"));
        }
        releases.push(release);
    }
    assert!(
        wrong.is_empty(),
        "table rows differ from DWARF:\n{}",
        wrong.join("\n")
    );
    assert_eq!(releases, TABLE_RELEASES, "every table row is checked");
}

/// Overwrite every occurrence of `from` with `to` (same length).
fn patch(bytes: &mut [u8], from: &[u8], to: &[u8]) -> usize {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + to.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    n
}

#[test]
fn a_layout_not_understood_is_a_reason_never_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let exe = build("/opt/go126/bin/go", Build::Stripped, dir.path());
    let original = std::fs::read(&exe).unwrap();
    let version = GoBinary::parse(&original)
        .unwrap()
        .unwrap()
        .build
        .go_version;
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        // A release without a table, and no DWARF to say its offsets.
        (
            "no offsets table",
            version.clone().into_bytes(),
            version.replace("go1.26", "go1.20").into_bytes(),
        ),
        // A runtime whose function is not where it is expected.
        (
            "runtime.gfget",
            b"runtime.gfget\0".to_vec(),
            b"runtime.gfgex\0".to_vec(),
        ),
    ];
    for (why, from, to) in cases {
        let mut bytes = original.clone();
        assert!(patch(&mut bytes, &from, &to) > 0, "{why}: nothing patched");
        let err = RuntimeLayout::analyse(&bytes).unwrap_err();
        assert!(err.contains(why), "{why}: {err}");
        // The same from a running process: the binary still runs, its figures are refused.
        let patched = dir.path().join("patched");
        std::fs::write(&patched, &bytes).unwrap();
        std::fs::set_permissions(
            &patched,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let (program, _) = Program::start(&patched);
        let mut runtimes = GoRuntimes::default();
        for _ in 0..2 {
            match runtimes.sample(program.pid()) {
                Err(Unreadable::Layout(reason)) => assert!(reason.contains(why), "{reason}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        drop(program);
        std::fs::remove_file(&patched).unwrap();
    }
}

#[test]
fn processes_that_are_not_go_are_none() {
    let mut sleeper = Command::new("sleep").arg("60").spawn().unwrap();
    let mut runtimes = GoRuntimes::default();
    assert_eq!(runtimes.sample(sleeper.id()), Ok(None));
    assert_eq!(
        runtimes.sample(std::process::id()),
        Ok(None),
        "this Rust test"
    );
    // A kernel thread (kthreadd) has no executable.
    assert_eq!(runtimes.sample(2), Ok(None));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    assert!(matches!(
        runtimes.sample(sleeper.id()),
        Err(Unreadable::Process(_))
    ));
}

/// A real server built by someone else: Debian's Prometheus (Go 1.19, stripped, cgo,
/// 50 MB), whose own /metrics publishes its runtime's figures. Read between two samples,
/// they must fall between them.
#[test]
fn a_real_stripped_go_server_agrees_with_its_own_metrics() {
    let prometheus = Path::new("/usr/bin/prometheus");
    assert!(
        prometheus.exists(),
        "{} is missing: `cargo xtask setup` installs Debian's prometheus",
        prometheus.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed however the test ends.
    struct Server(Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let server = Server(server);
    let scrape = || -> Option<String> {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.contains("go_goroutines").then_some(text)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while scrape().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "prometheus never served /metrics"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let metric = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("{name} not in /metrics"))
            .trim()
            .parse()
            .unwrap()
    };
    let mut runtimes = GoRuntimes::default();
    let pid = server.0.id();
    let mut agreed = 0;
    // A GC between the two samples makes the heap figures incomparable: try a few times.
    for _ in 0..20 {
        let before = runtimes.sample(pid).unwrap().unwrap();
        let text = scrape().unwrap();
        let after = runtimes.sample(pid).unwrap().unwrap();
        let layout = runtimes.layout_of(pid).unwrap();
        assert_eq!(
            (layout.found, layout.offsets_from),
            (Found::Code, OffsetsFrom::Table)
        );
        assert_eq!(before.go_version, "go1.19.8");
        let their_gcs = metric(&text, "go_gc_duration_seconds_count") as u32;
        assert!(
            before.gc_cycles <= their_gcs && their_gcs <= after.gc_cycles,
            "GC cycles: {} <= {their_gcs} <= {}",
            before.gc_cycles,
            after.gc_cycles
        );
        // Theirs counts the goroutines serving the scrape (the connection's, the gatherer's
        // workers): a few more than either sample, taken with no request in flight.
        let their_goroutines = metric(&text, "go_goroutines") as u64;
        for s in [&before, &after] {
            assert!(
                s.goroutines <= their_goroutines + 2 && s.goroutines + 12 >= their_goroutines,
                "{} goroutines, /metrics says {their_goroutines}",
                s.goroutines
            );
            assert_eq!(s.memory_limit_bytes, None, "no limit set");
        }
        if before.gc_cycles != after.gc_cycles || before.gc_cycles == 0 {
            continue;
        }
        let their_goal = metric(&text, "go_memstats_next_gc_bytes") as u64;
        assert!(
            within(before.heap_goal_bytes.unwrap(), their_goal, 0.10),
            "heap goal {:?}, /metrics says {their_goal}",
            before.heap_goal_bytes
        );
        eprintln!(
            "prometheus: {before:?}; /metrics: {their_gcs} GCs, {their_goroutines} goroutines, next GC {their_goal}"
        );
        agreed += 1;
        if agreed == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_eq!(agreed, 3, "no three scrapes without a GC across them");
}
