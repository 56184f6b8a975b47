//! A process that is not leaking but surges under periodic load, like a webhook during
//! backups: it holds BASE_MIB, rises to PEAK_MIB over about 1.5 s, holds the peak for 1.5 s
//! (so every sampling interval up to 1 s sees it), falls back to BASE_MIB and rests 2 s.
//! `surger BASE_MIB PEAK_MIB`. Prints "surging" once the base is resident.
use std::{io::Write as _, thread::sleep, time::Duration};

const MIB: usize = 1 << 20;
/// Each step of the rise is its own mapping (glibc mmaps allocations this large), so the
/// fall gives the memory back to the kernel at once.
const STEP_MIB: usize = 4;

fn touched(mib: usize, round: u8) -> Vec<u8> {
    let mut v = vec![0u8; mib * MIB];
    for i in (0..v.len()).step_by(4096) {
        v[i] = round | 1;
    }
    v
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().ok());
    let base = args.next().flatten().unwrap_or(30);
    let peak = args.next().flatten().unwrap_or(118).max(base);
    let _base = std::hint::black_box(touched(base, 0));
    println!("surging");
    let _ = std::io::stdout().flush();
    let steps = (peak - base).div_ceil(STEP_MIB);
    let mut round: u8 = 0;
    loop {
        round = round.wrapping_add(1);
        let mut surge = Vec::with_capacity(steps);
        let mut left = peak - base;
        while left > 0 {
            let mib = left.min(STEP_MIB);
            surge.push(std::hint::black_box(touched(mib, round)));
            left -= mib;
            sleep(Duration::from_millis(1500 / steps.max(1) as u64));
        }
        sleep(Duration::from_millis(1500));
        drop(surge);
        sleep(Duration::from_millis(2000));
    }
}
