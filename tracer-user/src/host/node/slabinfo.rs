//! /proc/slabinfo (root only): the kernel's object caches and the memory each holds.
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SlabCache {
    pub name: String,
    pub active_objects: u64,
    pub objects: u64,
    pub object_size: u64,
    /// Memory the cache holds: its slabs × pages per slab × the page size.
    pub bytes: u64,
}

/// Parse slabinfo 2.x. Lines that are not cache lines (the version and the column header, a
/// truncated last line) are skipped.
pub fn parse(text: &str, page_size: u64) -> Vec<SlabCache> {
    text.lines()
        .filter_map(|l| cache_line(l, page_size))
        .collect()
}

/// `name active_objs num_objs objsize objperslab pagesperslab : tunables ... : slabdata
/// active_slabs num_slabs sharedavail`
fn cache_line(line: &str, page_size: u64) -> Option<SlabCache> {
    if line.starts_with('#') || line.starts_with("slabinfo") {
        return None;
    }
    let mut parts = line.split(':');
    let head: Vec<&str> = parts.next()?.split_whitespace().collect();
    let slabdata = parts.find(|p| p.trim_start().starts_with("slabdata"))?;
    let num: Vec<u64> = head
        .get(1..6)?
        .iter()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let num_slabs: u64 = slabdata.split_whitespace().nth(2)?.parse().ok()?;
    Some(SlabCache {
        name: head.first()?.to_string(),
        active_objects: num[0],
        objects: num[1],
        object_size: num[2],
        bytes: num_slabs.saturating_mul(num[4]).saturating_mul(page_size),
    })
}

/// The `n` caches whose memory changed most between two readings (growth first, then
/// shrink, by size of the change); a cache new in `now` changed by all it holds.
pub fn top_changes<'a>(
    before: &[SlabCache],
    now: &'a [SlabCache],
    n: usize,
) -> Vec<(&'a SlabCache, i64)> {
    let old: std::collections::HashMap<&str, u64> =
        before.iter().map(|c| (c.name.as_str(), c.bytes)).collect();
    let mut changes: Vec<(&SlabCache, i64)> = now
        .iter()
        .map(|c| {
            let was = old.get(c.name.as_str()).copied().unwrap_or(0);
            (c, c.bytes as i64 - was as i64)
        })
        .filter(|(_, d)| *d != 0)
        .collect();
    changes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.name.cmp(&b.0.name)));
    changes.truncate(n);
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
dentry            189000 190008    192   21    1 : tunables    0    0    0 : slabdata   9048   9048      0
kmalloc-1k          1500   1600   1024   16    4 : tunables    0    0    0 : slabdata    100    100      0
ext4_inode_cache     10";

    #[test]
    fn cache_lines_in_bytes_held() {
        let caches = parse(SAMPLE, 4096);
        assert_eq!(
            caches.len(),
            2,
            "headers and the truncated line are skipped"
        );
        assert_eq!(caches[0].name, "dentry");
        assert_eq!(caches[0].active_objects, 189_000);
        assert_eq!(caches[0].objects, 190_008);
        assert_eq!(caches[0].object_size, 192);
        assert_eq!(caches[0].bytes, 9048 * 4096);
        assert_eq!(caches[1].bytes, 100 * 4 * 4096);
    }

    #[test]
    fn the_biggest_growth_comes_first() {
        let before = parse(SAMPLE, 4096);
        let mut now = before.clone();
        now[0].bytes += 900 << 20;
        now[1].bytes -= 4096;
        now.push(SlabCache {
            name: "new_cache".into(),
            active_objects: 1,
            objects: 1,
            object_size: 64,
            bytes: 4096,
        });
        let top = top_changes(&before, &now, 2);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].0.name.as_str(), top[0].1), ("dentry", 900 << 20));
        assert_eq!((top[1].0.name.as_str(), top[1].1), ("new_cache", 4096));
    }
}
