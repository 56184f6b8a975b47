use std::{collections::HashMap, path::Path};

use super::{decode::*, layout::*, query::*};

/// Builds small BTF blobs; each method returns the new type's id.
struct Builder {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
}

impl Builder {
    fn new() -> Self {
        Self {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
        }
    }

    fn str(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    /// A record with a raw name offset: the common 12 bytes plus `extra` words.
    fn record(&mut self, name_off: u32, info: u32, size_or_type: u32, extra: &[u32]) -> u32 {
        for w in [name_off, info, size_or_type].iter().chain(extra) {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
        self.next_id += 1;
        self.next_id - 1
    }

    fn raw(
        &mut self,
        name: &str,
        kind: u32,
        kind_flag: bool,
        vlen: u32,
        size_or_type: u32,
        extra: &[u32],
    ) -> u32 {
        let n = self.str(name);
        let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
        self.record(n, info, size_or_type, extra)
    }

    fn int(&mut self, name: &str, size: u32) -> u32 {
        self.raw(name, KIND_INT, false, 0, size, &[size * 8])
    }

    /// INT with an explicit encoding (old-style bitfield types).
    fn int_enc(&mut self, name: &str, size: u32, bits: u32, bit_offset: u32) -> u32 {
        self.raw(name, KIND_INT, false, 0, size, &[(bit_offset << 16) | bits])
    }

    fn ptr(&mut self, target: u32) -> u32 {
        self.raw("", KIND_PTR, false, 0, target, &[])
    }

    fn array(&mut self, elem: u32, nelems: u32) -> u32 {
        // index_type is not interpreted; 1 is as good as any.
        self.raw("", KIND_ARRAY, false, 0, 0, &[elem, 1, nelems])
    }

    fn qual(&mut self, kind: u32, name: &str, target: u32) -> u32 {
        self.raw(name, kind, false, 0, target, &[])
    }

    fn typedef(&mut self, name: &str, target: u32) -> u32 {
        self.qual(KIND_TYPEDEF, name, target)
    }

    /// Members as (name, type, raw offset word).
    fn composite(
        &mut self,
        kind: u32,
        name: &str,
        size: u32,
        kind_flag: bool,
        members: &[(&str, u32, u32)],
    ) -> u32 {
        let mut extra = Vec::new();
        for &(mname, ty, off) in members {
            extra.extend([self.str(mname), ty, off]);
        }
        self.raw(name, kind, kind_flag, members.len() as u32, size, &extra)
    }

    fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(KIND_STRUCT, name, size, false, members)
    }

    fn union(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        self.composite(KIND_UNION, name, size, false, members)
    }

    /// One of every kind the parser only skips, so ids after them must still line up.
    fn noise(&mut self, int: u32) {
        let (a, b) = (self.str("A"), self.str("B"));
        self.raw("e32", KIND_ENUM, false, 2, 4, &[a, 0, b, 1]);
        self.raw("e64", KIND_ENUM64, false, 2, 8, &[a, 0, 0, b, 1, 1]);
        self.raw("fwd", KIND_FWD, false, 0, 0, &[]);
        let proto = self.raw("", KIND_FUNC_PROTO, false, 3, int, &[a, int, b, int, 0, 0]);
        self.raw("func", KIND_FUNC, false, 1, proto, &[]);
        let var = self.raw("var", KIND_VAR, false, 0, int, &[1]);
        self.raw(".data", KIND_DATASEC, false, 1, 4, &[var, 0, 4]);
        self.raw("double", KIND_FLOAT, false, 0, 8, &[]);
        self.raw("tag", KIND_DECL_TAG, false, 0, int, &[u32::MAX]);
        self.qual(KIND_TYPE_TAG, "user", int);
        self.qual(KIND_VOLATILE, "", int);
        self.qual(KIND_RESTRICT, "", int);
    }

    fn build(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.extend_from_slice(&[VERSION, 0]);
        let (tl, sl) = (self.types.len() as u32, self.strings.len() as u32);
        for w in [HEADER_LEN as u32, 0, tl, tl, sl] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&self.types);
        b.extend_from_slice(&self.strings);
        b
    }
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn err_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

/// Kernel >= 6.2 shapes: mm_struct wraps its fields in an anonymous struct and holds
/// `struct percpu_counter rss_stat[4]`; task_struct has bitfields (so kind_flag) and
/// an anonymous union holding an anonymous struct.
fn modern() -> Vec<u8> {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let uint = b.int("unsigned int", 4);
    b.noise(int);
    let ll = b.int("long long int", 8);
    let s64 = b.typedef("__s64", ll);
    let s64 = b.typedef("s64", s64);
    let pid_inner = b.typedef("__kernel_pid_t", int);
    let pid_t = b.typedef("pid_t", pid_inner);
    let lock = b.strukt("raw_spinlock", 4, &[("raw_lock", int, 0)]);
    let void_ptr = b.ptr(0);
    let pcc = b.strukt(
        "percpu_counter",
        40,
        &[
            ("lock", lock, 0),
            ("count", s64, 64),
            ("list", void_ptr, 128),
            ("counters", void_ptr, 256),
        ],
    );
    let rss = b.array(pcc, 4);
    let bitmap = b.array(ll, 0);
    let mm_fields = b.strukt("", 1472, &[("mm_count", int, 0), ("rss_stat", rss, 7680)]);
    let mm = b.strukt(
        "mm_struct",
        1480,
        &[("", mm_fields, 0), ("cpu_bitmap", bitmap, 11776)],
    );
    let mm_ptr = b.ptr(mm);
    let ti = b.strukt("", 8, &[("ti_flags", ll, 0)]);
    let head = b.union("", 8, &[("", ti, 0), ("raw", ll, 0)]);
    let atomic_t = b.strukt("", 4, &[("counter", int, 0)]);
    let atomic_t = b.typedef("atomic_t", atomic_t);
    let signal = b.strukt(
        "signal_struct",
        1024,
        &[("sigcnt", int, 0), ("live", atomic_t, 32)],
    );
    let signal_ptr = b.ptr(signal);
    let chr = b.int("char", 1);
    let comm = b.array(chr, 16);
    b.composite(
        KIND_STRUCT,
        "task_struct",
        3264,
        true,
        &[
            ("", head, 0),
            ("flags", uint, 352),
            ("mm", mm_ptr, 9088),
            ("sched_reset_on_fork", uint, (1 << 24) | 9504),
            ("sched_migrated", uint, (1 << 24) | 9505),
            ("pid", pid_t, 10112),
            ("tgid", pid_t, 10144),
            ("group_leader", void_ptr, 19968),
            ("signal", signal_ptr, 22528),
            ("comm", comm, 24576),
        ],
    );
    b.build()
}

/// Kernel < 6.2: `struct mm_rss_stat { atomic_long_t count[4]; }` (plus a pad member
/// here, so the two offsets must really be added).
fn old() -> Vec<u8> {
    let mut b = Builder::new();
    let ll = b.int("long long int", 8);
    let s64 = b.typedef("s64", ll);
    let atomic = b.strukt("", 8, &[("counter", s64, 0)]);
    let atomic64 = b.typedef("atomic64_t", atomic);
    let atomic_long = b.typedef("atomic_long_t", atomic64);
    let counts = b.array(atomic_long, 4);
    let rss = b.strukt("mm_rss_stat", 40, &[("pad", ll, 0), ("count", counts, 64)]);
    let fields = b.strukt("", 1000, &[("pad", ll, 0), ("rss_stat", rss, 5120)]);
    b.strukt("mm_struct", 1000, &[("", fields, 0)]);
    b.build()
}

#[test]
fn modern_layouts() {
    let btf = KernelBtf::parse(&modern()).unwrap();
    assert_eq!(
        rss_layout(&btf).unwrap(),
        RssLayout {
            mm_rss_stat: 960,
            stride: 40,
            count: 8
        }
    );
    assert_eq!(
        task_layout(&btf).unwrap(),
        TaskLayout {
            task_mm: 1136,
            task_pid: 1264,
            task_tgid: 1268,
        }
    );
    assert_eq!(
        task_extras(&btf).unwrap(),
        TaskExtras {
            task_flags: 44,
            task_signal: 2816,
            signal_live: 4,
            task_group_leader: 2496,
            task_comm: 3072,
        }
    );
}

#[test]
fn old_rss_layout() {
    let btf = KernelBtf::parse(&old()).unwrap();
    assert_eq!(
        rss_layout(&btf).unwrap(),
        RssLayout {
            mm_rss_stat: 648,
            stride: 8,
            count: 0
        }
    );
    assert_eq!(btf.member_offset("mm_struct", "rss_stat").unwrap(), 640);
    assert_eq!(
        btf.member_offset("mm_struct", "rss_stat.count").unwrap(),
        648
    );
    assert_eq!(btf.member_offset("mm_rss_stat", "count").unwrap(), 8);
    assert_eq!(
        btf.member_type("mm_struct", "rss_stat").unwrap(),
        TypeInfo::Struct {
            name: "mm_rss_stat".into(),
            size: 40
        }
    );
    // The whole typedef chain down to the anonymous atomic64_t struct.
    assert_eq!(
        btf.member_type("mm_rss_stat", "count").unwrap(),
        TypeInfo::Array {
            elem: Box::new(TypeInfo::Struct {
                name: String::new(),
                size: 8
            }),
            elem_size: 8,
            len: 4
        }
    );
    assert!(err_of(task_layout(&btf)).contains("task_struct"));
}

#[test]
fn rss_layout_rejects_unexpected_shapes() {
    // Too few counters for MM_SHMEMPAGES.
    let mut b = Builder::new();
    let ll = b.int("long long int", 8);
    let pcc = b.strukt("percpu_counter", 40, &[("count", ll, 64)]);
    let arr = b.array(pcc, 3);
    b.strukt("mm_struct", 200, &[("rss_stat", arr, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert!(err_of(rss_layout(&btf)).contains("3 counters"));

    // A 32-bit count.
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let pcc = b.strukt("percpu_counter", 40, &[("count", int, 64)]);
    let arr = b.array(pcc, 4);
    b.strukt("mm_struct", 200, &[("rss_stat", arr, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert!(err_of(rss_layout(&btf)).contains("64-bit"));

    // A count that does not fit inside its element.
    let mut b = Builder::new();
    let ll = b.int("long long int", 8);
    let pcc = b.strukt("percpu_counter", 8, &[("count", ll, 64)]);
    let arr = b.array(pcc, 4);
    b.strukt("mm_struct", 200, &[("rss_stat", arr, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert!(err_of(rss_layout(&btf)).contains("does not fit"));

    // Neither layout.
    let mut b = Builder::new();
    let ll = b.int("long long int", 8);
    let p = b.ptr(ll);
    b.strukt("mm_struct", 200, &[("rss_stat", p, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert!(err_of(rss_layout(&btf)).contains("expected struct percpu_counter"));

    // Old layout with 4-byte atomics (a 32-bit kernel).
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let atomic = b.strukt("", 4, &[("counter", int, 0)]);
    let arr = b.array(atomic, 4);
    let rss = b.strukt("mm_rss_stat", 16, &[("count", arr, 0)]);
    b.strukt("mm_struct", 200, &[("rss_stat", rss, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert!(err_of(rss_layout(&btf)).contains("expected 8"));

    // No mm_struct at all.
    let btf = KernelBtf::parse(&Builder::new().build()).unwrap();
    assert!(err_of(rss_layout(&btf)).contains("no struct or union named \"mm_struct\""));
}

#[test]
fn task_extras_check_types() {
    let task = |leader_is_ptr: bool, comm_len: u32| {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let uint = b.int("unsigned int", 4);
        let ch = b.int("char", 1);
        let comm = b.array(ch, comm_len);
        let leader = if leader_is_ptr { b.ptr(0) } else { int };
        let atomic = b.strukt("", 4, &[("counter", int, 0)]);
        let signal = b.strukt("signal_struct", 64, &[("live", atomic, 32)]);
        let signal_ptr = b.ptr(signal);
        b.strukt(
            "task_struct",
            64,
            &[
                ("flags", uint, 32),
                ("group_leader", leader, 64),
                ("signal", signal_ptr, 128),
                ("comm", comm, 256),
            ],
        );
        KernelBtf::parse(&b.build()).unwrap()
    };
    assert_eq!(
        task_extras(&task(true, 16)).unwrap(),
        TaskExtras {
            task_flags: 4,
            task_signal: 16,
            signal_live: 4,
            task_group_leader: 8,
            task_comm: 32
        }
    );
    assert!(err_of(task_extras(&task(false, 16))).contains("expected a pointer"));
    assert!(err_of(task_extras(&task(true, 8))).contains("char[16]"));
}

#[test]
fn task_layout_checks_types() {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let ll = b.int("long long int", 8);
    b.strukt(
        "task_struct",
        64,
        &[("mm", ll, 0), ("pid", int, 64), ("tgid", int, 96)],
    );
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert!(err_of(task_layout(&btf)).contains("expected a pointer"));
}

#[test]
fn anonymous_members_are_searched_in_nested_structs_and_unions() {
    let btf = KernelBtf::parse(&modern()).unwrap();
    // task_struct -> anonymous union -> anonymous struct -> ti_flags.
    assert_eq!(btf.member_offset("task_struct", "ti_flags").unwrap(), 0);
    assert_eq!(btf.member_offset("task_struct", "raw").unwrap(), 0);
    assert_eq!(btf.member_offset("mm_struct", "mm_count").unwrap(), 0);
    assert_eq!(btf.member_offset("mm_struct", "cpu_bitmap").unwrap(), 1472);

    // Offsets add up through every level of anonymous nesting.
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let deepest = b.strukt("", 8, &[("pad", int, 0), ("x", int, 32)]);
    let u = b.union("", 8, &[("other", int, 0), ("", deepest, 0)]);
    let mid = b.strukt("", 24, &[("pad", int, 0), ("", u, 64)]);
    let cv = b.qual(KIND_CONST, "", mid);
    b.strukt("outer", 64, &[("first", int, 0), ("", cv, 128)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    // 16 (mid) + 8 (union) + 0 (deepest) + 4 (x)
    assert_eq!(btf.member_offset("outer", "x").unwrap(), 28);
    assert_eq!(btf.member_offset("outer", "other").unwrap(), 24);
    assert_eq!(
        btf.member_type("outer", "x").unwrap(),
        TypeInfo::Int { size: 4 }
    );
    assert!(err_of(btf.member_offset("outer", "nope")).contains("has no member \"nope\""));
    // A named union is looked up like a struct.
    let mut b = Builder::new();
    let int = b.int("int", 4);
    b.union("u", 4, &[("a", int, 0), ("b", int, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert_eq!(btf.member_offset("u", "b").unwrap(), 0);
}

#[test]
fn dotted_paths() {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let leaf = b.strukt("leaf", 16, &[("a", int, 0), ("b", int, 96)]);
    let leaf_td = b.typedef("leaf_t", leaf);
    let anon = b.strukt("", 32, &[("pad", int, 0), ("leaf", leaf_td, 128)]);
    let mid = b.strukt("mid", 48, &[("pad", int, 0), ("", anon, 64)]);
    let p = b.ptr(mid);
    let arr = b.array(mid, 2);
    b.strukt(
        "top",
        256,
        &[("m", mid, 256), ("p", p, 0), ("arr", arr, 1024)],
    );
    let btf = KernelBtf::parse(&b.build()).unwrap();
    // 32 (m) + 8 (anon) + 16 (leaf) + 12 (b)
    assert_eq!(btf.member_offset("top", "m.leaf.b").unwrap(), 68);
    assert_eq!(btf.member_offset("top", "m.leaf").unwrap(), 56);
    assert_eq!(btf.member_offset("mid", "leaf.a").unwrap(), 24);
    assert_eq!(
        btf.member_type("top", "m.leaf").unwrap(),
        TypeInfo::Struct {
            name: "leaf".into(),
            size: 16
        }
    );
    // Offsets do not go through pointers or arrays.
    assert!(err_of(btf.member_offset("top", "p.pad")).contains("has type pointer"));
    assert!(err_of(btf.member_offset("top", "arr.pad")).contains("has type array"));
    assert!(err_of(btf.member_offset("top", "m.leaf.a.x")).contains("has type int"));
    assert!(err_of(btf.member_offset("top", "m.zz")).contains("no member \"zz\""));
    for bad in ["", ".", "m.", ".m", "m..leaf"] {
        assert!(
            err_of(btf.member_offset("top", bad)).contains("invalid member path"),
            "{bad:?}"
        );
    }
}

#[test]
fn typedef_and_qualifier_chains_resolve() {
    let mut b = Builder::new();
    let ll = b.int("long long int", 8);
    let s = b.strukt("target", 24, &[("x", ll, 0)]);
    let mut t = s;
    for (kind, name) in [
        (KIND_TYPEDEF, "t1"),
        (KIND_CONST, ""),
        (KIND_VOLATILE, ""),
        (KIND_TYPE_TAG, "rcu"),
        (KIND_RESTRICT, ""),
        (KIND_TYPEDEF, "t2"),
    ] {
        t = b.qual(kind, name, t);
    }
    let td_int = b.typedef("u64", ll);
    let td_int = b.qual(KIND_CONST, "", td_int);
    b.strukt("holder", 64, &[("s", t, 64), ("n", td_int, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert_eq!(
        btf.member_type("holder", "s").unwrap(),
        TypeInfo::Struct {
            name: "target".into(),
            size: 24
        }
    );
    assert_eq!(btf.member_offset("holder", "s.x").unwrap(), 8);
    assert_eq!(
        btf.member_type("holder", "n").unwrap(),
        TypeInfo::Int { size: 8 }
    );
}

#[test]
fn array_element_sizes() {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    b.noise(int);
    let s = b.strukt("elem", 12, &[("a", int, 0)]);
    let s_td = b.typedef("elem_t", s);
    let e = b.raw("color", KIND_ENUM, false, 0, 4, &[]);
    let p = b.ptr(s);
    let of_struct = b.array(s_td, 5);
    let of_ptr = b.array(p, 3);
    let inner = b.array(int, 3);
    let inner_c = b.qual(KIND_CONST, "", inner);
    let of_arr = b.array(inner_c, 2);
    let of_enum = b.array(e, 7);
    let u = b.union("un", 16, &[]);
    let of_union = b.array(u, 2);
    b.strukt(
        "arrays",
        512,
        &[
            ("structs", of_struct, 0),
            ("ptrs", of_ptr, 480),
            ("matrix", of_arr, 672),
            ("enums", of_enum, 864),
            ("unions", of_union, 1088),
        ],
    );
    let btf = KernelBtf::parse(&b.build()).unwrap();
    let ty = |p| btf.member_type("arrays", p).unwrap();
    assert_eq!(
        ty("structs"),
        TypeInfo::Array {
            elem: Box::new(TypeInfo::Struct {
                name: "elem".into(),
                size: 12
            }),
            elem_size: 12,
            len: 5
        }
    );
    assert_eq!(
        ty("ptrs"),
        TypeInfo::Array {
            elem: Box::new(TypeInfo::Ptr),
            elem_size: 8,
            len: 3
        }
    );
    assert_eq!(
        ty("matrix"),
        TypeInfo::Array {
            elem: Box::new(TypeInfo::Array {
                elem: Box::new(TypeInfo::Int { size: 4 }),
                elem_size: 4,
                len: 3
            }),
            elem_size: 12,
            len: 2
        }
    );
    assert_eq!(
        ty("enums"),
        TypeInfo::Array {
            elem: Box::new(TypeInfo::Enum { size: 4 }),
            elem_size: 4,
            len: 7
        }
    );
    assert_eq!(
        ty("unions"),
        TypeInfo::Array {
            elem: Box::new(TypeInfo::Union {
                name: "un".into(),
                size: 16
            }),
            elem_size: 16,
            len: 2
        }
    );
    assert_eq!(btf.member_offset("arrays", "unions").unwrap(), 136);
}

#[test]
fn skipped_kinds_keep_ids_aligned_and_report_other() {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    b.noise(int);
    let fl = b.raw("float", KIND_FLOAT, false, 0, 4, &[]);
    let e64 = b.raw("big", KIND_ENUM64, false, 0, 8, &[]);
    let fwd = b.raw("opaque", KIND_FWD, false, 0, 0, &[]);
    let fwd_ptr = b.ptr(fwd);
    b.strukt(
        "s",
        32,
        &[
            ("f", fl, 0),
            ("e", e64, 64),
            ("p", fwd_ptr, 128),
            ("o", fwd, 192),
        ],
    );
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert_eq!(btf.member_type("s", "f").unwrap(), TypeInfo::Other);
    assert_eq!(
        btf.member_type("s", "e").unwrap(),
        TypeInfo::Enum { size: 8 }
    );
    assert_eq!(btf.member_type("s", "p").unwrap(), TypeInfo::Ptr);
    assert_eq!(btf.member_offset("s", "p").unwrap(), 16);
    assert_eq!(btf.member_type("s", "o").unwrap(), TypeInfo::Other);
    // A forward declaration has no size, so an array of it is an error, not a guess.
    let mut b = Builder::new();
    let fwd = b.raw("opaque", KIND_FWD, false, 0, 0, &[]);
    let arr = b.array(fwd, 2);
    b.strukt("s", 8, &[("a", arr, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert!(err_of(btf.member_type("s", "a")).contains("has no size"));
}

#[test]
fn kind_flag_bitfield_offsets() {
    let mut b = Builder::new();
    let uint = b.int("unsigned int", 4);
    let ll = b.int("long long int", 8);
    b.composite(
        KIND_STRUCT,
        "flags",
        16,
        true,
        &[
            ("a", uint, 3 << 24),
            ("b", uint, (5 << 24) | 3),
            // Byte-aligned but still a bitfield: the decoded offset (16) shows in the error.
            ("c", uint, (8 << 24) | 16),
            // Not a bitfield: only the low 24 bits are the offset.
            ("x", uint, 32),
            ("y", ll, 64),
        ],
    );
    // Without kind_flag the whole word is the offset, even past 2^24 bits.
    b.strukt("big", 0x0030_0000, &[("far", uint, 0x0100_0000)]);
    // Pre-kind_flag bitfields live in the INT encoding.
    let bits3 = b.int_enc("unsigned int", 4, 3, 0);
    let shifted = b.int_enc("unsigned int", 4, 32, 8);
    b.strukt(
        "old_bits",
        8,
        &[("bf", bits3, 0), ("sh", shifted, 0), ("whole", uint, 32)],
    );
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert_eq!(btf.member_offset("flags", "x").unwrap(), 4);
    assert_eq!(btf.member_offset("flags", "y").unwrap(), 8);
    let e = err_of(btf.member_offset("flags", "c"));
    assert!(e.contains("bitfield") && e.contains("bit offset 16"), "{e}");
    assert!(err_of(btf.member_offset("flags", "a")).contains("bitfield"));
    assert!(err_of(btf.member_offset("flags", "b")).contains("bit offset 3"));
    // The type of a bitfield is still known.
    assert_eq!(
        btf.member_type("flags", "b").unwrap(),
        TypeInfo::Int { size: 4 }
    );
    assert_eq!(btf.member_offset("big", "far").unwrap(), 0x0020_0000);
    assert!(err_of(btf.member_offset("old_bits", "bf")).contains("bitfield"));
    assert!(err_of(btf.member_offset("old_bits", "sh")).contains("bitfield"));
    assert_eq!(btf.member_offset("old_bits", "whole").unwrap(), 4);
}

#[test]
fn unaligned_offsets_are_errors() {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    b.strukt("s", 8, &[("odd", int, 12)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert!(err_of(btf.member_offset("s", "odd")).contains("not byte-aligned"));
}

#[test]
fn duplicate_names_take_the_first_with_the_member() {
    let mut b = Builder::new();
    let int = b.int("int", 4);
    b.strukt("dup", 4, &[("only_first", int, 0)]);
    b.strukt("dup", 16, &[("pad", int, 0), ("later", int, 64)]);
    b.union("dup", 16, &[("later", int, 0), ("only_union", int, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert_eq!(btf.member_offset("dup", "only_first").unwrap(), 0);
    assert_eq!(btf.member_offset("dup", "later").unwrap(), 8);
    assert_eq!(
        btf.member_type("dup", "later").unwrap(),
        TypeInfo::Int { size: 4 }
    );
    assert_eq!(btf.member_offset("dup", "only_union").unwrap(), 0);
    // The error lists why each candidate failed.
    let e = err_of(btf.member_offset("dup", "none"));
    assert_eq!(e.matches("has no member").count(), 3, "{e}");
}

#[test]
fn malformed_headers_and_sections_are_errors() {
    let good = modern();
    assert!(KernelBtf::parse(&good).is_ok());
    for len in 0..HEADER_LEN {
        assert!(err_of(KernelBtf::parse(&good[..len])).contains("truncated"));
    }
    let with = |at: usize, v: u32| {
        let mut b = good.clone();
        set_u32(&mut b, at, v);
        KernelBtf::parse(&b)
    };
    let mut bad = good.clone();
    bad[0] = 0;
    assert!(err_of(KernelBtf::parse(&bad)).contains("bad magic"));
    bad[0..2].copy_from_slice(&MAGIC.to_be_bytes());
    assert!(err_of(KernelBtf::parse(&bad)).contains("big-endian"));
    let mut bad = good.clone();
    bad[2] = 2;
    assert!(err_of(KernelBtf::parse(&bad)).contains("version"));
    assert!(err_of(with(4, 8)).contains("header length"));
    assert!(err_of(with(4, good.len() as u32 + 1)).contains("header length"));
    assert!(err_of(with(4, u32::MAX)).contains("header length"));
    assert!(err_of(with(12, u32::MAX)).contains("type section out of bounds"));
    assert!(err_of(with(8, u32::MAX)).contains("type section out of bounds"));
    assert!(err_of(with(16, good.len() as u32)).contains("string section out of bounds"));
    assert!(err_of(with(20, u32::MAX)).contains("string section out of bounds"));
    // Both offset and length at the maximum: no overflow, just an error.
    let mut b = good.clone();
    set_u32(&mut b, 16, u32::MAX);
    set_u32(&mut b, 20, u32::MAX);
    assert!(err_of(KernelBtf::parse(&b)).contains("out of bounds"));
    // The string section must start and end with a NUL.
    let str_len = u32::from_le_bytes(good[20..24].try_into().unwrap());
    assert!(err_of(with(20, str_len - 1)).contains("NUL-terminated"));
    assert!(err_of(with(20, 0)).contains("empty string"));
    // A type section that ends inside a record.
    let type_len = u32::from_le_bytes(good[12..16].try_into().unwrap());
    for cut in [1, 4, 8] {
        let e = err_of(with(12, type_len - cut));
        assert!(e.contains("truncated") && e.contains("BTF type ["), "{e}");
    }
    // A trailing header longer than 24 bytes is fine when the sections say so.
    let mut longer = good[..HEADER_LEN].to_vec();
    longer.extend([0; 8]);
    longer.extend_from_slice(&good[HEADER_LEN..]);
    set_u32(&mut longer, 4, 32);
    let btf = KernelBtf::parse(&longer).unwrap();
    assert_eq!(rss_layout(&btf).unwrap().stride, 40);
}

#[test]
fn malformed_types_are_errors() {
    // Unknown kind: nothing after it could be decoded.
    let mut b = Builder::new();
    b.int("int", 4);
    b.raw("", 20, false, 0, 0, &[]);
    let e = err_of(KernelBtf::parse(&b.build()));
    assert!(
        e.contains("unknown BTF kind 20") && e.contains("[2]"),
        "{e}"
    );

    // Type ids out of range, in each place one can appear.
    let mut b = Builder::new();
    b.strukt("s", 4, &[("x", 999, 0)]);
    assert!(err_of(KernelBtf::parse(&b.build())).contains("refers to type 999"));
    let mut b = Builder::new();
    b.array(77, 1);
    assert!(err_of(KernelBtf::parse(&b.build())).contains("refers to type 77"));
    let mut b = Builder::new();
    b.typedef("t", 5);
    assert!(err_of(KernelBtf::parse(&b.build())).contains("refers to type 5"));

    // String offsets out of range: type name and member name.
    let mut b = Builder::new();
    b.record(9999, KIND_INT << 24, 4, &[32]);
    assert!(err_of(KernelBtf::parse(&b.build())).contains("name offset 9999"));
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let n = b.str("s");
    b.record(n, (KIND_STRUCT << 24) | 1, 4, &[12345, int, 0]);
    assert!(err_of(KernelBtf::parse(&b.build())).contains("name offset 12345"));

    // A struct claiming more members than the section holds.
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let n = b.str("s");
    b.record(n, (KIND_STRUCT << 24) | 0xffff, 4, &[0, int, 0]);
    assert!(err_of(KernelBtf::parse(&b.build())).contains("truncated"));
    // Likewise for every kind with trailing data.
    for kind in [
        KIND_INT,
        KIND_ARRAY,
        KIND_ENUM,
        KIND_FUNC_PROTO,
        KIND_VAR,
        KIND_DATASEC,
        KIND_DECL_TAG,
        KIND_ENUM64,
        KIND_UNION,
    ] {
        let mut b = Builder::new();
        b.record(0, (kind << 24) | 3, 0, &[]);
        let e = err_of(KernelBtf::parse(&b.build()));
        assert!(e.contains("truncated"), "kind {kind}: {e}");
    }
}

#[test]
fn cycles_and_deep_nesting_are_errors_not_hangs() {
    // typedef t = t; and a two-step loop.
    let mut b = Builder::new();
    let me = b.next_id;
    let t = b.typedef("loop", me);
    let a = b.next_id;
    b.typedef("a", a + 1);
    b.qual(KIND_CONST, "", a);
    let arr_loop = b.array(t, 2);
    let me = b.next_id;
    let self_arr = b.array(me, 2);
    b.strukt(
        "s",
        8,
        &[
            ("x", t, 0),
            ("y", a, 0),
            ("z", arr_loop, 0),
            ("w", self_arr, 0),
        ],
    );
    let btf = KernelBtf::parse(&b.build()).unwrap();
    for m in ["x", "y", "z", "w"] {
        let e = err_of(btf.member_type("s", m));
        assert!(e.contains("a loop?"), "{m}: {e}");
        assert!(btf.member_offset("s", m).is_err() || m == "z" || m == "w");
    }
    assert!(err_of(btf.member_offset("s", "x.inner")).contains("a loop?"));

    // A struct containing itself anonymously, directly and via a union.
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let s = b.next_id;
    b.strukt("selfish", 8, &[("", s, 0), ("", s + 1, 0), ("x", int, 32)]);
    b.union("", 8, &[("", s, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    for m in ["x", "nope"] {
        let e = err_of(btf.member_offset("selfish", m));
        assert!(
            e.contains("struct selfish (type [2]) contains itself"),
            "{e}"
        );
    }
    // Via an anonymous union that contains its own parent.
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let u = b.next_id;
    b.union("", 8, &[("a", int, 0), ("", u + 1, 0)]);
    b.strukt("", 8, &[("", u, 0)]);
    b.strukt("outer", 8, &[("", u, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    assert_eq!(btf.member_offset("outer", "a").unwrap(), 0);
    let e = err_of(btf.member_offset("outer", "b"));
    assert!(
        e.contains("anonymous union (type [2]) contains itself"),
        "{e}"
    );

    // Anonymous nesting deeper than MAX_DEPTH; a shallower chain still adds up.
    for (levels, ok) in [(MAX_DEPTH as u32 + 8, false), (20, true)] {
        let mut b = Builder::new();
        let int = b.int("int", 4);
        let mut inner = b.strukt("", 4, &[("bottom", int, 0)]);
        for _ in 0..levels {
            inner = b.strukt("", 4, &[("", inner, 8)]);
        }
        b.strukt("deep", 4, &[("", inner, 0)]);
        let btf = KernelBtf::parse(&b.build()).unwrap();
        let r = btf.member_offset("deep", "bottom");
        if ok {
            assert_eq!(r.unwrap(), levels);
        } else {
            assert!(err_of(r).contains("nested deeper"));
        }
    }

    // Exponential fan-out of shared anonymous types: each level has two anonymous
    // members of the next; 2^30 paths, but each type is searched once.
    let mut b = Builder::new();
    let int = b.int("int", 4);
    let mut inner = b.strukt("", 4, &[("bottom", int, 0)]);
    for _ in 0..30 {
        inner = b.strukt("", 4, &[("", inner, 0), ("", inner, 0)]);
    }
    b.strukt("wide", 4, &[("", inner, 0)]);
    let btf = KernelBtf::parse(&b.build()).unwrap();
    let t = std::time::Instant::now();
    assert!(btf.member_offset("wide", "missing").is_err());
    assert_eq!(btf.member_offset("wide", "bottom").unwrap(), 0);
    assert!(t.elapsed() < std::time::Duration::from_secs(1));
}

/// Every lookup the module offers, on every name a (possibly corrupt) blob has.
fn exercise(btf: &KernelBtf) {
    let _ = task_layout(btf);
    let _ = rss_layout(btf);
    for (name, ids) in btf.by_name.iter().take(64) {
        for &id in ids.iter().take(4) {
            let Ok(ty) = btf.ty(id) else { continue };
            let Ok(members) = btf.members_of(ty) else {
                continue;
            };
            for m in members.iter().take(64) {
                let Ok(m) = btf.string(m.name) else { continue };
                let m = String::from_utf8_lossy(m);
                for path in [m.to_string(), format!("{m}.count"), format!("{m}.{m}")] {
                    let _ = btf.member_offset(name, &path);
                    let _ = btf.member_type(name, &path);
                }
            }
        }
    }
    for id in 0..btf.types.len().min(4096) as u32 {
        let _ = btf.info(id, 0);
        let _ = btf.size_of(id, 0);
        let _ = btf.locate_in(id, "count");
    }
}

#[test]
fn every_single_byte_mutation_and_truncation_is_handled() {
    for good in [modern(), old()] {
        // The layouts only: `exercise` on all ~8000 variants is slow in debug builds,
        // and the proptests below run it on random ones.
        let layouts = |btf: KernelBtf| {
            let _ = (task_layout(&btf), rss_layout(&btf));
            let _ = btf.member_type("mm_struct", "rss_stat.count");
        };
        for len in 0..good.len() {
            if let Ok(btf) = KernelBtf::parse(&good[..len]) {
                layouts(btf);
            }
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff, good[i] ^ 1] {
                let mut m = good.clone();
                m[i] = v;
                if let Ok(btf) = KernelBtf::parse(&m) {
                    layouts(btf);
                }
            }
        }
    }
}

mod fuzz {
    use proptest::{collection::vec, prelude::*};

    use super::*;

    /// Words that are often meaningful: small ids/offsets and well-formed info words.
    fn word() -> impl Strategy<Value = u32> {
        prop_oneof![
            any::<u32>(),
            0u32..80,
            (1u32..21, 0u32..5, any::<bool>())
                .prop_map(|(k, v, f)| (u32::from(f) << 31) | (k << 24) | v),
            (0u32..64, 0u32..0x300).prop_map(|(size, off)| (size << 24) | off),
        ]
    }

    /// Names the layout functions look up, so random types can be found by them.
    const NAMES: [&str; 11] = [
        "",
        "mm_struct",
        "task_struct",
        "rss_stat",
        "percpu_counter",
        "count",
        "counter",
        "mm",
        "pid",
        "tgid",
        "mm_rss_stat",
    ];

    fn name_table() -> (Vec<u8>, Vec<u32>) {
        let mut b = Builder::new();
        let offs = NAMES.iter().map(|n| b.str(n)).collect();
        (b.strings, offs)
    }

    /// One record of a random kind whose length matches its kind (mostly valid
    /// references and names), so that parsing usually succeeds and the lookups run on
    /// random but well-formed type graphs: cycles, wrong kinds, odd sizes and offsets.
    fn record(n_types: u32) -> impl Strategy<Value = Vec<u32>> {
        let n_names = NAMES.len();
        let id = prop_oneof![20 => 0..=n_types, 1 => any::<u32>()];
        let name = prop_oneof![20 => (0..n_names).prop_map(|i| i as u32), 1 => Just(u32::MAX)];
        let num = prop_oneof![
            (0u32..64).prop_map(|x| x * 8),
            0u32..4096,
            Just(u32::MAX),
            any::<u32>()
        ];
        let member = (name.clone(), id.clone(), num.clone());
        (
            1u32..=19,
            0u32..5,
            any::<bool>(),
            name,
            id,
            num.clone(),
            vec(member, 5),
            vec(num, 15),
        )
            .prop_map(|(kind, vlen, kind_flag, name, id, num, members, extra)| {
                let offs = name_table().1;
                let name_off = |i: u32| offs.get(i as usize).copied().unwrap_or(i);
                let refers = matches!(
                    kind,
                    KIND_PTR
                        | KIND_TYPEDEF
                        | KIND_VOLATILE
                        | KIND_CONST
                        | KIND_RESTRICT
                        | KIND_FUNC
                        | KIND_VAR
                        | KIND_DECL_TAG
                        | KIND_TYPE_TAG
                );
                let info = (u32::from(kind_flag) << 31) | (kind << 24) | vlen;
                let mut w = vec![name_off(name), info, if refers { id } else { num }];
                let per_entry = match kind {
                    KIND_STRUCT | KIND_UNION => {
                        for &(n, t, off) in members.iter().take(vlen as usize) {
                            w.extend([name_off(n), t, off]);
                        }
                        return w;
                    }
                    KIND_ARRAY => {
                        w.extend([id, 1, extra[0] / 8]);
                        return w;
                    }
                    KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                        w.push(extra[0]);
                        return w;
                    }
                    KIND_ENUM | KIND_FUNC_PROTO => 2,
                    KIND_DATASEC | KIND_ENUM64 => 3,
                    _ => 0,
                };
                w.extend(extra.iter().take(per_entry * vlen as usize));
                w
            })
    }

    fn records() -> impl Strategy<Value = Vec<Vec<u32>>> {
        (1u32..24).prop_flat_map(|n| vec(record(n), n as usize))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_panic(data in vec(any::<u8>(), 0..1024)) {
            if let Ok(btf) = KernelBtf::parse(&data) {
                exercise(&btf);
            }
        }

        #[test]
        fn mutated_blobs_never_panic(
            modern_blob in any::<bool>(),
            edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut b = if modern_blob { modern() } else { old() };
            for (i, v) in edits {
                let i = i.index(b.len());
                b[i] = v;
            }
            if truncate {
                b.truncate(cut.index(b.len() + 1));
            }
            if let Ok(btf) = KernelBtf::parse(&b) {
                exercise(&btf);
            }
        }

        /// A valid header and string section around random type records, so the
        /// type decoder and lookups (not just the header checks) see garbage.
        #[test]
        fn random_type_sections_never_panic(words in vec(word(), 0..96)) {
            let strings = b"\0mm_struct\0task_struct\0rss_stat\0percpu_counter\0count\0\
                counter\0mm\0pid\0tgid\0mm_rss_stat\0";
            let mut b = Builder::new();
            b.strings = strings.to_vec();
            for w in &words {
                b.types.extend_from_slice(&w.to_le_bytes());
            }
            if let Ok(btf) = KernelBtf::parse(&b.build()) {
                exercise(&btf);
            }
        }

        #[test]
        fn random_type_graphs_never_panic(records in records()) {
            let mut b = Builder::new();
            b.strings = name_table().0;
            for w in records.iter().flatten() {
                b.types.extend_from_slice(&w.to_le_bytes());
            }
            if let Ok(btf) = KernelBtf::parse(&b.build()) {
                exercise(&btf);
            }
        }
    }
}

/// bpftool's reading of the same BTF (`format raw`), as an independent reference.
mod bpftool {
    use std::{collections::HashMap, process::Command, sync::OnceLock};

    use super::super::TypeInfo;

    pub struct Member {
        pub name: String,
        pub type_id: u32,
        pub bits: u32,
        pub bitfield_size: u32,
    }

    #[derive(Default)]
    pub struct Type {
        pub kind: String,
        pub name: String,
        pub size: u32,
        pub type_id: u32,
        pub nelems: u32,
        pub members: Vec<Member>,
    }

    pub struct Dump {
        pub types: HashMap<u32, Type>,
    }

    fn num(v: &str) -> u32 {
        v.trim_end_matches(',')
            .parse()
            .unwrap_or_else(|_| panic!("bpftool: bad number {v:?}"))
    }

    /// `'name' rest`: the quoted name and what follows.
    fn quoted(s: &str) -> (String, &str) {
        let s = s.strip_prefix('\'').expect("bpftool: quoted name");
        let end = s.find('\'').expect("bpftool: closing quote");
        let name = &s[..end];
        let name = if name == "(anon)" { "" } else { name };
        (name.to_string(), &s[end + 1..])
    }

    fn parse(text: &str) -> Dump {
        let mut types = HashMap::new();
        let mut cur: Option<(u32, Type)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix('[') {
                if let Some((id, t)) = cur.take() {
                    types.insert(id, t);
                }
                let (id, rest) = rest.split_once("] ").expect("bpftool: [id]");
                let (kind, rest) = rest.split_once(' ').expect("bpftool: kind");
                let (name, rest) = quoted(rest);
                let mut t = Type {
                    kind: kind.to_string(),
                    name,
                    ..Type::default()
                };
                for kv in rest.split_whitespace() {
                    match kv.split_once('=') {
                        Some(("size", v)) => t.size = num(v),
                        Some(("type_id", v)) => t.type_id = num(v),
                        Some(("nr_elems", v)) => t.nelems = num(v),
                        _ => {}
                    }
                }
                cur = Some((num(id), t));
            } else if let Some(rest) = line.strip_prefix('\t')
                && let Some((_, t)) = &mut cur
                && (t.kind == "STRUCT" || t.kind == "UNION")
            {
                let (name, rest) = quoted(rest);
                let mut m = Member {
                    name,
                    type_id: 0,
                    bits: 0,
                    bitfield_size: 0,
                };
                for kv in rest.split_whitespace() {
                    match kv.split_once('=') {
                        Some(("type_id", v)) => m.type_id = num(v),
                        Some(("bits_offset", v)) => m.bits = num(v),
                        Some(("bitfield_size", v)) => m.bitfield_size = num(v),
                        _ => {}
                    }
                }
                t.members.push(m);
            }
        }
        if let Some((id, t)) = cur {
            types.insert(id, t);
        }
        Dump { types }
    }

    /// Runs bpftool once for all tests.
    pub fn vmlinux() -> &'static Dump {
        static DUMP: OnceLock<Dump> = OnceLock::new();
        DUMP.get_or_init(|| {
            let out = Command::new("bpftool")
                .args([
                    "btf",
                    "dump",
                    "file",
                    "/sys/kernel/btf/vmlinux",
                    "format",
                    "raw",
                ])
                .output()
                .expect("running bpftool (apt-get install bpftool; `cargo xtask` installs it)");
            assert!(
                out.status.success(),
                "bpftool failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let dump = parse(&String::from_utf8_lossy(&out.stdout));
            assert!(dump.types.len() > 1000, "bpftool dumped too few types");
            dump
        })
    }

    impl Dump {
        pub fn ty(&self, id: u32) -> &Type {
            self.types
                .get(&id)
                .unwrap_or_else(|| panic!("bpftool dump lacks type {id}"))
        }

        pub fn resolve(&self, mut id: u32) -> u32 {
            while matches!(
                self.ty(id).kind.as_str(),
                "TYPEDEF" | "CONST" | "VOLATILE" | "RESTRICT" | "TYPE_TAG"
            ) {
                id = self.ty(id).type_id;
            }
            id
        }

        pub fn is_composite(&self, id: u32) -> bool {
            id != 0 && matches!(self.ty(id).kind.as_str(), "STRUCT" | "UNION")
        }

        pub fn size(&self, id: u32) -> u32 {
            let t = self.ty(self.resolve(id));
            match t.kind.as_str() {
                "PTR" => 8,
                "ARRAY" => t.nelems * self.size(t.type_id),
                _ => t.size,
            }
        }

        pub fn info(&self, id: u32) -> TypeInfo {
            let rid = self.resolve(id);
            if rid == 0 {
                return TypeInfo::Other;
            }
            let t = self.ty(rid);
            match t.kind.as_str() {
                "INT" => TypeInfo::Int { size: t.size },
                "PTR" => TypeInfo::Ptr,
                "ARRAY" => TypeInfo::Array {
                    elem: Box::new(self.info(t.type_id)),
                    elem_size: self.size(t.type_id),
                    len: t.nelems,
                },
                "STRUCT" => TypeInfo::Struct {
                    name: t.name.clone(),
                    size: t.size,
                },
                "UNION" => TypeInfo::Union {
                    name: t.name.clone(),
                    size: t.size,
                },
                "ENUM" | "ENUM64" => TypeInfo::Enum { size: t.size },
                _ => TypeInfo::Other,
            }
        }

        /// (bit offset, member) of `name` in composite `id`, through anonymous members.
        pub fn find(&self, id: u32, name: &str) -> Option<(u32, &Member)> {
            for m in &self.ty(id).members {
                if m.name.is_empty() {
                    let inner = self.resolve(m.type_id);
                    if self.is_composite(inner)
                        && let Some((bits, found)) = self.find(inner, name)
                    {
                        return Some((m.bits + bits, found));
                    }
                } else if m.name == name {
                    return Some((m.bits, m));
                }
            }
            None
        }

        /// First STRUCT/UNION named `name` with `member`: (bit offset, member).
        pub fn find_named(&self, name: &str, member: &str) -> (u32, &Member) {
            let mut ids: Vec<u32> = self
                .types
                .iter()
                .filter(|(_, t)| (t.kind == "STRUCT" || t.kind == "UNION") && t.name == name)
                .map(|(id, _)| *id)
                .collect();
            ids.sort_unstable();
            ids.iter()
                .find_map(|&id| self.find(id, member))
                .unwrap_or_else(|| panic!("bpftool: no {name}.{member}"))
        }
    }
}

/// The running kernel's BTF, or None when it is absent and skipping was asked for.
fn running_kernel() -> Option<KernelBtf> {
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert!(
            std::env::var("LEAKTRACER_SKIP_PRIVILEGED").is_ok_and(|v| v == "1"),
            "/sys/kernel/btf/vmlinux is missing: this kernel was built without \
             CONFIG_DEBUG_INFO_BTF, so the raw programs cannot be given offsets; \
             set LEAKTRACER_SKIP_PRIVILEGED=1 to skip this test"
        );
        eprintln!("SKIPPED: /sys/kernel/btf/vmlinux missing, LEAKTRACER_SKIP_PRIVILEGED=1");
        return None;
    }
    Some(KernelBtf::from_sys_fs().expect("parsing the running kernel's BTF"))
}

/// The layouts handed to the programs equal what bpftool reads from the same BTF.
#[test]
fn running_kernel_layouts_match_bpftool() {
    let Some(btf) = running_kernel() else { return };
    let dump = bpftool::vmlinux();
    let bytes = |(bits, _): (u32, &bpftool::Member)| {
        assert_eq!(bits % 8, 0);
        bits / 8
    };
    let expected_task = TaskLayout {
        task_mm: bytes(dump.find_named("task_struct", "mm")),
        task_pid: bytes(dump.find_named("task_struct", "pid")),
        task_tgid: bytes(dump.find_named("task_struct", "tgid")),
    };
    let expected_extras = TaskExtras {
        task_flags: bytes(dump.find_named("task_struct", "flags")),
        task_signal: bytes(dump.find_named("task_struct", "signal")),
        // atomic_t live is { int counter; }: the counter starts where live does.
        signal_live: bytes(dump.find_named("signal_struct", "live")),
        task_group_leader: bytes(dump.find_named("task_struct", "group_leader")),
        task_comm: bytes(dump.find_named("task_struct", "comm")),
    };
    let (rss_bits, rss) = dump.find_named("mm_struct", "rss_stat");
    let rss_ty = dump.ty(dump.resolve(rss.type_id));
    let expected_rss = if rss_ty.kind == "ARRAY" {
        // Linux >= 6.2: struct percpu_counter rss_stat[NR_MM_COUNTERS].
        let elem = dump.resolve(rss_ty.type_id);
        assert_eq!(dump.ty(elem).name, "percpu_counter");
        let (count_bits, _) = dump.find(elem, "count").expect("percpu_counter.count");
        RssLayout {
            mm_rss_stat: rss_bits / 8,
            stride: dump.ty(elem).size,
            count: count_bits / 8,
        }
    } else {
        // Older: struct mm_rss_stat { atomic_long_t count[NR_MM_COUNTERS]; }.
        assert_eq!(rss_ty.name, "mm_rss_stat");
        let (count_bits, counts) = dump
            .find(dump.resolve(rss.type_id), "count")
            .expect("mm_rss_stat.count");
        let arr = dump.ty(dump.resolve(counts.type_id));
        let elem = dump.resolve(arr.type_id);
        let (counter_bits, _) = dump.find(elem, "counter").expect("atomic64_t.counter");
        RssLayout {
            mm_rss_stat: (rss_bits + count_bits) / 8,
            stride: dump.size(elem),
            count: counter_bits / 8,
        }
    };
    let task = task_layout(&btf).unwrap();
    let rss = rss_layout(&btf).unwrap();
    eprintln!("{task:?} {rss:?}");
    assert_eq!(task, expected_task);
    assert_eq!(task_extras(&btf).unwrap(), expected_extras);
    assert_eq!(rss, expected_rss);
}

/// Every member of every uniquely named struct/union, and every member one anonymous
/// level down, has the offset and type bpftool reports: a check of the whole decoder
/// against ~all of the kernel's types, not just the few the programs use.
#[test]
fn running_kernel_all_members_match_bpftool() {
    let Some(btf) = running_kernel() else { return };
    let dump = bpftool::vmlinux();
    let mut name_count: HashMap<&str, u32> = HashMap::new();
    for t in dump.types.values() {
        if (t.kind == "STRUCT" || t.kind == "UNION") && !t.name.is_empty() {
            *name_count.entry(&t.name).or_default() += 1;
        }
    }
    let mut checked = 0u32;
    let mut check = |sname: &str, m: &bpftool::Member, bits: u32| {
        let got = btf.member_offset(sname, &m.name);
        if m.bitfield_size != 0 || !bits.is_multiple_of(8) {
            assert!(got.is_err(), "{sname}.{} is a bitfield: {got:?}", m.name);
        } else {
            assert_eq!(got.unwrap(), bits / 8, "{sname}.{}", m.name);
        }
        let ty = btf.member_type(sname, &m.name).unwrap();
        assert_eq!(ty, dump.info(m.type_id), "type of {sname}.{}", m.name);
        checked += 1;
    };
    for t in dump.types.values() {
        if !(t.kind == "STRUCT" || t.kind == "UNION") || name_count.get(t.name.as_str()) != Some(&1)
        {
            continue;
        }
        for m in &t.members {
            if !m.name.is_empty() {
                check(&t.name, m, m.bits);
                continue;
            }
            let inner = dump.resolve(m.type_id);
            if dump.is_composite(inner) {
                for im in dump
                    .ty(inner)
                    .members
                    .iter()
                    .filter(|im| !im.name.is_empty())
                {
                    check(&t.name, im, m.bits + im.bits);
                }
            }
        }
    }
    eprintln!("{checked} members checked against bpftool");
    assert!(checked > 10_000, "only {checked} members checked");
}

#[test]
fn from_path_reports_the_path() {
    let e = err_of(KernelBtf::from_path(Path::new("/nonexistent/vmlinux")));
    assert!(e.contains("/nonexistent/vmlinux"), "{e}");
}
