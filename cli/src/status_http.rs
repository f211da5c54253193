//! The HTTP status port every NoKV process serves (`/status`, `/metrics`),
//! read the way the CLI needs it: one bounded GET, and the few request
//! counters `nokv top` turns into read and write rates.
//!
//! The port speaks HTTP/1.x (axum), plain or inside TLS when the process
//! sets `security.status_tls`; a request line and a read to the end of the
//! connection is all it takes, so no HTTP client crate is pulled into the
//! CLI for two GETs.

use std::time::Duration;

use anyhow::{bail, Context};
use nokv_proto::tls::TlsConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// Largest body read from a status port. `/metrics` of a busy node is a few
/// hundred KiB; anything far beyond that is not a NoKV status port.
const MAX_BODY_BYTES: usize = 8 << 20;

/// GETs `path` from the status address `addr` (`host:port`) and returns the
/// body of a 200 answer. With `tls` (the cluster's CA and the client's
/// certificate) it tries HTTPS first and plain HTTP when the port does not
/// speak TLS.
///
/// # Errors
/// Connection failure, `timeout` passing, a failed TLS handshake, a non-200
/// status or an answer that is not HTTP.
pub async fn get(
    addr: &str,
    path: &str,
    timeout: Duration,
    tls: Option<&TlsConfig>,
) -> anyhow::Result<String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::time::timeout(timeout, get_unbounded(addr, path, tls))
        .await
        .map_err(|_| anyhow::anyhow!("GET {scheme}://{addr}{path} timed out"))?
}

async fn get_unbounded(addr: &str, path: &str, tls: Option<&TlsConfig>) -> anyhow::Result<String> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let Some(tls) = tls else {
        return exchange(tcp, addr, path).await;
    };
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .with_context(|| format!("{host} is not a host name or address"))?;
    let connector = tokio_rustls::TlsConnector::from(tls.https_client()?);
    match connector.connect(name, tcp).await {
        Ok(stream) => exchange(stream, addr, path).await,
        // A cluster with TLS on gRPC may still serve its status ports as
        // plain HTTP (`status_tls` off, the chart's default). Nothing
        // secret is sent or read there, so ask again that way.
        Err(_) => {
            let tcp = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            exchange(tcp, addr, path).await
        }
    }
}

async fn exchange(
    mut s: impl AsyncRead + AsyncWrite + Unpin,
    addr: &str,
    path: &str,
) -> anyhow::Result<String> {
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    let read = (&mut s)
        .take(MAX_BODY_BYTES as u64 + 4096)
        .read_to_end(&mut raw)
        .await;
    match read {
        Ok(_) => {}
        // A TLS peer that closes without close_notify after a complete
        // answer: what arrived is still the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e).with_context(|| format!("reading {addr}{path}")),
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{addr}{path}: not an HTTP answer"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if code != "200" {
        bail!("GET {addr}{path} answered {code}");
    }
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    if length.is_some_and(|n| body.len() < n) {
        bail!("{addr}{path}: the answer was cut short");
    }
    Ok(String::from_utf8_lossy(body).into_owned())
}

/// gRPC methods of the Kv service that read data.
const READ_METHODS: &[&str] = &[
    "RawGet",
    "RawBatchGet",
    "RawScan",
    "KvGet",
    "KvBatchGet",
    "KvScan",
];

/// gRPC methods of the Kv service that write data.
const WRITE_METHODS: &[&str] = &[
    "RawPut",
    "RawBatchPut",
    "RawDelete",
    "RawDeleteRange",
    "RawCompareAndSwap",
    "KvPrewrite",
    "KvCommit",
];

/// Read and write requests a node has served since it started, summed from
/// `nokv_grpc_requests_total` over the read and write methods (every status
/// code). Differences between two scrapes give the rates `nokv top` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestTotals {
    /// Read requests served.
    pub reads: u64,
    /// Write requests served.
    pub writes: u64,
}

/// Sums the read and write request counters in a Prometheus text scrape.
/// Lines that are not `nokv_grpc_requests_total` samples are ignored.
pub fn request_totals(metrics: &str) -> RequestTotals {
    let mut totals = RequestTotals::default();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("nokv_grpc_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let Some(method) = labels.split(',').find_map(|l| {
            l.trim()
                .strip_prefix("method=\"")
                .and_then(|m| m.strip_suffix('"'))
        }) else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        if READ_METHODS.contains(&method) {
            totals.reads += v as u64;
        } else if WRITE_METHODS.contains(&method) {
            totals.writes += v as u64;
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_totals_sum_reads_and_writes_over_codes() {
        let text = "# HELP nokv_grpc_requests_total gRPC requests\n\
            # TYPE nokv_grpc_requests_total counter\n\
            nokv_grpc_requests_total{code=\"Ok\",method=\"RawGet\"} 10\n\
            nokv_grpc_requests_total{code=\"NotFound\",method=\"KvGet\"} 2\n\
            nokv_grpc_requests_total{code=\"Ok\",method=\"RawPut\"} 7\n\
            nokv_grpc_requests_total{code=\"Ok\",method=\"KvCommit\"} 1\n\
            nokv_grpc_requests_total{code=\"Ok\",method=\"RegionStatus\"} 99\n\
            nokv_raft_proposals_total 5\n";
        assert_eq!(
            request_totals(text),
            RequestTotals {
                reads: 12,
                writes: 8
            }
        );
    }

    #[test]
    fn request_totals_ignore_garbage() {
        assert_eq!(
            request_totals("nokv_grpc_requests_total{method=\"RawGet\"} x\nnot metrics"),
            RequestTotals::default()
        );
    }

    #[tokio::test]
    async fn get_fails_on_a_closed_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        drop(l);
        assert!(get(&addr, "/status", Duration::from_secs(2), None)
            .await
            .is_err());
    }

    /// A server on a free port that reads one request per connection and
    /// writes the next of `answers`, raw.
    async fn answer_in_turn(
        answers: &'static [&'static str],
    ) -> (String, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            for answer in answers {
                let (mut s, _) = l.accept().await.expect("accept");
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                s.write_all(answer.as_bytes()).await.expect("write");
            }
        });
        (addr, server)
    }

    #[tokio::test]
    async fn get_returns_the_body_of_a_200_and_fails_otherwise() {
        let (addr, server) = answer_in_turn(&[
            "HTTP/1.1 200 OK\r\n\r\n{\"a\":1}",
            "HTTP/1.1 503 No\r\n\r\nnot ready",
        ])
        .await;
        assert_eq!(
            get(&addr, "/status", Duration::from_secs(5), None)
                .await
                .expect("200"),
            "{\"a\":1}"
        );
        let err = get(&addr, "/ready", Duration::from_secs(5), None)
            .await
            .expect_err("503");
        assert!(err.to_string().contains("503"), "{err}");
        server.await.expect("server");
    }

    /// With TLS material, a port that does not speak TLS is asked again in
    /// plain HTTP; a short body against its Content-Length is refused.
    #[tokio::test]
    async fn tls_falls_back_to_plain_http_and_a_cut_answer_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = crate::cluster::certs::generate(dir.path(), "127.0.0.1").expect("certs");
        let tls = TlsConfig::from_pem_files(&files.ca, &files.cert, &files.key).expect("tls");
        let (addr, server) = answer_in_turn(&[
            // The ClientHello gets an HTTP error, as from axum.
            "HTTP/1.1 400 Bad Request\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 400 Bad Request\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
        ])
        .await;
        assert_eq!(
            get(&addr, "/health", Duration::from_secs(5), Some(&tls))
                .await
                .expect("plain HTTP after the TLS attempt"),
            "ok"
        );
        let err = get(&addr, "/health", Duration::from_secs(5), Some(&tls))
            .await
            .expect_err("cut short");
        assert!(err.to_string().contains("cut short"), "{err}");
        server.await.expect("server");
    }
}
