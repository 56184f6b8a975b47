//! leaktracer's kernel programs. They only count and copy: every threshold and verdict
//! lives in userspace, where it can be tested. One module per hook family.
#![no_std]
#![no_main]
// Atomic add on shared map values: the bpf target only exposes atomic load/store through
// core::sync::atomic, but the kernel has had an atomic add instruction since 3.18.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod hot;
mod maps;
mod pending;
mod programs;
mod rss_slots;
mod syscall_args;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier guarantees this is unreachable; the loop satisfies `-> !`.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
