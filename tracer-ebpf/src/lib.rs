//! Empty on purpose: the kernel programs are the `tracer-ebpf` binary (src/main.rs), and the
//! types they share with userspace live in `tracer-common`. This library exists so that
//! tracer-user can name this package as a build-dependency, which makes cargo rebuild the
//! programs when it changes (aya-build builds them from tracer-user's build.rs).
#![no_std]
