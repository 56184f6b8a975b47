//! The commands: each builds its sink and runs the one session pipeline into it, with one
//! context of lookups built here (`report` over a replayed trace instead of the kernel).
pub mod daemon;
pub mod node_text;
pub mod oom;
pub mod profile;
pub mod record;
pub mod report;
pub mod top;

use std::time::Duration;

use crate::{
    cli::{self, Cli, Command, TraceArgs},
    kernel::loader::{self, LoadOptions, MapSizes},
    model::table::TableLimits,
    pipeline::context::Context,
    pipeline::filter::Filter,
    pipeline::session::Session,
    pipeline::source::live::LiveOptions,
    util::error::UsageError,
};

/// Run one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Report(args) = &cli.command {
        // Offline: no privileges, no kernel, no runtime needed.
        let opts = report::ReportOptions {
            filter: Filter {
                pids: args.pids.clone(),
                comms: args.comms.clone(),
                namespaces: args.namespaces.clone(),
                pods: args.pods.clone(),
                containers: args.containers.clone(),
            },
            format: args.format,
            lenient: args.lenient,
            limit: args.limit,
            plot: args.plot.clone(),
            flame: args.flame.clone(),
            risk: args.risk.config(),
        };
        return report::run(&args.trace, &opts);
    }
    loader::check_host_root(&cli.global.host_root)?;
    // The lookups every stage and sink shares: cgroup roots, limits, identities.
    let ctx = Context::new(&cli.global.host_root, cli.global.cri_socket.as_deref());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Top {
                trace,
                risk,
                once,
                duration,
                format,
                window,
                limit,
            } => {
                if once && duration.is_none() {
                    return Err(UsageError::new(
                        "--once needs --duration (e.g. --once --duration 10s)",
                    )
                    .into());
                }
                let window = window
                    .or(if once { duration } else { None })
                    .unwrap_or(Duration::from_secs(60));
                let mut sink =
                    top::TopSink::new(filter(&trace), format, once, window.as_secs_f64(), limit)?;
                let mut session = Session::live(live_options(&cli.global, &trace, duration), ctx)?
                    .with_risk_config(risk.config());
                session.run(&mut sink).await?;
            }
            Command::Record {
                trace,
                risk,
                output,
                duration,
                stacks,
                stack_rate,
            } => {
                let mut sink = record::RecordSink::create(&output, filter(&trace))?;
                let mut opts = live_options(&cli.global, &trace, duration);
                if stacks {
                    opts.load.stacks_mean_bytes = Some(stack_rate);
                    opts.stacks = Some(crate::pipeline::source::stacks::StackOptions {
                        mean_bytes: stack_rate,
                        every: STACKS_EVERY.max(trace.interval),
                        only: filter(&trace),
                    });
                }
                let mut session = Session::live(opts, ctx)?.with_risk_config(risk.config());
                let reason = session.run(&mut sink).await?;
                log::info!("recording ended ({})", reason.as_str());
            }
            Command::Profile {
                pids,
                comms,
                pods,
                duration,
                output,
                rate,
                format,
                top,
            } => {
                let opts = profile::ProfileOptions {
                    targets: profile::Targets { pids, comms, pods },
                    duration,
                    output,
                    mean_bytes: rate,
                    format,
                    top,
                };
                profile::run(&cli.global.host_root, &opts).await?;
            }
            Command::Oom {
                trace,
                format,
                duration,
            } => {
                let mut sink = oom::OomSink::new(format, filter(&trace));
                let mut session = Session::live(live_options(&cli.global, &trace, duration), ctx)?;
                session.run(&mut sink).await?;
            }
            Command::Daemon {
                trace,
                risk,
                listen,
                top,
                exit_min_peak_mib,
                auto_profiles,
                auto_profile_seconds,
            } => {
                let listener = daemon::bind(listen).await?;
                let captures = daemon::Captures::default();
                let shared = std::sync::Arc::new(std::sync::Mutex::new(daemon::Shared {
                    metrics: daemon::metrics::Metrics::new(),
                    ready: std::sync::atomic::AtomicBool::new(false),
                }));
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
                let server = daemon::serve(
                    listener,
                    shared.clone(),
                    stop_rx,
                    cli.global.host_root.clone(),
                    captures.clone(),
                );
                log::info!(
                    "serving /metrics, /healthz, /readyz, /debug/pprof/growth?pid=N&seconds=S and /debug/pprof/leaks on {listen}"
                );
                let auto = daemon::auto_profile::AutoProfiler::new(
                    daemon::auto_profile::AutoConfig {
                        keep: auto_profiles as usize,
                        seconds: auto_profile_seconds,
                        rate: 512 << 10,
                    },
                    cli.global.host_root.clone(),
                    captures.busy,
                    captures.store,
                );
                let mut sink = daemon::DaemonSink::new(
                    shared,
                    top as usize,
                    exit_min_peak_mib.saturating_mul(1 << 20),
                    auto,
                    filter(&trace),
                );
                let mut session = Session::live(live_options(&cli.global, &trace, None), ctx)?
                    .with_risk_config(risk.config());
                session.run(&mut sink).await?;
                drop(session); // detaches the programs
                let _ = stop_tx.send(());
                let _ = server.await;
            }
            // Handled above, before the runtime starts.
            Command::Report(_) => {}
        }
        Ok(())
    })
}

/// How often `record --stacks` reads and names the sampled stacks: a process that lives
/// longer than this has its stacks named while it runs.
const STACKS_EVERY: Duration = Duration::from_secs(2);

fn filter(t: &TraceArgs) -> Filter {
    Filter {
        pids: t.pids.clone(),
        comms: t.comms.clone(),
        namespaces: t.namespaces.clone(),
        pods: t.pods.clone(),
        containers: t.containers.clone(),
    }
}

fn live_options(g: &cli::Global, t: &TraceArgs, duration: Option<Duration>) -> LiveOptions {
    LiveOptions {
        load: LoadOptions {
            host_root: g.host_root.clone(),
            rss_source: t.rss_source,
            sizes: MapSizes {
                procs: t.procs_map_size,
                ringbuf_bytes: t.ringbuf_bytes,
            },
            oom: true,
            stacks_mean_bytes: None,
        },
        interval: t.interval,
        duration,
        max_overhead: t.max_overhead,
        pressure_trigger: t.pressure_trigger.clone(),
        oom_score_adj: t.oom_score_adj,
        limits: TableLimits {
            live: t.procs_map_size as usize,
            ..TableLimits::default()
        },
        stacks: None,
    }
}
