//! TLS for the CLI: which certificate `nokv` presents, and the throwaway
//! CA and certificates `nokv cluster up --tls` creates.
//!
//! The client certificate comes from `--tls-ca`, `--tls-cert` and
//! `--tls-key` (or `NOKV_TLS_CA`, `NOKV_TLS_CERT`, `NOKV_TLS_KEY`) when
//! given. Otherwise, when the
//! local cluster in `NOKV_CLUSTER_DIR` (default `nokv-cluster`) runs with
//! TLS and serves one of the coordinators the command talks to, its admin
//! certificate is used, so commands against a `cluster up --tls` cluster
//! need no flags. Anything else is plaintext.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nokv_client::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};

use crate::cluster::process::ClusterState;

/// Subject CN of the admin client certificate `cluster up --tls` creates
/// (the one the CLI uses for that cluster).
pub const ADMIN_CN: &str = "nokv-admin";
/// Subject CN of the second, non-admin client certificate it creates, for
/// trying the admin restriction.
pub const CLIENT_CN: &str = "nokv-client";

/// The client certificate files of a cluster started with `--tls`, as the
/// cluster's state file records them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientFiles {
    /// The cluster's CA certificate.
    pub ca: PathBuf,
    /// The admin client certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl ClientFiles {
    /// Loads the files.
    pub fn load(&self) -> anyhow::Result<TlsConfig> {
        Ok(TlsConfig::from_pem_files(&self.ca, &self.cert, &self.key)?)
    }
}

/// The CLI's TLS flags as given (flag or environment).
#[derive(Debug, Default, Clone)]
pub struct TlsFlags {
    /// `--tls-ca`
    pub ca: Option<PathBuf>,
    /// `--tls-cert`
    pub cert: Option<PathBuf>,
    /// `--tls-key`
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

/// Creates (or reuses, when a previous `--tls` run left them) a throwaway
/// CA and certificates in `dir`: `ca.crt`; `server.crt`/`server.key`,
/// valid for `host`, `127.0.0.1` and `localhost`, shared by every process
/// for serving and for dialing each other; `admin.crt`/`admin.key`
/// (CN [`ADMIN_CN`]) and `client.crt`/`client.key` (CN [`CLIENT_CN`]).
/// The CA's key is never written: nothing else can be signed later.
///
/// # Errors
/// Files that cannot be written.
pub fn generate(dir: &Path, host: &str) -> anyhow::Result<ClientFiles> {
    let dir = std::path::absolute(dir)?;
    let admin = ClientFiles {
        ca: dir.join("ca.crt"),
        cert: dir.join("admin.crt"),
        key: dir.join("admin.key"),
    };
    let all = [
        "ca.crt",
        "server.crt",
        "server.key",
        "admin.crt",
        "admin.key",
        "client.crt",
        "client.key",
    ];
    if all.iter().all(|f| dir.join(f).is_file()) {
        return Ok(admin);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "nokv throwaway CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    write(&dir.join("ca.crt"), &ca_cert.pem(), false)?;

    let mut names = vec![host.to_string(), "127.0.0.1".into(), "localhost".into()];
    names.sort();
    names.dedup();
    let leaf = |cn: &str, names: Vec<String>, server: bool, stem: &str| -> anyhow::Result<()> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(names)?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = if server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        let cert = p.signed_by(&key, &issuer)?;
        write(&dir.join(format!("{stem}.crt")), &cert.pem(), false)?;
        write(&dir.join(format!("{stem}.key")), &key.serialize_pem(), true)
    };
    leaf("nokv-server", names, true, "server")?;
    leaf(ADMIN_CN, Vec::new(), false, "admin")?;
    leaf(CLIENT_CN, Vec::new(), false, "client")?;
    Ok(admin)
}

/// The `security` config section of every process of a TLS cluster whose
/// material is in `dir` (as [`generate`] left it).
pub fn security_section(dir: &Path) -> anyhow::Result<serde_yaml::Mapping> {
    let dir = std::path::absolute(dir)?;
    let mut m = serde_yaml::Mapping::new();
    for (k, f) in [
        ("ca_path", "ca.crt"),
        ("cert_path", "server.crt"),
        ("key_path", "server.key"),
    ] {
        m.insert(k.into(), dir.join(f).to_string_lossy().to_string().into());
    }
    // Nothing in plaintext: the status ports speak HTTPS too.
    m.insert("status_tls".into(), true.into());
    Ok(m)
}

fn write(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if secret { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_material_loads_and_is_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = generate(dir.path(), "127.0.0.1").expect("generate");
        files.load().expect("admin certificate loads");
        let ca_before = std::fs::read(&files.ca).expect("ca");
        TlsConfig::from_pem_files(
            &files.ca,
            &dir.path().join("server.crt"),
            &dir.path().join("server.key"),
        )
        .expect("server certificate loads");
        let again = generate(dir.path(), "127.0.0.1").expect("generate again");
        assert_eq!(again, files);
        assert_eq!(std::fs::read(&files.ca).expect("ca"), ca_before, "reused");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.key)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private keys are not readable by others");
    }

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
