//! The image's `Dockerfile`, parsed by Docker's own parser and checked
//! against the binaries and chart it serves.
//!
//! CI has no Docker engine, so the image is built by hand (docs/deploy.md);
//! what CI can do is parse the file the way `docker build` does. The parser
//! is BuildKit's (`github.com/moby/buildkit/frontend/dockerfile/parser`,
//! v0.12.5), from the `dockerfile` wheel on PyPI, which bundles it as a
//! native module. The wheel is installed once with pinned hashes into
//! `~/.cache/nokv-tools/` (`nokv_tests::pinned_wheel`); if it cannot be
//! installed the tests fail and say why, they never pass without parsing.
//! PyPI has the wheel for x86_64 Linux and for macOS, not for aarch64 Linux,
//! where these tests fail at the install.
//!
//! BuildKit's parser checks syntax (continuations, heredocs, JSON forms,
//! `ENV`/`LABEL` pairs) but accepts any instruction name, so the tests also
//! check every instruction against the parser's list of known ones. Then
//! the facts that matter: two stages, `build` then `runtime`; the build
//! runs `cargo build --release --locked` for `nokv-coordinator`,
//! `nokv-node` and `nokv` and the runtime copies exactly those from it into
//! `/usr/local/bin` (the chart runs them by name); the final user is a
//! numeric non-root uid, the one the chart's pod security context names;
//! `EXPOSE` covers the ports of `NodeConfig::default()` and
//! `CoordinatorConfig::default()`; the Rust image is no older than the
//! workspace's `rust-version`.
//!
//! Shell commands inside `RUN` are read as whitespace-separated words
//! split at `&&`, `||` and `;`, with no quoting; a `RUN` written otherwise
//! makes these tests fail, not misread it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use nokv_coordinator::CoordinatorConfig;
use nokv_node::NodeConfig;
use nokv_tests::pinned_wheel::{python, PinnedWheel};
use serde::Deserialize;

/// The pinned `dockerfile` release and the BuildKit parser it bundles.
const PARSER_VERSION: &str = "3.4.0";
const BUILDKIT_VERSION: &str = "v0.12.5";

/// sha256 of every `dockerfile` 3.4.0 wheel we accept, from PyPI:
/// manylinux x86_64, macOS 14 arm64 and macOS 13 x86_64.
const WHEEL_SHA256: &[&str] = &[
    "b95102bd82e6f67c836186b51c13114aa586a20e8cb6441bde24d4070542009d",
    "a4549d4f038483c25906d4fec56bb6ffe82ae26e0f80a15f2c0fedbb50712053",
    "ed33446a76007cbb3f28c247f189cc06db34667d4f59a398a5c44912d7c13f36",
];

/// The `dockerfile` wheel; the probe proves its native parser loads here.
const PARSER_WHEEL: PinnedWheel = PinnedWheel {
    package: "dockerfile",
    version: PARSER_VERSION,
    sha256: WHEEL_SHA256,
    marker: "dockerfile-3.4.0.dist-info/RECORD",
    probe: Some((
        "import dockerfile; print(dockerfile.parse_string('FROM scratch')[0].cmd)",
        "FROM",
    )),
};

/// The binaries the image ships, as the chart and docs name them.
const BINARIES: [&str; 3] = ["nokv-coordinator", "nokv-node", "nokv"];

/// Where the runtime stage puts them: on the Debian image's `PATH`, so the
/// chart's `command: ["nokv-node"]` finds them.
const BIN_DIR: &str = "/usr/local/bin/";

/// Reads a Dockerfile on stdin, parses it with BuildKit's parser and prints
/// `{known, instructions}` as JSON. A parse error goes to stderr with exit
/// code 3.
const DRIVER: &str = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import dockerfile
try:
    parsed = dockerfile.parse_string(sys.stdin.read())
except dockerfile.GoParseError as e:
    print(f"GoParseError: {e}", file=sys.stderr)
    sys.exit(3)
json.dump({
    "known": sorted(dockerfile.all_cmds()),
    "instructions": [
        {"cmd": c.cmd, "flags": list(c.flags), "value": list(c.value),
         "line": c.start_line}
        for c in parsed
    ],
}, sys.stdout)
"#;

/// One instruction as BuildKit parsed it.
#[derive(Debug, Deserialize)]
struct Instruction {
    /// The instruction name in capitals (`FROM`, `RUN`).
    cmd: String,
    /// `--name=value` flags (`--from=build`).
    flags: Vec<String>,
    /// The arguments: one string for a shell-form `RUN`, one per word or
    /// JSON element otherwise.
    value: Vec<String>,
    /// First line in the file, for failure messages.
    line: u64,
}

#[derive(Debug, Deserialize)]
struct Parsed {
    /// Every instruction name the parser knows, lowercase.
    known: Vec<String>,
    instructions: Vec<Instruction>,
}

/// One `FROM` and the instructions up to the next.
struct Stage<'a> {
    name: String,
    base: String,
    instructions: Vec<&'a Instruction>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The directory holding the installed `dockerfile` package, installing
/// it on first use.
fn parser_site() -> &'static Path {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| match PARSER_WHEEL.install() {
        Ok(site) => site,
        Err(why) => panic!(
            "cannot get BuildKit's Dockerfile parser (dockerfile {PARSER_VERSION} from PyPI, \
             which bundles buildkit {BUILDKIT_VERSION}); the Dockerfile tests need it and do \
             not skip: {why}"
        ),
    })
}

/// Parses `text` with BuildKit's parser; `Err` carries the parser's message.
fn try_parse(text: &str) -> Result<Parsed, String> {
    use std::io::Write as _;
    let mut child = python()
        .arg("-c")
        .arg(DRIVER)
        .arg(parser_site())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs the parser driver");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("Dockerfile written to the driver");
    let out = child.wait_with_output().expect("driver finishes");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.code() == Some(3) {
        return Err(stderr);
    }
    assert!(out.status.success(), "parser driver failed: {stderr}");
    Ok(serde_json::from_slice(&out.stdout).expect("driver prints JSON"))
}

/// The repository's Dockerfile, parsed once and checked to use only
/// instructions the parser knows, each with arguments.
fn dockerfile() -> &'static Parsed {
    static PARSED: OnceLock<Parsed> = OnceLock::new();
    PARSED.get_or_init(|| {
        let path = repo_root().join("Dockerfile");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let parsed =
            try_parse(&text).unwrap_or_else(|e| panic!("BuildKit refuses the Dockerfile: {e}"));
        assert!(!parsed.known.is_empty(), "the parser lists no instructions");
        for i in &parsed.instructions {
            assert!(
                parsed.known.contains(&i.cmd.to_lowercase()),
                "line {}: {} is not a Dockerfile instruction (known: {:?})",
                i.line,
                i.cmd,
                parsed.known
            );
            assert!(
                i.value.iter().any(|v| !v.trim().is_empty()),
                "line {}: {} has no arguments",
                i.line,
                i.cmd
            );
        }
        parsed
    })
}

/// The stages in order; instructions before the first `FROM` (global
/// `ARG`s) belong to none.
fn stages(parsed: &Parsed) -> Vec<Stage<'_>> {
    let mut stages: Vec<Stage> = Vec::new();
    for i in &parsed.instructions {
        if i.cmd == "FROM" {
            let (base, name) = match i.value.as_slice() {
                [base, as_, name] if as_.eq_ignore_ascii_case("as") => (base, name.clone()),
                [base] => (base, String::new()),
                other => panic!("line {}: unexpected FROM {other:?}", i.line),
            };
            stages.push(Stage {
                name,
                base: base.clone(),
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(i);
        } else {
            assert_eq!(
                i.cmd, "ARG",
                "line {}: only ARG may precede the first FROM",
                i.line
            );
        }
    }
    stages
}

fn stage<'a>(stages: &'a [Stage<'a>], name: &str) -> &'a Stage<'a> {
    stages
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no stage named {name}"))
}

impl Stage<'_> {
    fn all(&self, cmd: &'static str) -> impl Iterator<Item = &Instruction> {
        self.instructions
            .iter()
            .copied()
            .filter(move |i| i.cmd == cmd)
    }

    /// Every shell command of the stage's shell-form `RUN`s, as words.
    fn shell_commands(&self) -> Vec<Vec<&str>> {
        let mut commands = Vec::new();
        for run in self.all("RUN") {
            let [script] = run.value.as_slice() else {
                panic!(
                    "line {}: expected a shell-form RUN, got {:?}",
                    run.line, run.value
                );
            };
            let mut current = Vec::new();
            for word in script.split_whitespace() {
                if ["&&", "||", ";"].contains(&word) {
                    commands.push(std::mem::take(&mut current));
                } else {
                    current.push(word);
                }
            }
            commands.push(current);
        }
        commands.retain(|c| !c.is_empty());
        commands
    }
}

/// The port of a `host:port` listen address.
fn port(address: &str) -> String {
    address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{address} has no port"))
        .1
        .to_string()
}

#[test]
fn the_dockerfile_parses_into_a_build_stage_and_a_final_runtime_stage() {
    let stages = stages(dockerfile());
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["build", "runtime"],
        "stages in order; the last one is the image"
    );
    assert!(
        stage(&stages, "build").base.starts_with("rust:"),
        "the build stage starts from the Rust image"
    );
    assert!(
        stage(&stages, "runtime").base.starts_with("debian:"),
        "the runtime stage starts from Debian"
    );
}

#[test]
fn the_build_stage_compiles_the_three_binaries_release_and_locked() {
    let stages = stages(dockerfile());
    let commands = stage(&stages, "build").shell_commands();
    let build = commands
        .iter()
        .find(|c| c.starts_with(&["cargo", "build"]))
        .unwrap_or_else(|| panic!("no `cargo build` in the build stage: {commands:?}"));
    for flag in ["--release", "--locked"] {
        assert!(
            build.contains(&flag),
            "`cargo build` lacks {flag}: {build:?}"
        );
    }
    let bins: Vec<&str> = build
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1])
        .collect();
    for bin in BINARIES {
        assert!(
            bins.contains(&bin),
            "`cargo build` does not build {bin}: {build:?}"
        );
    }
}

#[test]
fn the_runtime_stage_copies_the_three_binaries_from_the_build_stage_onto_the_path() {
    let stages = stages(dockerfile());
    let build_commands = stage(&stages, "build").shell_commands();
    let copies: Vec<&Instruction> = stage(&stages, "runtime")
        .all("COPY")
        .filter(|c| c.flags.iter().any(|f| f == "--from=build"))
        .collect();
    assert!(
        !copies.is_empty(),
        "the runtime stage copies nothing from build"
    );
    for bin in BINARIES {
        // Either the COPY names the binary, or it copies a directory the
        // build stage `cp`s the release binary into.
        let copied = copies.iter().any(|c| {
            let Some((dest, sources)) = c.value.split_last() else {
                return false;
            };
            dest == BIN_DIR
                && sources.iter().any(|src| {
                    src.rsplit('/').next() == Some(bin)
                        || (src.ends_with('/')
                            && build_commands.iter().any(|cmd| {
                                cmd.first() == Some(&"cp")
                                    && cmd.last().map(|d| d.trim_end_matches('/'))
                                        == Some(src.trim_end_matches('/'))
                                    && cmd.contains(&format!("target/release/{bin}").as_str())
                            }))
                })
        });
        assert!(
            copied,
            "the runtime stage does not copy {bin} from the build stage into {BIN_DIR}; \
             COPY --from=build: {:?}; build commands: {build_commands:?}",
            copies.iter().map(|c| &c.value).collect::<Vec<_>>()
        );
    }
}

#[test]
fn the_image_runs_as_the_non_root_numeric_user_the_chart_expects() {
    let stages = stages(dockerfile());
    let runtime = stages.last().expect("a final stage");
    let user = runtime
        .all("USER")
        .last()
        .unwrap_or_else(|| panic!("the final stage sets no USER, so it runs as root"));
    let spec = &user.value[0];
    let (uid, gid) = spec.split_once(':').unwrap_or((spec, ""));
    // Numeric, so Kubernetes' runAsNonRoot can verify it without
    // reading /etc/passwd.
    let uid: u64 = uid
        .parse()
        .unwrap_or_else(|_| panic!("line {}: USER {spec} is not a numeric uid", user.line));
    assert_ne!(uid, 0, "line {}: USER {spec} is root", user.line);

    let values_path = repo_root().join("charts/nokv/values.yaml");
    let values: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(&values_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", values_path.display())),
    )
    .expect("values.yaml is YAML");
    let pod = &values["podSecurityContext"];
    assert_eq!(pod["runAsNonRoot"], true);
    assert_eq!(
        pod["runAsUser"].as_u64(),
        Some(uid),
        "the chart's runAsUser is the image's uid"
    );
    if !gid.is_empty() {
        let gid: u64 = gid
            .parse()
            .unwrap_or_else(|_| panic!("line {}: USER {spec}: gid is not numeric", user.line));
        assert_ne!(gid, 0, "line {}: USER {spec} is in group root", user.line);
        assert_eq!(
            pod["runAsGroup"].as_u64(),
            Some(gid),
            "the chart's runAsGroup is the image's gid"
        );
    }
}

#[test]
fn expose_covers_the_default_ports_of_node_and_coordinator() {
    let stages = stages(dockerfile());
    let exposed: Vec<String> = stages
        .last()
        .expect("a final stage")
        .all("EXPOSE")
        .flat_map(|e| e.value.iter())
        .map(|p| p.trim_end_matches("/tcp").to_string())
        .collect();
    let node = NodeConfig::default();
    let coordinator = CoordinatorConfig::default();
    for (what, address) in [
        ("node listen", &node.listen),
        ("node status_listen", &node.status_listen),
        ("coordinator listen", &coordinator.listen),
        ("coordinator status_listen", &coordinator.status_listen),
    ] {
        assert!(
            exposed.contains(&port(address)),
            "EXPOSE {exposed:?} lacks the default {what} port ({address})"
        );
    }
}

#[test]
fn the_rust_image_is_no_older_than_the_workspace_rust_version() {
    let parsed = dockerfile();
    let rust_image = parsed
        .instructions
        .iter()
        .take_while(|i| i.cmd == "ARG")
        .find_map(|i| i.value[0].strip_prefix("RUST_VERSION="))
        .expect("a global ARG RUST_VERSION=<default>");
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let floor = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .expect("the workspace sets rust-version")
        .trim_matches('"');
    let version = |v: &str| -> Vec<u64> {
        v.split('.')
            .map(|n| n.parse().unwrap_or_else(|_| panic!("{v} is not a version")))
            .collect()
    };
    assert!(
        version(rust_image) >= version(floor),
        "the Dockerfile builds with Rust {rust_image}, below the workspace's rust-version {floor}"
    );
}

#[test]
fn a_broken_dockerfile_is_refused_with_the_parsers_reason() {
    // The parser is live, and its refusals reach the test as errors.
    let unterminated = try_parse("FROM scratch\nRUN <<EOF\ntrue\n")
        .expect_err("an unterminated heredoc is refused");
    assert!(
        unterminated.contains("unterminated heredoc"),
        "{unterminated}"
    );
    let env =
        try_parse("FROM scratch\nENV ONLY_A_NAME\n").expect_err("ENV without a value is refused");
    assert!(env.contains("ENV must have two arguments"), "{env}");
    let empty = try_parse("").expect_err("an empty file is refused");
    assert!(empty.contains("no instructions"), "{empty}");
}
