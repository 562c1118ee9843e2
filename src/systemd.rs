//! systemd integration: readiness, status, watchdog, reload/stop
//! notifications and socket activation.
//!
//! Everything is a no-op when the service manager did not ask for it
//! (`NOTIFY_SOCKET`, `WATCHDOG_USEC`, `LISTEN_FDS` unset), so the same binary
//! runs unchanged by hand, in a container or under systemd. The `sd-notify`
//! crate does the protocol; this module decides *when* to speak.

use std::os::fd::{FromRawFd, RawFd};
use std::time::Duration;

use sd_notify::NotifyState;

use crate::pool::Pool;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// READY=1: sent only once every worker has said hello.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// RELOADING=1 with the MONOTONIC_USEC newer systemd (Type=notify-reload)
/// requires; older versions ignore the extra field.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// STOPPING=1 at the start of a graceful stop.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// One STATUS= line with the pool's live counts.
pub fn status_line(pool: &Pool) -> String {
    let slots = pool.slots();
    let ready = slots
        .iter()
        .filter(|s| s.state == crate::pool::SlotState::Ready)
        .count();
    let busy = slots
        .iter()
        .filter(|s| s.state == crate::pool::SlotState::Busy)
        .count();
    let served: u64 = slots.iter().map(|s| s.requests).sum();
    let restarts: u64 = slots.iter().map(|s| s.restarts).sum();
    format!(
        "workers: {ready} ready, {busy} busy of {}; requests served: {served}; worker restarts: {restarts}; queued: {}",
        slots.len(),
        pool.queued()
    )
}

/// Keeps STATUS= current and, when systemd armed a watchdog, sends
/// WATCHDOG=1 every half period. Both run on the front's runtime: if its
/// event loop stalls, the pings stop and systemd restarts the service.
pub fn spawn_heartbeat(pool: Pool) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let period = match watchdog {
        Some(w) => (w / 2).clamp(Duration::from_millis(10), Duration::from_secs(2)),
        None => Duration::from_secs(2),
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = String::new();
        loop {
            tick.tick().await;
            let status = status_line(&pool);
            let mut states = Vec::with_capacity(2);
            if watchdog.is_some() {
                states.push(NotifyState::Watchdog);
            }
            if status != last_status {
                states.push(NotifyState::Status(&status));
            }
            if !states.is_empty() {
                send(&states);
            }
            last_status = status;
        }
    });
}

/// The listening socket systemd passed (socket activation), if any.
pub fn activated_listener() -> std::io::Result<Option<std::net::TcpListener>> {
    let mut fds = sd_notify::listen_fds()?;
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    if fds.len() > 0 {
        tracing::warn!("systemd passed {} sockets; using the first", fds.len() + 1);
    }
    Ok(Some(take_listener(fd)?))
}

fn take_listener(fd: RawFd) -> std::io::Result<std::net::TcpListener> {
    // SAFETY: systemd hands the process the descriptors from 3 on, checked
    // against LISTEN_PID by `listen_fds`; nothing else in the process owns
    // this descriptor, so the listener becomes its only owner.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(true)?;
    Ok(listener)
}
