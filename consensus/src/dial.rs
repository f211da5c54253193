//! Dialing another process's raft service: the gRPC endpoint for a store
//! or member address, with mutual TLS when the cluster runs it. The raft
//! transport and the snapshot stream both dial through it.

use std::time::Duration;

use nokv_proto::tls::{url_for, TlsConfig};

/// The endpoint for dialing another process's raft service at `addr`,
/// with mutual TLS when `tls` is given.
pub(crate) fn endpoint(
    addr: &str,
    tls: Option<&TlsConfig>,
) -> Result<tonic::transport::Endpoint, String> {
    let mut e = tonic::transport::Endpoint::from_shared(url_for(addr, tls))
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        e = e
            .tls_config(tls.client())
            .map_err(|e| format!("tls config for {addr}: {e}"))?;
    }
    Ok(e)
}
