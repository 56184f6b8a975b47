use which::which;

/// Rebuild the kernel programs when bpf-linker changes: it is part of the toolchain that
/// produces them, and cargo does not track it on its own.
fn main() {
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
