//! A server process's two ports: the gRPC port (mutual TLS when the
//! `security` section is set) and the HTTP status port (HTTPS with
//! `security.status_tls`). [`Listeners::bind`] loads the TLS material
//! before binding anything, so bad material stops a process before it
//! takes a port or talks to anyone. Which services run on the gRPC port
//! and what `/status` says are the process's business; this module only
//! owns how the ports are opened, served and drained.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nokv_proto::tls::TlsConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::ServerConfig;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::Server;
use tracing::info;

use crate::security::{AdminPolicy, SecurityConfig};
use crate::shutdown::{grace_deadline, signalled};
use crate::status::{self, StatusState};
use crate::{Error, Result};

/// Both ports of a process, bound, with its `security` section loaded.
pub struct Listeners {
    /// The gRPC port and its server builder.
    pub grpc: GrpcListener,
    /// The HTTP status port.
    pub status: StatusListener,
    /// The TLS material for dialing other processes (the same the gRPC
    /// port serves with); `None`: plaintext.
    pub tls: Option<TlsConfig>,
    /// Who may call mutating admin RPCs (restricts nothing without
    /// `security.admin_allowed_cn`).
    pub admin: AdminPolicy,
}

impl Listeners {
    /// Loads `security` (when set), then binds `listen` (gRPC) and
    /// `status_listen` (HTTP status), in that order.
    ///
    /// # Errors
    /// [`Error::Tls`] naming the file that is missing or bad,
    /// [`Error::ServerTls`] when the gRPC server refuses the material,
    /// [`Error::Io`] when an address cannot be bound.
    pub async fn bind(
        security: Option<&SecurityConfig>,
        listen: &str,
        status_listen: &str,
    ) -> Result<Self> {
        let security = security.map(SecurityConfig::load).transpose()?;
        let tls = security.as_ref().map(|s| s.tls.clone());
        let status_tls = security.as_ref().and_then(|s| s.status_tls.clone());
        let mut server = Server::builder();
        if let Some(tls) = &tls {
            server = server.tls_config(tls.server()).map_err(Error::ServerTls)?;
        }
        let admin = security.map(|s| s.admin).unwrap_or_default();
        let grpc = TcpListener::bind(listen).await?;
        let status = TcpListener::bind(status_listen).await?;
        Ok(Listeners {
            grpc: GrpcListener {
                listener: grpc,
                server,
            },
            status: StatusListener {
                listener: status,
                tls: status_tls,
            },
            tls,
            admin,
        })
    }
}

/// The bound gRPC port, with a server builder that has TLS when it is on.
pub struct GrpcListener {
    listener: TcpListener,
    server: Server,
}

impl GrpcListener {
    /// The bound address (the real port when listening on port 0).
    ///
    /// # Errors
    /// The socket's own error, which does not happen for a bound listener.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves the services `services` adds to the server builder, with
    /// `TCP_NODELAY` on every connection, until `stop` fires; then drains
    /// for at most `grace` (raft streams from peers never end on their own)
    /// and returns.
    ///
    /// # Errors
    /// [`Error::Serve`] when the server fails.
    pub async fn serve(
        mut self,
        services: impl FnOnce(&mut Server) -> Router,
        stop: watch::Receiver<bool>,
        grace: Duration,
    ) -> Result<()> {
        let served = services(&mut self.server).serve_with_incoming_shutdown(
            TcpIncoming::from(self.listener).with_nodelay(Some(true)),
            signalled(stop.clone()),
        );
        tokio::select! {
            r = served => r.map_err(Error::Serve)?,
            _ = grace_deadline(stop, grace) => info!("grace period over; closing remaining streams"),
        }
        Ok(())
    }
}

/// The bound HTTP status port, with its HTTPS config when
/// `security.status_tls` is set.
pub struct StatusListener {
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
}

impl StatusListener {
    /// The bound address (the real port when listening on port 0).
    ///
    /// # Errors
    /// The socket's own error, which does not happen for a bound listener.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves the status routes ([`status::serve`]) on a task of its own
    /// until the task is aborted; an error ending it is logged.
    pub fn spawn(self, state: StatusState) -> JoinHandle<()> {
        tokio::spawn(async move {
            if let Err(e) = status::serve(self.listener, state, self.tls).await {
                tracing::error!(error = %e, "status server stopped");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plaintext_ports_bind_to_any_free_port() {
        let l = Listeners::bind(None, "127.0.0.1:0", "127.0.0.1:0")
            .await
            .expect("binds");
        assert!(l.tls.is_none() && !l.admin.is_restricting());
        let grpc = l.grpc.local_addr().expect("addr");
        let status = l.status.local_addr().expect("addr");
        assert_ne!(grpc.port(), 0);
        assert_ne!(grpc.port(), status.port());
    }

    #[tokio::test]
    async fn bad_tls_material_fails_before_binding() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let security = SecurityConfig {
            ca_path: "/nonexistent/ca.crt".into(),
            cert_path: "/nonexistent/tls.crt".into(),
            key_path: "/nonexistent/tls.key".into(),
            admin_allowed_cn: Vec::new(),
            status_tls: false,
        };
        // The port is in use, yet the TLS error is what comes back.
        let err = Listeners::bind(Some(&security), &addr, &addr)
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, Error::Tls(_)), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
    }

    #[tokio::test]
    async fn a_port_in_use_is_an_io_error() {
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let err = Listeners::bind(None, &addr, "127.0.0.1:0")
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, Error::Io(_)), "{err:?}");
    }
}
