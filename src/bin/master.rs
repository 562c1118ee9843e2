//! `pixfork`: the front/master process. Thin on purpose: parse flags, set up
//! logging and the runtime, bind, and hand over to `pixfork::master::run`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use pixfork::config::{LogFormat, MasterArgs};
use pixfork::master::{self, MasterError, EXIT_BOOT_ERROR};

/// Text logs on a terminal get colours and timestamps; under systemd
/// (JOURNAL_STREAM set) the journal adds its own timestamps, so lines are
/// plain; JSON is for log shippers.
fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIXFORK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text if journal => builder.with_ansi(false).without_time().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn main() -> ExitCode {
    let args = MasterArgs::parse();
    init_logs(args.log_format);
    // Short scheduler slices for the front's threads (pixfork::sched says
    // why): the main thread here, every runtime thread as it starts.
    let slice = u64::try_from(args.front_slice.as_nanos()).unwrap_or(u64::MAX);
    if slice > 0 {
        if let Err(e) = pixfork::sched::request_slice(slice) {
            tracing::warn!("the kernel refused a {slice} ns scheduler slice: {e}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || {
            if slice > 0 {
                // Refused or not, the thread runs; the main thread logged why.
                let _ = pixfork::sched::request_slice(slice);
            }
        })
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pixfork: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = match pixfork::systemd::activated_listener()? {
            Some(l) => {
                tracing::info!("using the socket passed by the service manager");
                tokio::net::TcpListener::from_std(l)?
            }
            None => tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?,
        };
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "listening");
        master::run(args, listener)
            .await
            .map_err(anyhow::Error::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("pixfork: {e}");
            match e.downcast_ref::<MasterError>() {
                Some(MasterError::Boot(_) | MasterError::WorkerBinMissing(_)) => {
                    ExitCode::from(EXIT_BOOT_ERROR)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}
