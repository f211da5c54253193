//! TLS for the CLI: the `--tls-*` flags and which certificate `nokv`
//! presents. The throwaway CA `nokv cluster up --tls` creates is
//! [`crate::cluster::certs`]'s.
//!
//! The client certificate comes from `--tls-ca`, `--tls-cert` and
//! `--tls-key` (or `NOKV_TLS_CA`, `NOKV_TLS_CERT`, `NOKV_TLS_KEY`) when
//! given. Otherwise, when the
//! local cluster in `NOKV_CLUSTER_DIR` (default `nokv-cluster`) runs with
//! TLS and serves one of the coordinators the command talks to, its admin
//! certificate is used, so commands against a `cluster up --tls` cluster
//! need no flags. Anything else is plaintext.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use nokv_client::TlsConfig;

use crate::cluster::certs::ClientFiles;
use crate::cluster::process::ClusterState;

/// The CLI's TLS flags as given (flag or environment), global to every
/// command.
#[derive(Debug, Default, Clone, Args)]
pub struct TlsFlags {
    /// CA certificate (PEM) of a cluster running with TLS.
    #[arg(
        id = "tls_ca",
        long = "tls-ca",
        global = true,
        env = "NOKV_TLS_CA",
        value_name = "PATH"
    )]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) signed by that CA.
    #[arg(
        id = "tls_cert",
        long = "tls-cert",
        global = true,
        env = "NOKV_TLS_CERT",
        value_name = "PATH"
    )]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        id = "tls_key",
        long = "tls-key",
        global = true,
        env = "NOKV_TLS_KEY",
        value_name = "PATH"
    )]
    pub key: Option<PathBuf>,
}

/// Where the CLI's TLS settings came from, for `nokv config show`.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsSource {
    /// No TLS.
    Plaintext,
    /// `--tls-ca/--tls-cert/--tls-key` or their environment variables.
    Flags(ClientFiles),
    /// The local cluster's state file in this directory.
    Cluster(PathBuf, ClientFiles),
}

impl TlsFlags {
    /// Decides where the TLS material comes from (see the module doc);
    /// reads no certificate yet.
    ///
    /// # Errors
    /// When only some of the three flags are given.
    pub fn source(&self, coordinators: &[String]) -> anyhow::Result<TlsSource> {
        match (&self.ca, &self.cert, &self.key) {
            (Some(ca), Some(cert), Some(key)) => Ok(TlsSource::Flags(ClientFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            })),
            (None, None, None) => Ok(cluster_files(coordinators)
                .map(|(dir, files)| TlsSource::Cluster(dir, files))
                .unwrap_or(TlsSource::Plaintext)),
            _ => bail!(
                "--tls-ca, --tls-cert and --tls-key (NOKV_TLS_CA, NOKV_TLS_CERT, NOKV_TLS_KEY) \
                 go together"
            ),
        }
    }

    /// The TLS material to dial with, if any.
    ///
    /// # Errors
    /// Partial flags, or files that are missing or hold no valid PEM.
    pub fn load(&self, coordinators: &[String]) -> anyhow::Result<Option<TlsConfig>> {
        match self.source(coordinators)? {
            TlsSource::Plaintext => Ok(None),
            TlsSource::Flags(f) => Ok(Some(f.load()?)),
            TlsSource::Cluster(dir, f) => Ok(Some(f.load().with_context(|| {
                format!("client certificate of the TLS cluster in {}", dir.display())
            })?)),
        }
    }
}

/// The admin certificate of the local TLS cluster serving one of
/// `coordinators`, if there is one.
fn cluster_files(coordinators: &[String]) -> Option<(PathBuf, ClientFiles)> {
    let dir = std::env::var_os("NOKV_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nokv-cluster"));
    let state = ClusterState::load(&dir).ok()?;
    let files = state.tls?;
    state
        .coordinators
        .iter()
        .any(|c| coordinators.contains(c))
        .then_some((dir, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_go_together() {
        let partial = TlsFlags {
            ca: Some("ca.crt".into()),
            ..Default::default()
        };
        let e = partial.source(&[]).unwrap_err().to_string();
        assert!(e.contains("go together"), "{e}");
        let all = TlsFlags {
            ca: Some("ca".into()),
            cert: Some("c".into()),
            key: Some("k".into()),
        };
        assert!(matches!(all.source(&[]), Ok(TlsSource::Flags(_))));
        let missing = all.load(&[]).unwrap_err().to_string();
        assert!(missing.contains("reading CA certificate ca"), "{missing}");
    }
}
