//! A busy non-leaker: allocates, touches and frees a working set over and over, so its
//! allocation rate is high but its memory does not grow. `steady WORKING_SET_MIB`.
fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(16);
    let mut round: u64 = 0;
    loop {
        let mut v = vec![0u8; mib << 20];
        for i in (0..v.len()).step_by(4096) {
            v[i] = round as u8;
        }
        std::hint::black_box(&v);
        drop(v);
        round += 1;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
