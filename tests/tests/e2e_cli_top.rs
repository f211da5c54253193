//! `nokv top` end to end: the real binary in a pseudo-terminal (80×24)
//! against a live cluster. The test keeps a small screen model of what the
//! program drew (cursor moves and text; colours ignored) and waits on what
//! an operator would see: store rows, then region rows, then a store
//! reported unreachable after kill -9. It quits with `q` and checks the exit
//! code and that the terminal was handed back (alternate screen left,
//! cursor shown).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nokv_tests::{bin_dir, LocalCluster};

const ROWS: u16 = 24;
const COLS: u16 = 80;

/// Leaves the alternate screen (crossterm `LeaveAlternateScreen`).
const LEAVE_ALTERNATE_SCREEN: &str = "\x1b[?1049l";
/// Enters it.
const ENTER_ALTERNATE_SCREEN: &str = "\x1b[?1049h";
/// Shows the cursor (crossterm `cursor::Show`).
const SHOW_CURSOR: &str = "\x1b[?25h";

/// A process on the slave side of a pseudo-terminal, its output collected
/// by a reader thread. Dropping it kills the process if it still runs.
struct PtyProcess {
    child: Child,
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl PtyProcess {
    fn spawn(mut cmd: Command) -> PtyProcess {
        let mut master: libc::c_int = -1;
        let mut slave: libc::c_int = -1;
        let size = libc::winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: the out-pointers are valid for writes, name and termios
        // may be null, and winsize points to a live value.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors we now own.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup slave")))
            .stdout(Stdio::from(slave.try_clone().expect("dup slave")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec. A new
        // session makes the pty the controlling terminal, so /dev/tty (which
        // crossterm opens for the size and for input) is this pty.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn in pty");
        // The Command holds the parent's copies of the slave; close them so
        // the master reads EOF/EIO once the child is gone.
        drop(cmd);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut rd = master.try_clone().expect("dup master");
        let sink = output.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match rd.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink
                        .lock()
                        .expect("output lock")
                        .extend_from_slice(&buf[..n]),
                }
            }
        });
        PtyProcess {
            child,
            master,
            output,
            reader: Some(reader),
        }
    }

    fn output(&self) -> Vec<u8> {
        self.output.lock().expect("output lock").clone()
    }

    fn screen(&self) -> Screen {
        Screen::from_output(&self.output())
    }

    /// Polls the screen every 100 ms until `f` finds what it looks for;
    /// fails with the screen and the raw output's tail after `timeout`.
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Screen) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(&self.screen()) {
                return v;
            }
            if Instant::now() > deadline {
                let out = self.output();
                let tail =
                    String::from_utf8_lossy(&out[out.len().saturating_sub(2000)..]).to_string();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; screen:\n{}\nraw tail: {tail:?}",
                    self.screen().text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn send(&mut self, keys: &str) {
        self.master
            .write_all(keys.as_bytes())
            .expect("write to pty");
    }

    /// Waits for the process to exit, at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(r) = self.reader.take() {
                    r.join().expect("reader thread");
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "nokv top did not exit within {timeout:?}; screen:\n{}",
                self.screen().text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PtyProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What an 80×24 terminal shows after the given output: printable text at
/// the cursor, `ESC [ row ; col H` moves, `ESC [ 2 J` clears. Other escape
/// sequences (colours, modes) are skipped.
struct Screen {
    cells: Vec<Vec<char>>,
}

impl Screen {
    fn from_output(out: &[u8]) -> Screen {
        let mut s = Screen {
            cells: vec![vec![' '; COLS as usize]; ROWS as usize],
        };
        let text = String::from_utf8_lossy(out);
        let mut chars = text.chars().peekable();
        let (mut row, mut col) = (0usize, 0usize);
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => match chars.next() {
                    Some('[') => {
                        let mut params = String::new();
                        let mut fin = '\0';
                        for p in chars.by_ref() {
                            if ('\x40'..='\x7e').contains(&p) {
                                fin = p;
                                break;
                            }
                            params.push(p);
                        }
                        match fin {
                            'H' => {
                                let mut it =
                                    params.split(';').map(|n| n.parse::<usize>().unwrap_or(1));
                                row = it.next().unwrap_or(1).saturating_sub(1);
                                col = it.next().unwrap_or(1).saturating_sub(1);
                            }
                            'J' if params == "2" => {
                                for r in &mut s.cells {
                                    r.fill(' ');
                                }
                            }
                            _ => {}
                        }
                    }
                    // ESC ( B and similar two-character sequences.
                    Some('(') | Some(')') => {
                        chars.next();
                    }
                    _ => {}
                },
                '\r' => col = 0,
                '\n' => row += 1,
                c if c.is_control() => {}
                c => {
                    if row < ROWS as usize && col < COLS as usize {
                        s.cells[row][col] = c;
                    }
                    col += 1;
                }
            }
        }
        s
    }

    fn rows(&self) -> Vec<String> {
        self.cells.iter().map(|r| r.iter().collect()).collect()
    }

    fn text(&self) -> String {
        self.rows().join("\n")
    }

    /// The first row containing every part.
    fn row_with(&self, parts: &[&str]) -> Option<String> {
        self.rows()
            .into_iter()
            .find(|r| parts.iter().all(|p| r.contains(p)))
    }
}

#[test]
fn top_shows_stores_and_regions_survives_a_dead_store_and_restores_the_terminal() {
    let c = LocalCluster::start(1, 3, "");
    let nodes: Vec<_> = c
        .processes()
        .into_iter()
        .filter(|p| p.kind == "node")
        .collect();
    assert_eq!(nodes.len(), 3);

    let mut cmd = Command::new(bin_dir().join("nokv"));
    cmd.args(["top", "--interval", "0.5", "--timeout", "3"])
        .env("NOKV_COORDINATOR", c.coordinators.join(","))
        .env("TERM", "xterm-256color");
    let mut top = PtyProcess::spawn(cmd);

    // Overview: one row per store, each Up.
    top.wait_for(
        "a row per store in the Overview",
        Duration::from_secs(30),
        |s| {
            nodes
                .iter()
                .all(|n| s.row_with(&[&n.grpc, "Up"]).is_some())
                .then_some(())
        },
    );

    // Regions: the single region spans the key space and has a leader.
    top.send("2");
    let region_row = top.wait_for(
        "a region row in the Regions view",
        Duration::from_secs(30),
        |s| s.row_with(&["-inf", "+inf", "*", "v1/c"]),
    );
    assert!(
        region_row.trim_start().starts_with('1'),
        "region 1: {region_row}"
    );
    assert!(
        top.screen()
            .row_with(&["PEER", "MATCH", "COMMIT", "APPLIED"])
            .is_some(),
        "peer progress of the selected region:\n{}",
        top.screen().text()
    );

    // A store killed under it is reported on the status line; the
    // dashboard keeps running and keeps showing the region.
    let victim = nodes.last().expect("a node");
    c.kill9(&victim.name);
    let status = top.wait_for(
        "the dead store on the status line",
        Duration::from_secs(30),
        |s| {
            let last = s.rows().last().cloned().unwrap_or_default();
            last.contains("unreachable").then_some(last)
        },
    );
    assert!(status.contains("store "), "{status}");
    assert!(
        top.child.try_wait().expect("try_wait").is_none(),
        "nokv top must keep running while a store is down"
    );
    assert!(top.screen().row_with(&["-inf", "+inf"]).is_some());

    top.send("q");
    let status = top.wait(Duration::from_secs(10));
    assert!(status.success(), "nokv top exited with {status}");
    let out = String::from_utf8_lossy(&top.output()).to_string();
    let entered = out
        .rfind(ENTER_ALTERNATE_SCREEN)
        .expect("entered the alternate screen");
    let left = out
        .rfind(LEAVE_ALTERNATE_SCREEN)
        .expect("left the alternate screen");
    let shown = out.rfind(SHOW_CURSOR).expect("showed the cursor");
    assert!(
        left > entered && shown > entered,
        "restored after the last entry"
    );
    assert!(!out.contains("panicked"), "{out}");
}

#[test]
fn top_without_a_terminal_fails_with_one_line() {
    let out = Command::new(bin_dir().join("nokv"))
        .args(["top", "--coordinator", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .expect("run nokv top");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("needs a terminal"), "{err}");
    assert!(out.stdout.is_empty(), "nothing drawn without a terminal");
}

#[test]
fn top_follows_a_new_coordinator_leader_and_says_so() {
    let c = LocalCluster::start(3, 1, "");
    let mut cmd = Command::new(bin_dir().join("nokv"));
    cmd.args(["top", "--interval", "0.5", "--timeout", "3"])
        .env("NOKV_COORDINATOR", c.coordinators.join(","))
        .env("TERM", "xterm-256color");
    let mut top = PtyProcess::spawn(cmd);

    // The Overview marks the leading member with `*`.
    let leader_of = |s: &Screen| -> Option<String> {
        let row = s.row_with(&["coordinators "])?;
        row.split_whitespace()
            .find_map(|w| w.strip_suffix('*'))
            .map(str::to_string)
    };
    let old = top.wait_for("the coordinator leader", Duration::from_secs(30), leader_of);
    c.kill9(&old);
    let new = top.wait_for(
        "another coordinator leader in the Overview",
        Duration::from_secs(60),
        |s| leader_of(s).filter(|l| *l != old),
    );
    assert!(
        top.child.try_wait().expect("try_wait").is_none(),
        "nokv top keeps running through the election"
    );

    // The Events view names the change.
    top.send("4");
    let want = format!("coordinator leader {old} -> ");
    let event = top.wait_for("the leader change event", Duration::from_secs(10), |s| {
        s.row_with(&[&want])
    });
    assert!(
        event.contains(&new) || event.contains("none"),
        "the event names the new leader or the gap before it: {event}"
    );

    top.send("q");
    let status = top.wait(Duration::from_secs(10));
    assert!(status.success(), "nokv top exited with {status}");
}
