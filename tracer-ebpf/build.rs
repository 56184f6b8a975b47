use which::which;

/// Rebuild the kernel programs when bpf-linker changes: it is part of the toolchain that
/// produces them, and cargo does not track it on its own.
fn main() {
    // aya-build passes the architecture the programs read registers of (syscall_args.rs).
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\", \"arm\", \"riscv64\", \"powerpc64\", \"s390x\", \"mips\", \"loongarch64\"))"
    );
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
