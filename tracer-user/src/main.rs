//! leaktracer: which process is leaking memory, how fast, since when — traced with eBPF.
// Unit tests may unwrap: a panic is how a test fails. Production code may not (see the
// workspace lints in Cargo.toml).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]
use clap::Parser as _;
use leaktracer::{
    cli::Cli,
    kernel::logging,
    util::error::{self, EXIT_OK},
};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap exits 2 on usage errors and 0 for --help/--version.
            e.exit();
        }
    };
    logging::init(cli.global.log_level);
    let code = match leaktracer::commands::run(cli) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("leaktracer: {e:#}");
            error::exit_code(&e)
        }
    };
    std::process::exit(code);
}
