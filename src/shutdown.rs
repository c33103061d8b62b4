//! Signals and the order of a clean stop.
//!
//! SIGTERM or SIGINT cancels the root token. Then, in this order:
//! 1. sources stop reading (sockets closed; nothing new is accepted);
//! 2. a pipeline whose source stopped closes its open batch and dispatches every queued batch;
//! 3. sinks finish in-flight and queued sends, retrying as usual, until `shutdown_timeout`;
//! 4. at the deadline the abort token is cancelled: retries stop and what is left is counted;
//! 5. the file source's `Checkpointer::flush_final` writes the last checkpoint, which covers
//!    everything AWS acknowledged during the drain (acks dropped at the deadline keep theirs);
//! 6. the process exits 0.
//!
//! Every task is spawned on one [`TaskTracker`], so "everything finished" is one `wait`.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Cancels `token` on the first SIGTERM or SIGINT.
pub async fn cancel_on_signal(token: CancellationToken) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("Could not install signal handlers; SIGTERM will kill the agent.");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received; flushing and stopping."),
        _ = int.recv() => tracing::info!("SIGINT received; flushing and stopping."),
        _ = token.cancelled() => return,
    }
    token.cancel();
}

/// Waits for every tracked task after the root token was cancelled; at `timeout`, cancels
/// `abort` so retries give up, then allows one more second for them to count what they drop.
pub async fn drain(tracker: &TaskTracker, abort: &CancellationToken, timeout: Duration) {
    tracker.close();
    if tokio::time::timeout(timeout, tracker.wait()).await.is_ok() {
        return;
    }
    tracing::warn!(
        ?timeout,
        "Shutdown timeout reached; dropping what is still unsent."
    );
    abort.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), tracker.wait()).await;
}
