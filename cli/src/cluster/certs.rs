//! The throwaway CA and certificates `nokv cluster up --tls` creates, and
//! the `security` config section that points every process at them.
//! Which certificate a command presents is [`crate::tls`]'s business.

use std::path::{Path, PathBuf};

use anyhow::Context;
use nokv_client::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};

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
}
