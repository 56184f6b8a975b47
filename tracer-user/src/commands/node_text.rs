//! The node's memory in a few lines of text, the same in `top --once`, the live screen's
//! NODE block and `report`'s NODE section.
use crate::{model::node::NodeView, util::format::bytes};

fn b(v: u64) -> String {
    bytes(v as f64)
}

/// Slab caches named on the slab line.
const SLABS_SHOWN: usize = 5;

/// Memory, kernel memory, the biggest slab caches, zombie memory cgroups and (with
/// `verdicts`) the node series judged growing or leaking now.
pub fn lines(v: &NodeView, verdicts: bool) -> Vec<String> {
    let m = &v.memory;
    let mut out = vec![
        format!(
            "memory: used {} of {} (available {}); anon {}, page cache {}, shmem {}",
            b(v.used),
            b(m.total),
            b(m.available),
            b(m.anon),
            b(m.file),
            b(m.shmem)
        ),
        format!(
            "kernel: slab {} (reclaimable {}, unreclaimable {}), stacks {}, page tables {}, per-CPU {}, vmalloc {}; unattributed {}",
            b(m.slab_reclaimable + m.slab_unreclaimable),
            b(m.slab_reclaimable),
            b(m.slab_unreclaimable),
            b(m.kernel_stack),
            b(m.page_tables),
            b(m.percpu),
            b(m.vmalloc_used),
            b(v.unattributed)
        ),
    ];
    if !v.slab_top.is_empty() {
        let caches: Vec<String> = v
            .slab_top
            .iter()
            .take(SLABS_SHOWN)
            .map(|c| match c.change_bytes {
                0 => format!("{} {}", c.name, b(c.bytes)),
                d if d > 0 => format!("{} {} (+{})", c.name, b(c.bytes), b(d as u64)),
                d => format!("{} {} (-{})", c.name, b(c.bytes), b(d.unsigned_abs())),
            })
            .collect();
        out.push(format!("slab caches: {}", caches.join(", ")));
    }
    match (&v.zombies, &v.zombies_sentence) {
        (_, Some(s)) => out.push(format!("memory cgroups: {s}")),
        (Some(z), None) => out.push(format!(
            "memory cgroups: {} live, no zombies",
            z.directories
        )),
        (None, None) => {}
    }
    if verdicts {
        out.extend(
            v.verdicts
                .iter()
                .map(|x| format!("{}: {}", x.verdict.as_str(), x.sentence)),
        );
    }
    out
}
