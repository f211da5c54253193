//! End-to-end: `nokv cluster up` in the foreground stops every process it
//! started when it receives Ctrl-C (SIGINT), and exits cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nokv_tests::{bin_dir, free_port_base};

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    exists
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
}

#[test]
fn ctrl_c_stops_a_foreground_cluster_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("cluster");
    let mut up = Command::new(bin_dir().join("nokv"))
        .args([
            "cluster",
            "up",
            "--coordinators",
            "1",
            "--nodes",
            "1",
            "--data-dir",
        ])
        .arg(&data)
        .args(["--port-base", &free_port_base().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nokv cluster up");
    let pid = up.id();
    let stdout = up.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let healthy = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("cluster healthy"));
    assert!(healthy, "cluster up never reported healthy");

    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("cluster.json")).expect("state file"),
    )
    .expect("json");
    let pids: Vec<u32> = state["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .map(|p| p["pid"].as_u64().expect("pid") as u32)
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| alive(*p)));

    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = up.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = up.kill();
            for p in &pids {
                unsafe {
                    libc::kill(*p as libc::pid_t, libc::SIGKILL);
                }
            }
            panic!("nokv cluster up did not exit after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "every cluster process stopped"
    );
    assert!(!data.join("cluster.json").exists(), "state file removed");
}
