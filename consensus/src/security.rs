//! The `security` config section of the node and the coordinator, and the
//! admin restriction: mutating admin RPCs answered only for clients whose
//! certificate's subject CN is on a list.
//!
//! The TLS material itself (loading PEM, tonic's client and server
//! configs) is [`nokv_proto::tls`], shared with the client SDK. This
//! module owns what only servers need: the config keys and the
//! [`AdminGuard`] wrapped around a generated gRPC server. Which of a
//! service's methods count as mutating is listed here too
//! ([`NODE_ADMIN_METHODS`], [`COORDINATOR_ADMIN_METHODS`]), next to the
//! check, so the docs and the tests have one place to look.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{ready, Either, Ready};
use nokv_proto::tls::TlsConfig;
use serde::{Deserialize, Serialize};
use tonic::codegen::{http, Service};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

/// The `security` section: with it, every gRPC surface of the process
/// (serving and dialing) uses mutual TLS under one CA. Without it,
/// everything is plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// CA certificate (PEM) that peers' and clients' certificates must
    /// chain to.
    pub ca_path: PathBuf,
    /// This process's certificate (PEM), presented when serving and when
    /// dialing other processes.
    pub cert_path: PathBuf,
    /// The certificate's private key (PEM).
    pub key_path: PathBuf,
    /// When non-empty, mutating admin RPCs are answered only for clients
    /// whose certificate's subject CN is in this list; reads stay open to
    /// every client the CA vouches for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_allowed_cn: Vec<String>,
    /// Serve the HTTP status port (`/metrics`, `/health`, `/ready`,
    /// `/status`) over HTTPS with this certificate. No client certificate
    /// is required there, so probes and scrapers only need the CA.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub status_tls: bool,
}

impl SecurityConfig {
    /// Reads the TLS material the section names.
    ///
    /// # Errors
    /// [`crate::Error::Tls`] naming the file that is missing or bad.
    pub fn load(&self) -> crate::Result<Security> {
        let tls = TlsConfig::from_pem_files(&self.ca_path, &self.cert_path, &self.key_path)?;
        let status_tls = if self.status_tls {
            Some(tls.https_server()?)
        } else {
            None
        };
        Ok(Security {
            tls,
            admin: AdminPolicy::new(self.admin_allowed_cn.clone()),
            status_tls,
        })
    }
}

/// A loaded `security` section.
#[derive(Debug, Clone)]
pub struct Security {
    /// The CA, certificate and key, for serving and dialing.
    pub tls: TlsConfig,
    /// Who may call mutating admin RPCs.
    pub admin: AdminPolicy,
    /// The status port's HTTPS config, when `status_tls` is set.
    pub status_tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// Methods of the node's `Admin` service that change the cluster; every
/// other method (region status, statistics, diagnostics) is a read.
pub const NODE_ADMIN_METHODS: &[&str] = &[
    "/adminpb.Admin/SplitRegion",
    "/adminpb.Admin/MergeRegion",
    "/adminpb.Admin/TransferLeader",
    "/adminpb.Admin/ChangePeer",
];

/// Methods of the `Coordinator` service that only operators call and that
/// change the cluster. Mutating calls that nodes make (bootstrap, store
/// registration, heartbeats, split ids) are not on the list: nodes are
/// vouched for by the CA alone.
pub const COORDINATOR_ADMIN_METHODS: &[&str] = &[
    "/coordinatorpb.Coordinator/AddOperator",
    "/coordinatorpb.Coordinator/CancelOperator",
    "/coordinatorpb.Coordinator/PauseScheduler",
    "/coordinatorpb.Coordinator/DeleteStore",
    "/coordinatorpb.Coordinator/UpdateGcSafePoint",
];

/// Which client certificates may call mutating admin RPCs. An empty list
/// restricts nothing.
#[derive(Debug, Clone, Default)]
pub struct AdminPolicy {
    allowed_cn: Arc<[String]>,
}

impl AdminPolicy {
    /// A policy admitting the subject CNs in `allowed_cn` (empty: anyone).
    pub fn new(allowed_cn: Vec<String>) -> Self {
        AdminPolicy {
            allowed_cn: allowed_cn.into(),
        }
    }

    /// Whether the policy restricts anything.
    pub fn is_restricting(&self) -> bool {
        !self.allowed_cn.is_empty()
    }

    /// Decides one call of the mutating method `method` from a client
    /// whose certificate carries the subject CNs `peer_cns` (`None`: no
    /// certificate at all).
    ///
    /// # Errors
    /// `PERMISSION_DENIED` saying which CNs are admitted and what the
    /// client presented.
    pub fn check(&self, method: &str, peer_cns: Option<&[String]>) -> Result<(), Status> {
        if !self.is_restricting() {
            return Ok(());
        }
        let name = method.rsplit('/').next().unwrap_or(method);
        let allowed = self.allowed_cn.join(", ");
        match peer_cns {
            Some(cns) if cns.iter().any(|cn| self.allowed_cn.contains(cn)) => Ok(()),
            Some(cns) if !cns.is_empty() => Err(Status::permission_denied(format!(
                "{name} is an admin operation: it needs a client certificate with subject CN \
                 in [{allowed}], and this client's CN is {}",
                cns.join(", ")
            ))),
            _ => Err(Status::permission_denied(format!(
                "{name} is an admin operation: it needs a client certificate with subject CN \
                 in [{allowed}], and this client presented none with a CN"
            ))),
        }
    }
}

/// Subject common names of a DER certificate (empty if it has none or
/// does not parse).
pub fn common_names(der: &[u8]) -> Vec<String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The subject CNs of the client certificate on a request that came in
/// over TLS; `None` without TLS or without a client certificate.
fn peer_common_names(ext: &http::Extensions) -> Option<Vec<String>> {
    let info = ext.get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    let leaf = certs.first()?;
    Some(common_names(leaf.as_ref()))
}

/// A generated gRPC server with the [`AdminPolicy`] in front of its
/// mutating methods: those calls are answered `PERMISSION_DENIED` unless
/// the client's certificate is admitted; every other call passes through.
#[derive(Debug, Clone)]
pub struct AdminGuard<S> {
    inner: S,
    policy: AdminPolicy,
    methods: &'static [&'static str],
}

impl<S> AdminGuard<S> {
    /// Guards `methods` (full gRPC paths, `/package.Service/Method`) of
    /// `inner` with `policy`.
    pub fn new(inner: S, policy: AdminPolicy, methods: &'static [&'static str]) -> Self {
        AdminGuard {
            inner,
            policy,
            methods,
        }
    }
}

impl<S: NamedService> NamedService for AdminGuard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for AdminGuard<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>, Error = Infallible>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Self::Response, Infallible>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if self.policy.is_restricting() && self.methods.contains(&path) {
            let cns = peer_common_names(req.extensions());
            if let Err(status) = self.policy.check(path, cns.as_deref()) {
                tracing::info!(method = path, error = %status.message(), "admin call refused");
                return Either::Left(ready(Ok(status.into_http())));
            }
        }
        Either::Right(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_cn(cn: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn common_names_come_from_the_subject() {
        assert_eq!(common_names(&cert_with_cn("nokv-admin")), ["nokv-admin"]);
        assert!(common_names(b"not a certificate").is_empty());
    }

    #[test]
    fn an_empty_list_restricts_nothing() {
        let p = AdminPolicy::default();
        assert!(!p.is_restricting());
        assert!(p.check("/adminpb.Admin/SplitRegion", None).is_ok());
    }

    #[test]
    fn only_listed_cns_pass_and_refusals_explain() {
        let p = AdminPolicy::new(vec!["nokv-admin".into()]);
        let admin = ["nokv-admin".to_string()];
        let other = ["nokv-client".to_string()];
        assert!(p.check("/adminpb.Admin/SplitRegion", Some(&admin)).is_ok());
        let denied = p
            .check("/adminpb.Admin/SplitRegion", Some(&other))
            .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied.message().contains("SplitRegion")
                && denied.message().contains("[nokv-admin]")
                && denied.message().contains("nokv-client"),
            "{}",
            denied.message()
        );
        let anonymous = p.check("/adminpb.Admin/ChangePeer", None).unwrap_err();
        assert_eq!(anonymous.code(), tonic::Code::PermissionDenied);
        assert!(anonymous.message().contains("presented none"));
    }

    #[test]
    fn guarded_methods_name_real_services() {
        for m in NODE_ADMIN_METHODS {
            let service = m.trim_start_matches('/').split('/').next();
            assert_eq!(
                service,
                Some(nokv_proto::adminpb::admin_server::SERVICE_NAME),
                "{m}"
            );
        }
        for m in COORDINATOR_ADMIN_METHODS {
            let service = m.trim_start_matches('/').split('/').next();
            assert_eq!(
                service,
                Some(nokv_proto::coordinatorpb::coordinator_server::SERVICE_NAME),
                "{m}"
            );
        }
    }

    #[test]
    fn yaml_needs_all_three_paths_and_rejects_unknown_keys() {
        let ok: SecurityConfig =
            serde_yaml::from_str("ca_path: a\ncert_path: b\nkey_path: c\n").expect("parse");
        assert!(ok.admin_allowed_cn.is_empty());
        assert!(serde_yaml::from_str::<SecurityConfig>("ca_path: a\ncert_path: b\n").is_err());
        assert!(serde_yaml::from_str::<SecurityConfig>(
            "ca_path: a\ncert_path: b\nkey_path: c\nbogus: 1\n"
        )
        .is_err());
    }

    #[test]
    fn load_names_the_missing_file() {
        let c = SecurityConfig {
            ca_path: "/nonexistent/ca.crt".into(),
            cert_path: "/nonexistent/tls.crt".into(),
            key_path: "/nonexistent/tls.key".into(),
            admin_allowed_cn: Vec::new(),
            status_tls: false,
        };
        let e = c.load().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.crt"), "{e}");
    }
}
