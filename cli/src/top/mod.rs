//! `nokv top`: a live terminal dashboard of the cluster.
//!
//! Built as Model / Update / View:
//!
//! - [`state`]: the Model, plain data (last survey, events, rates,
//!   selection); no I/O.
//! - [`update`]: `Message`s (keys, poll results, ticks) applied to the
//!   state; never draws or calls the cluster.
//! - [`diff`]: events derived from two successive surveys.
//! - [`view`]: render functions, one file per view, styles from [`theme`].
//! - [`fetch`]: the background poller sending `Message::Data`.
//!
//! This file owns the terminal: raw mode and the alternate screen on entry,
//! and their undoing on every way out (return, error, panic).

mod diff;
mod fetch;
mod state;
mod theme;
mod update;
mod view;

use std::io::{IsTerminal, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use crossterm::event::{self, Event as TermEvent};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use nokv_client::CoordinatorClient;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::{mpsc, watch};

use state::{Mode, Settings, State};
use update::{update, Message};

/// `nokv top` flags.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Seconds between polls of the cluster.
    ///
    /// Each poll asks the coordinator for members, stores and regions and
    /// every store for its replicas' raft status and its /metrics. Default
    /// 2; at least 0.2.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0, value_parser = parse_interval)]
    pub interval: f64,
    /// Log entries a peer may trail its leader before it is highlighted.
    ///
    /// Lag is the leader's last index minus the peer's matched index (or,
    /// when the leader did not answer, commit minus applied). Default 100,
    /// the catch-up margin the node itself uses.
    #[arg(long, value_name = "ENTRIES", default_value_t = 100)]
    pub lag_threshold: u64,
}

fn parse_interval(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(v.is_finite() && v >= 0.2) {
        return Err("must be at least 0.2 seconds".into());
    }
    Ok(v)
}

/// Runs the dashboard until the user quits.
///
/// # Errors
/// When stdout is not a terminal, the terminal cannot be set up, or the
/// poller stops unexpectedly. Cluster failures are shown on screen, not
/// returned.
pub async fn run(client: CoordinatorClient, args: TopArgs) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!("nokv top needs a terminal (stdin and stdout must be a tty)");
    }
    let settings = Settings {
        interval: Duration::from_secs_f64(args.interval),
        lag_threshold: args.lag_threshold,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut poller = tokio::spawn(fetch::run(client, settings.interval, tx.clone(), stop_rx));
    let input_stop = Arc::new(AtomicBool::new(false));
    let input = std::thread::Builder::new()
        .name("nokv-top-input".into())
        .spawn({
            let tx = tx.clone();
            let stop = input_stop.clone();
            move || read_input(tx, stop)
        })
        .context("starting the input thread")?;
    drop(tx);

    let result = match TerminalGuard::enter() {
        Ok(mut term) => {
            let r = event_loop(
                &mut term.terminal,
                State::new(settings),
                &mut rx,
                &mut poller,
            )
            .await;
            term.restore();
            r
        }
        Err(e) => Err(e),
    };
    input_stop.store(true, Ordering::Release);
    let _ = stop_tx.send(true);
    if !poller.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut poller).await;
        poller.abort();
    }
    // The input thread wakes at least every 100 ms to see the stop flag.
    let _ = input.join();
    result
}

async fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    mut state: State,
    rx: &mut mpsc::UnboundedReceiver<Message>,
    poller: &mut tokio::task::JoinHandle<()>,
) -> anyhow::Result<()> {
    let size = terminal.size()?;
    update(&mut state, Message::Resize(size.height));
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    loop {
        terminal.draw(|f| view::render(&state, f))?;
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => bail!("input and poller both stopped"),
            },
            _ = clock.tick() => Message::Tick(crate::survey::now_ms()),
            r = &mut *poller => bail!("the poller stopped: {r:?}"),
        };
        let mut next = Some(msg);
        while let Some(m) = next {
            next = update(&mut state, m);
        }
        if state.mode == Mode::Quit {
            return Ok(());
        }
    }
}

/// Reads terminal events on a thread of its own (crossterm's reads block)
/// and forwards keys and resizes until `stop` is set or the receiver goes.
fn read_input(tx: mpsc::UnboundedSender<Message>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => return,
        }
        let msg = match event::read() {
            Ok(TermEvent::Key(k)) => Message::Key(k),
            Ok(TermEvent::Resize(_, rows)) => Message::Resize(rows),
            Ok(_) => continue,
            Err(_) => return,
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Raw mode, alternate screen and a hidden cursor while alive. Restores
/// the terminal when dropped, and installs a panic hook that restores it
/// before the panic message is printed, so a crash never leaves the shell
/// unusable.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Whether the terminal is in dashboard mode (restoring twice is harmless
/// but would print the escape sequences twice).
static ACTIVE: AtomicBool = AtomicBool::new(false);

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        install_panic_hook();
        ACTIVE.store(true, Ordering::Release);
        let setup = || -> std::io::Result<Terminal<CrosstermBackend<Stdout>>> {
            terminal::enable_raw_mode()?;
            // Cleared by hand: `Terminal::clear` asks the terminal for the
            // cursor position, which not every terminal answers.
            execute!(
                std::io::stdout(),
                EnterAlternateScreen,
                cursor::Hide,
                terminal::Clear(terminal::ClearType::All)
            )?;
            Terminal::new(CrosstermBackend::new(std::io::stdout()))
        };
        match setup() {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore_terminal();
                Err(anyhow::Error::new(e).context("setting up the terminal"))
            }
        }
    }

    fn restore(&mut self) {
        restore_terminal();
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Leaves the alternate screen, shows the cursor and leaves raw mode, once.
fn restore_terminal() {
    if ACTIVE.swap(false, Ordering::AcqRel) {
        let mut out = std::io::stdout();
        let _ = execute!(out, LeaveAlternateScreen, cursor::Show);
        let _ = terminal::disable_raw_mode();
        let _ = out.flush();
    }
}

fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_panic_restores_the_terminal() {
        install_panic_hook();
        ACTIVE.store(true, Ordering::Release);
        let r = std::panic::catch_unwind(|| panic!("boom"));
        assert!(r.is_err());
        assert!(
            !ACTIVE.load(Ordering::Acquire),
            "the panic hook ran restore_terminal"
        );
    }

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        top: TopArgs,
    }

    #[test]
    fn interval_must_be_a_sane_number() {
        assert_eq!(
            T::try_parse_from(["t"]).map(|t| t.top.interval).ok(),
            Some(2.0)
        );
        assert_eq!(
            T::try_parse_from(["t", "--interval", "0.5"])
                .map(|t| t.top.interval)
                .ok(),
            Some(0.5)
        );
        for bad in ["0", "0.1", "-1", "nan", "inf", "x"] {
            assert!(
                T::try_parse_from(["t", "--interval", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
