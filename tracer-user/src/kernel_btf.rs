// TEMPORARY placeholder until the BTF parser lands (helper is writing it).
use anyhow::bail;
pub struct KernelBtf;
impl KernelBtf {
    pub fn from_path(_p: &std::path::Path) -> anyhow::Result<Self> {
        bail!("BTF parser not yet available")
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskLayout {
    pub task_mm: u32,
    pub task_pid: u32,
    pub task_tgid: u32,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RssLayout {
    pub mm_rss_stat: u32,
    pub stride: u32,
    pub count: u32,
}
pub fn task_layout(_b: &KernelBtf) -> anyhow::Result<TaskLayout> {
    bail!("n/a")
}
pub fn rss_layout(_b: &KernelBtf) -> anyhow::Result<RssLayout> {
    bail!("n/a")
}
