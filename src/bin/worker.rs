//! `pixfork-worker`: one image worker, started by `pixfork` with a connected
//! Unix socket. See `pixfork::worker` for the loop.

use clap::Parser;
use pixfork::worker::WorkerArgs;
use pixfork::worker::{self, ExitOnOom, WorkerError, EXIT_AFTER_PANIC};

/// Failed allocations exit with a code of their own (see `ExitOnOom`).
#[global_allocator]
static ALLOC: ExitOnOom = ExitOnOom;

fn main() {
    let args = WorkerArgs::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match worker::serve(&args) {
        Ok(()) => {}
        Err(WorkerError::Panicked(msg)) => {
            tracing::error!(
                slot = args.slot,
                "engine panicked, exiting for a fresh worker: {msg}"
            );
            std::process::exit(EXIT_AFTER_PANIC);
        }
        Err(e) => {
            eprintln!("pixfork-worker (slot {}): {e}", args.slot);
            std::process::exit(1);
        }
    }
}
