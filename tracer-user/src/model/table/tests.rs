use super::*;

fn snap(t: f64, procs: Vec<(u32, u64)>) -> Snapshot {
    Snapshot {
        t_mono: t,
        procs: procs
            .into_iter()
            .map(|(pid, anon)| {
                let mut st = Counters::default();
                st.rss.anon = anon;
                st.mapped_anon = anon;
                (pid, st)
            })
            .collect(),
        counters: Default::default(),
        procs_capacity: 100,
        go: Vec::new(),
    }
}

#[test]
fn reclaim_is_summed_per_cgroup_as_deltas() {
    let mut t = ProcessTable::new(TableLimits::default(), 0.0);
    let stats = |runs: u64, ns: u64, pages: u64| Counters {
        reclaim_runs: runs,
        reclaim_ns: ns,
        reclaimed_pages: pages,
        ..Counters::default()
    };
    let round = |t: &mut ProcessTable, time: f64, a: Counters, b: Counters| {
        t.update(
            &Snapshot {
                t_mono: time,
                procs: vec![(1, a), (2, b)],
                counters: Default::default(),
                procs_capacity: 100,
                go: Vec::new(),
            },
            None,
        )
    };
    let r = round(&mut t, 1.0, stats(0, 0, 0), stats(0, 0, 0));
    assert!(r.reclaim.is_empty(), "no reclaim, no entry");
    for (pid, cg) in [(1, "/memory/app"), (2, "/memory/app")] {
        t.live.get_mut(&pid).unwrap().cgroup_raw = Some(format!("4:memory:{cg}\n").into());
    }
    let r = round(&mut t, 2.0, stats(3, 3_000, 10), stats(1, 500, 0));
    let app = r.reclaim.values().next().expect("one cgroup");
    assert_eq!(r.reclaim.len(), 1, "{r:?}");
    assert_eq!((app.runs, app.stall_ns, app.pages), (4, 3_500, 10));
    assert_eq!(app.pids, vec![1, 2]);
    // Only what is new since the previous round.
    let r = round(&mut t, 3.0, stats(5, 4_000, 12), stats(1, 500, 0));
    let app = r.reclaim.values().next().expect("one cgroup");
    assert_eq!(
        (app.runs, app.stall_ns, app.pages, &app.pids[..]),
        (2, 1_000, 2, &[1][..])
    );
}

#[test]
fn reclaim_of_a_short_lived_process_goes_to_its_exec_or_parent_cgroup() {
    let mut t = ProcessTable::new(TableLimits::default(), 0.0);
    let proc_at = |ppid: u32, runs: u64, exited: bool| Counters {
        ppid,
        reclaim_runs: runs,
        reclaim_ns: 1_000,
        exited,
        ..Counters::default()
    };
    let round = |t: &mut ProcessTable, time: f64, procs: Vec<(u32, Counters)>| {
        t.update(
            &Snapshot {
                t_mono: time,
                procs,
                counters: Default::default(),
                procs_capacity: 100,
                go: Vec::new(),
            },
            None,
        )
    };
    round(&mut t, 1.0, vec![(10, proc_at(1, 0, false))]);
    t.live.get_mut(&10).unwrap().cgroup_raw = Some("4:memory:/shell\n".into());
    assert_eq!(t.strings.len(), 0, "set directly, not interned");
    // 11: exec seen (in /job); 12: no exec seen, parent 10; 13: nothing known.
    t.exec(11, "cat".into(), None, Some("4:memory:/job\n".into()));
    let r = round(
        &mut t,
        2.0,
        vec![
            (10, proc_at(1, 0, false)),
            (11, proc_at(10, 2, true)),
            (12, proc_at(10, 1, true)),
            (13, proc_at(99, 1, true)),
        ],
    );
    assert_eq!(r.reclaim["/job"].runs, 2, "{r:?}");
    assert_eq!(r.reclaim["/shell"].pids, vec![12]);
    assert_eq!(r.reclaim["/"].pids, vec![13]);
    // They lived less than one interval: tracked at their end, in the graveyard.
    let brief = t.find(11).expect("kept at its end");
    assert!(brief.brief && brief.exited_at == Some(2.0));
    assert_eq!(brief.memcg_path().as_deref(), Some("/job"));
    assert_eq!(
        t.find(12).and_then(Process::memcg_path).as_deref(),
        Some("/shell")
    );
    assert!(t.exec_cgroups.is_empty(), "forgotten after the round");
}

#[test]
fn interned_strings_are_shared_and_pruned() {
    let mut i = Interner::default();
    let a = i.intern("4:memory:/a\n".to_owned());
    let b = i.intern("4:memory:/a\n".to_owned());
    assert!(Arc::ptr_eq(&a, &b));
    let c = i.intern("4:memory:/c\n".to_owned());
    assert_eq!(i.len(), 2);
    drop(c);
    i.prune();
    assert_eq!(i.len(), 1, "/c is held by nobody");
    drop((a, b));
    i.prune();
    assert_eq!(i.len(), 0);
}

#[test]
fn ranks_the_grower_first_with_its_rate() {
    let mut t = ProcessTable::new(TableLimits::default(), 100.0);
    for i in 0..20u64 {
        t.update(
            &snap(
                100.0 + i as f64,
                vec![(1, 50 << 20), (2, (10 << 20) + i * (1 << 20)), (3, 5 << 20)],
            ),
            None,
        );
    }
    let ranked = t.ranked(19.0, 60.0);
    assert_eq!(ranked[0].0.pid, 2);
    assert!(
        (ranked[0].1 - (1 << 20) as f64).abs() < 1.0,
        "rate {}",
        ranked[0].1
    );
    assert_eq!(ranked[1].1, 0.0);
    assert!((t.live[&2].alloc_rate(19.0, 60.0) - (1 << 20) as f64).abs() < 1.0);
    assert_eq!(t.live[&2].growing_for(19.0, 60.0), 19.0);
}

/// Issue 10's shape through the real table and detector: a process that filled a cache
/// at 8 MiB/s for 15 s and then stayed flat for 60 s, next to two steady leakers
/// (2.2 MB/s and 0.5 MB/s), sampled every 500 ms (the burst's samples stored only on
/// change). The leakers rank first, the burst last with a rate near 0.
#[test]
fn a_burst_then_flat_ranks_below_two_steady_leakers() {
    let mut t = ProcessTable::new(TableLimits::default(), 1000.0);
    let cfg = crate::detector::DetectorConfig::default();
    let (burst, fast, slow) = (10, 20, 30);
    for i in 0..=150u64 {
        let secs = i as f64 * 0.5;
        let burst_bytes = (8 << 20) + (8 << 20) * i.min(30) / 2;
        t.update(
            &snap(
                1000.0 + secs,
                vec![
                    (burst, burst_bytes),
                    (fast, (20 << 20) + i * 1_100_000),
                    (slow, (20 << 20) + i * 250_000),
                ],
            ),
            None,
        );
        crate::model::verdicts::refresh(&mut t, secs, &cfg);
    }
    assert_eq!(t.live[&burst].fine.len(), 31, "stored only on change");
    let now = 75.0;
    for window in [60.0, 75.0] {
        let ranked = t.ranked(now, window);
        let pids: Vec<u32> = ranked.iter().map(|(p, _)| p.pid).collect();
        assert_eq!(pids, vec![fast, slow, burst], "window {window}");
        let rate = |pid| ranked.iter().find(|(p, _)| p.pid == pid).unwrap().1;
        assert!(rate(burst).abs() < 10_000.0, "{}", rate(burst));
        assert!((rate(fast) - 2.2e6).abs() < 0.01e6, "{}", rate(fast));
        assert!((rate(slow) - 0.5e6).abs() < 0.01e6, "{}", rate(slow));
    }
    let verdict = |pid| t.live[&pid].assessment.as_ref().unwrap().verdict;
    assert_eq!(verdict(fast), crate::detector::Verdict::Leaking);
    assert_eq!(verdict(slow), crate::detector::Verdict::Leaking);
    assert_eq!(verdict(burst), crate::detector::Verdict::Steady);
    // growing_for: 0 for the burst (not growing over the window), the whole 75 s for a
    // leaker still rising.
    assert_eq!(t.live[&burst].growing_for(now, 75.0), 0.0);
    assert_eq!(t.live[&fast].growing_for(now, 75.0), 75.0);
    // Within the burst's own window it grew for 15 s, not 15 s + what came after.
    assert_eq!(t.live[&burst].growing_for(15.0, 15.0), 15.0);
}

#[test]
fn unchanged_processes_add_no_samples() {
    let mut t = ProcessTable::new(TableLimits::default(), 0.0);
    for i in 0..50 {
        t.update(&snap(i as f64, vec![(7, 4096)]), None);
    }
    assert_eq!(t.live[&7].fine.len(), 1, "an idle process costs one sample");
}

#[test]
fn memory_is_bounded() {
    let limits = TableLimits {
        fine: 10,
        coarse: 5,
        graveyard: 3,
        live: 4,
    };
    let mut t = ProcessTable::new(limits, 0.0);
    for i in 0..1000u64 {
        t.update(
            &snap(
                i as f64 * 30.0,
                vec![(1, i * 4096), (2, 1), (3, 1), (4, 1), (5, 1)],
            ),
            None,
        );
    }
    assert_eq!(t.live.len(), 4, "live bound");
    assert!(t.dropped > 0, "refusals are counted");
    assert_eq!(t.live[&1].fine.len(), 10);
    assert_eq!(t.live[&1].coarse.len(), 5);
    for pid in 1..=4 {
        t.exit(pid, 0.0);
    }
    assert_eq!(t.graveyard.len(), 3);
    assert!(t.find(1).is_none(), "oldest dead evicted");
    assert!(t.find(4).is_some());
}

mod exit_tests {
    use super::*;

    #[test]
    fn exited_process_keeps_its_final_sample_in_the_graveyard() {
        let mut t = ProcessTable::new(TableLimits::default(), 0.0);
        let mut st = Counters::default();
        st.rss.anon = 100;
        let snap = |t_mono: f64, st: Counters| Snapshot {
            t_mono,
            procs: vec![(9, st)],
            counters: Default::default(),
            procs_capacity: 10,
            go: Vec::new(),
        };
        t.update(&snap(1.0, st), None);
        st.rss.anon = 200;
        st.exited = true;
        let r = t.update(&snap(2.0, st), None);
        assert_eq!(r.exited, vec![9]);
        assert!(t.live.is_empty());
        let dead = t.find(9).expect("in the graveyard");
        assert_eq!(dead.last().unwrap().private(), 200, "final counters kept");
        assert_eq!(dead.exited_at, Some(2.0));
        // Born and dead between two samples (its exit event found the ring full): tracked at
        // its end with every count.
        let mut brief = Counters {
            exited: true,
            ..Counters::default()
        };
        brief.calls.brk = 500;
        let r = t.update(&snap(3.0, brief), None);
        assert_eq!((r.exited.clone(), r.new_pids.clone()), (vec![9], vec![9]));
        let again = t.find(9).expect("the newer incarnation");
        assert!(again.brief);
        assert_eq!(again.counters.calls.brk, 500);
    }
}

mod end_tests {
    use super::*;

    fn stats(brk: u64, mmap: u64, anon: u64, peak: u64) -> Counters {
        let mut st = Counters {
            ppid: 1,
            first_seen_ns: 1,
            peak_private: peak,
            ..Counters::default()
        };
        st.comm[..5].copy_from_slice(b"brief");
        st.calls.brk = brk;
        st.calls.mmap = mmap;
        st.rss.anon = anon;
        st
    }

    fn round(t: &mut ProcessTable, t_mono: f64, procs: Vec<(u32, Counters)>) -> RoundReport {
        t.update(
            &Snapshot {
                t_mono,
                procs,
                counters: Default::default(),
                procs_capacity: 100,
                go: Vec::new(),
            },
            None,
        )
    }

    #[test]
    fn a_process_never_sampled_alive_keeps_its_exact_counts() {
        let mut t = ProcessTable::new(TableLimits::default(), 0.0);
        round(&mut t, 1.0, vec![]);
        let ended = t.end(42, 1.3, Some(&stats(500, 50, 8 << 20, 9 << 20)), None);
        assert_eq!(
            ended,
            Some(Ended {
                pid: 42,
                first_sight: true
            })
        );
        let p = t.find(42).expect("kept");
        assert!(p.brief && p.exited_at == Some(1.3));
        assert_eq!(p.comm, "brief");
        assert_eq!(p.counters.calls.brk, 500);
        assert!(p.counters.exited, "its sample says exited");
        assert_eq!(p.fine.len(), 1);
        assert_eq!(t.calls_total.brk, 500);
        assert_eq!(t.calls_total.mmap, 50);
        assert_eq!((t.ended.count, t.ended.brief), (1, 1));
        assert_eq!(t.ended.largest[0].peak_private_bytes, 9 << 20);
        assert_eq!(t.ended.largest[0].calls.brk, 500);
        // An exit without counters (the kernel never had an entry) adds nothing.
        assert_eq!(t.end(43, 1.4, None, None), None);
        assert_eq!(t.ended.count, 1);
    }

    #[test]
    fn a_live_process_ends_with_its_final_counters_after_its_last_sample() {
        let mut t = ProcessTable::new(TableLimits::default(), 0.0);
        round(&mut t, 1.0, vec![(7, stats(10, 1, 1 << 20, 1 << 20))]);
        round(&mut t, 2.0, vec![(7, stats(20, 2, 2 << 20, 2 << 20))]);
        let ended = t.end(7, 2.5, Some(&stats(35, 3, 3 << 20, 3 << 20)), None);
        assert_eq!(ended.map(|e| e.first_sight), Some(false));
        let p = t.find(7).unwrap();
        assert!(!p.brief);
        assert_eq!(p.fine.len(), 3, "the end is a sample of its own");
        assert_eq!(p.last().unwrap().private(), 3 << 20);
        assert_eq!(t.calls_total.brk, 35, "deltas, not sums of totals");
        // A round that read the entry after the exit's timestamp: never a step back in time.
        let mut t = ProcessTable::new(TableLimits::default(), 0.0);
        round(&mut t, 3.0, vec![(8, stats(1, 0, 0, 0))]);
        t.end(8, 2.9999, Some(&stats(1, 0, 0, 0)), None);
        let p = t.find(8).unwrap();
        assert!(p.fine.iter().map(|s| s.t).is_sorted());
    }

    #[test]
    fn a_process_missing_from_a_round_did_not_change_in_it() {
        // Its kernel entry went with its exit; the exit event comes after the round.
        let mut t = ProcessTable::new(TableLimits::default(), 0.0);
        round(&mut t, 1.0, vec![(3, stats(1, 0, 0, 0))]);
        assert!(t.live[&3].changed);
        round(&mut t, 2.0, vec![]);
        assert!(!t.live[&3].changed, "no sample to write for it this round");
    }

    #[test]
    fn reclaim_of_an_ended_process_reaches_the_next_round() {
        let mut t = ProcessTable::new(TableLimits::default(), 0.0);
        let mut st = stats(0, 0, 0, 0);
        round(&mut t, 1.0, vec![(5, st)]);
        t.live.get_mut(&5).unwrap().cgroup_raw = Some("4:memory:/job\n".into());
        st.reclaim_runs = 3;
        st.reclaim_ns = 900;
        t.end(5, 1.5, Some(&st), None);
        let r = round(&mut t, 2.0, vec![]);
        assert_eq!(r.reclaim["/job"].runs, 3, "{r:?}");
        assert!(round(&mut t, 3.0, vec![]).reclaim.is_empty(), "once");
    }

    #[test]
    fn brief_processes_never_push_a_history_out_of_the_graveyard() {
        let limits = TableLimits {
            graveyard: 4,
            ..TableLimits::default()
        };
        let mut t = ProcessTable::new(limits, 0.0);
        round(&mut t, 1.0, vec![(1, stats(1, 0, 1 << 20, 1 << 20))]);
        t.end(1, 1.5, Some(&stats(1, 0, 1 << 20, 1 << 20)), None);
        for pid in 100..1100 {
            t.end(pid, 2.0, Some(&stats(1, 0, 0, 0)), None);
        }
        assert_eq!(t.graveyard.len(), 4);
        assert!(t.find(1).is_some_and(|p| !p.brief), "the history stays");
        assert!(t.find(1099).is_some(), "the newest brief one too");
        assert_eq!((t.ended.count, t.ended.brief), (1001, 1000));
    }
}
