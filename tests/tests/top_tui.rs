//! The live view of `leaktracer top` in a real terminal emulator: tmux runs it in a detached
//! 120x40 session, the test types with `send-keys` and reads the screen with `capture-pane`.
//! Keys (help, filter, sort, select, detail, back), a resize to a narrow window, and the
//! terminal restored (main screen, cooked mode) after `q`, Ctrl-C and SIGTERM. Every step
//! waits for what the screen must show, with generous deadlines; nothing waits for a time.
// An integration test crate: a panic (unwrap, expect) is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    process::{Command, Output},
    time::Duration,
};

use leaktracer_tests::*;

const LEAKER: &str = env!("CARGO_BIN_EXE_leaker");
const STEADY: &str = env!("CARGO_BIN_EXE_steady");

/// What the shell prints after top returns: its exit code, then whether the terminal is back
/// in canonical (cooked) mode: `stty` says `icanon`, or `-icanon` if top left it raw.
const AFTER: &str =
    r#"echo "top exited: $?"; stty -a | tr ' ' '\n' | grep -x -- '-\?icanon'; sleep 600"#;

/// Only the table screen's header says this (the detail and help screens do not).
const TABLE: &str = "processes tracked";

/// A tmux server of our own (its own socket: other tmux users are not touched) with one
/// detached session; killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("running tmux (apt-get install tmux; cargo xtask test installs it)")
    }

    /// `leaktracer top ARGS` in a new 120x40 session, followed by [`AFTER`].
    fn start_top(tag: &str, args: &[&str]) -> Self {
        let t = Self {
            socket: format!("leaktracer-{tag}-{}", std::process::id()),
        };
        let mut cmd = format!("{} top", leaktracer().display());
        for a in args.iter().chain(&["--max-overhead", "0"]) {
            cmd.push(' ');
            cmd.push_str(a);
        }
        cmd.push_str("; ");
        cmd.push_str(AFTER);
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "-s",
            "top",
            "sh",
            "-c",
            &cmd,
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        t
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend(keys);
        let out = self.tmux(&args);
        assert!(out.status.success(), "tmux send-keys {keys:?}: {out:?}");
    }

    /// Typed literally (`-l`: "s" is the letter, not a key name).
    fn type_text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-t", "top", "-l", text]);
        assert!(out.status.success(), "tmux send-keys -l {text:?}: {out:?}");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "top"]).stdout).into()
    }

    /// Wait until the screen satisfies `ok`; panics with the last screen after `secs`.
    fn wait(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let got = wait_until(Duration::from_secs(secs), || {
            last = self.screen();
            ok(&last).then(|| last.clone())
        });
        got.unwrap_or_else(|| panic!("the screen did not show {what} within {secs} s:\n{last}"))
    }

    fn wait_for(&self, needle: &str, secs: u64) -> String {
        self.wait(&format!("{needle:?}"), secs, |s| s.contains(needle))
    }

    /// The pid of the program the pane runs (the shell) and its child (leaktracer).
    fn top_pid(&self) -> u32 {
        let out = self.tmux(&["list-panes", "-t", "top", "-F", "#{pane_pid}"]);
        let shell: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let children =
            std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children")).unwrap();
        children
            .split_whitespace()
            .next()
            .expect("the pane's shell runs leaktracer")
            .parse()
            .unwrap()
    }

    /// After top returned: its exit code and whether the terminal is back in cooked mode,
    /// on the main screen (the table is gone).
    fn assert_restored(&self, how: &str) {
        let screen = self.wait(&format!("top's exit after {how}"), 60, |s| {
            s.lines()
                .any(|l| l.trim() == "icanon" || l.trim() == "-icanon")
        });
        assert!(
            screen.contains("top exited: 0"),
            "{how}: top exits 0:\n{screen}"
        );
        assert!(
            screen.lines().any(|l| l.trim() == "icanon"),
            "{how}: the terminal is back in canonical mode (top left it raw):\n{screen}"
        );
        assert!(
            !screen.contains("? help"),
            "{how}: the alternate screen was left:\n{screen}"
        );
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn pid_args(pids: &[u32]) -> Vec<String> {
    pids.iter()
        .flat_map(|p| ["--pid".to_string(), p.to_string()])
        .collect()
}

#[test]
fn top_live_view_keys_filter_sort_detail_resize_and_restore() {
    let Some(_serial) = privileged() else { return };
    let leaker = Proc::spawn(workload(LEAKER).arg("2048"));
    let steady = Proc::spawn(workload(STEADY).arg("8"));
    let pids = pid_args(&[leaker.pid(), steady.pid()]);
    let mut args: Vec<&str> = vec!["--interval", "500ms"];
    args.extend(pids.iter().map(String::as_str));
    let t = Tmux::start_top("keys", &args);

    // The table, with both processes and the key line.
    t.wait("both workloads in the table", 90, |s| {
        s.contains("leaker") && s.contains("steady") && s.contains("? help")
    });
    let first = t.screen();
    assert!(first.contains("PID"), "{first}");
    assert!(first.contains("TREND"), "{first}");
    assert!(first.contains("RISK"), "{first}");
    assert!(first.contains("sort: growth"), "{first}");
    // The NODE block: the node's memory no process owns, above the table.
    let node = t.wait("the NODE block", 30, |s| {
        s.contains("NODE memory: used") && s.contains("NODE kernel: slab")
    });
    assert!(node.contains("NODE slab caches: "), "{node}");

    // Help, and any key closes it.
    t.type_text("?");
    t.wait_for("leaktracer top — keys", 30);
    t.keys(&["Escape"]);
    t.wait_for(TABLE, 30);

    // Filter: only the steady one, then Esc clears it.
    t.type_text("/");
    t.wait_for("filter:", 30);
    t.type_text("stea");
    let filtered = t.wait_for("1 match \"stea\"", 30);
    let table_rows = |s: &str, comm: &str| s.lines().filter(|l| l.contains(comm)).count();
    assert_eq!(table_rows(&filtered, "leaker"), 0, "{filtered}");
    t.keys(&["Enter"]);
    t.wait("the filter kept, the key line back", 30, |s| {
        s.contains("1 match \"stea\"") && s.contains("? help")
    });
    t.keys(&["Escape"]);
    t.wait("the filter cleared", 30, |s| {
        !s.contains("match \"stea\"") && s.contains("leaker") && s.contains("steady")
    });

    // Sort cycles.
    t.type_text("s");
    t.wait_for("sort: private", 30);
    t.type_text("s");
    t.wait_for("sort: verdict", 30);
    t.type_text("s");
    t.wait_for("sort: time to limit", 30);
    t.type_text("s");
    t.wait_for("sort: growth", 30);

    // Select the leaker and open its detail: the chart comes with the round after Enter.
    t.type_text("/");
    t.type_text("leak");
    t.keys(&["Enter"]);
    t.wait_for("1 match \"leak\"", 30);
    t.keys(&["Enter"]);
    let detail = t.wait("the leaker's detail with its chart", 60, |s| {
        s.contains("judgement and identity") && s.contains("private memory, last")
    });
    assert!(
        detail.contains(&format!("{} leaker", leaker.pid())),
        "{detail}"
    );
    assert!(detail.contains("why: "), "{detail}");
    assert!(detail.contains("mmap sizes"), "{detail}");
    assert!(detail.contains("cmdline "), "{detail}");
    t.keys(&["Escape"]);
    t.wait_for(TABLE, 30);
    t.keys(&["Escape"]);
    t.wait("the filter cleared", 30, |s| {
        !s.contains("match \"leak\"") && s.contains("steady")
    });

    // Narrow window: the least important columns go, the essential ones stay.
    let out = t.tmux(&["resize-window", "-t", "top", "-x", "70", "-y", "30"]);
    assert!(out.status.success(), "tmux resize-window: {out:?}");
    let narrow = t.wait("the narrow table", 30, |s| {
        s.contains("VERDICT") && !s.contains("GROWTH/min") && s.contains("steady")
    });
    assert!(narrow.contains("PRIVATE"), "{narrow}");
    assert!(!narrow.contains("ALLOC/s"), "{narrow}");
    let out = t.tmux(&["resize-window", "-t", "top", "-x", "120", "-y", "40"]);
    assert!(out.status.success(), "tmux resize-window: {out:?}");
    t.wait_for("GROWTH/min", 30);

    // q: the terminal is restored.
    t.type_text("q");
    t.assert_restored("q");
    drop((leaker, steady));
}

#[test]
fn top_live_view_restores_the_terminal_on_ctrl_c_and_sigterm() {
    let Some(_serial) = privileged() else { return };
    let steady = Proc::spawn(workload(STEADY).arg("8"));
    let pids = pid_args(&[steady.pid()]);
    let mut args: Vec<&str> = vec!["--interval", "500ms"];
    args.extend(pids.iter().map(String::as_str));

    let t = Tmux::start_top("ctrlc", &args);
    t.wait_for(TABLE, 90);
    t.keys(&["C-c"]);
    t.assert_restored("Ctrl-C");
    drop(t);

    let t = Tmux::start_top("sigterm", &args);
    t.wait_for(TABLE, 90);
    let pid = t.top_pid();
    // SAFETY: signalling the leaktracer this test started in its tmux pane.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    t.assert_restored("SIGTERM");
    drop(steady);
}
