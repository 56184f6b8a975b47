//! Kernel struct offsets from BTF (`/sys/kernel/btf/vmlinux`).
//!
//! Rust eBPF programs cannot emit CO-RE relocations, so the loader reads the few struct field
//! offsets the raw-tracepoint programs need from the kernel's own type information and passes
//! them in as globals. A wrong offset silently yields garbage in the kernel, so this parser is
//! strict: every read is bounds-checked, every type id and string offset is validated, any
//! inconsistency is an error (never a panic), and the layouts handed out are type-checked
//! (a pointer where a pointer is read, a 64-bit integer where a 64-bit count is read).
//!
//! Only what offsets need is decoded: names, struct/union members, arrays, integer/enum sizes
//! and the qualifier chain (typedef/const/volatile/restrict/type_tag). Every other kind is
//! skipped by its documented size (Documentation/bpf/btf.rst). aya-obj has a BTF parser but
//! keeps its lookups crate-private, and btf-rs is LGPL, hence this small one.
//!
//! - `decode`: the raw blob into types and strings, validated.
//! - `query`: lookups over them (members by path, offsets, sizes, resolved types).
//! - `layout`: the structs leaktracer's programs need, type-checked.
mod decode;
mod layout;
mod query;

pub use decode::KernelBtf;
pub use layout::{RssLayout, TaskExtras, TaskLayout, rss_layout, task_extras, task_layout};
pub use query::TypeInfo;

#[cfg(test)]
mod tests;
