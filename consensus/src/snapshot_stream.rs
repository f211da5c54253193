//! Streaming region snapshots between processes with bounded memory. The
//! sender reads the snapshot's files from disk in 1 MiB chunks; the
//! receiver writes each chunk to disk as it arrives and checks every
//! file's size and CRC32 before it hands the raft message on. A semaphore
//! on each side bounds concurrent transfers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nokv_proto::raft_serverpb::raft_transport_client::RaftTransportClient;
use nokv_proto::raft_serverpb::{snapshot_chunk, SnapshotChunk, SnapshotFileMeta, SnapshotHeader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

/// Bytes per chunk on the wire.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Transfers running at once in each direction.
pub const MAX_CONCURRENT_TRANSFERS: usize = 4;

/// Where a receiving process keeps incoming snapshots.
pub trait SnapshotReceiver: Send + Sync + 'static {
    /// The (new, empty) directory for the snapshot `header` announces, or
    /// an error refusing it.
    fn dir_for(&self, header: &SnapshotHeader) -> std::io::Result<PathBuf>;
}

/// The file of `meta` inside a snapshot directory.
pub fn file_path(dir: &Path, meta: &SnapshotFileMeta) -> PathBuf {
    dir.join(format!("{}.sst", meta.cf))
}

/// CRC32 of a file, read in chunks.
pub fn file_crc32(path: &Path) -> std::io::Result<u32> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

/// Sends one snapshot (header, then the files' bytes) to `addr`, with
/// mutual TLS when `tls` is given.
pub async fn send(
    addr: &str,
    tls: Option<&nokv_proto::tls::TlsConfig>,
    header: SnapshotHeader,
    dir: PathBuf,
    permits: Arc<Semaphore>,
) -> Result<(), String> {
    let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
    let endpoint = crate::dial::endpoint(addr, tls)?;
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let mut client = RaftTransportClient::new(channel);
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(4);
    let files = header.files.clone();
    let feeder = tokio::spawn(async move {
        let first = SnapshotChunk {
            content: Some(snapshot_chunk::Content::Header(header)),
        };
        if tx.send(first).await.is_err() {
            return Ok(());
        }
        for meta in &files {
            let mut f = tokio::fs::File::open(file_path(&dir, meta))
                .await
                .map_err(|e| format!("opening snapshot file {}: {e}", meta.cf))?;
            let mut sent = 0u64;
            while sent < meta.size {
                let want = CHUNK_BYTES.min((meta.size - sent) as usize);
                let mut buf = vec![0u8; want];
                f.read_exact(&mut buf)
                    .await
                    .map_err(|e| format!("reading snapshot file {}: {e}", meta.cf))?;
                sent += want as u64;
                let chunk = SnapshotChunk {
                    content: Some(snapshot_chunk::Content::Data(buf)),
                };
                if tx.send(chunk).await.is_err() {
                    return Ok(());
                }
            }
        }
        Ok::<(), String>(())
    });
    let result = client.snapshot(ReceiverStream::new(rx)).await;
    let fed = feeder.await.map_err(|e| e.to_string())?;
    fed?;
    result
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// Receives one snapshot stream into the directory `receiver` names;
/// returns the header once every file is on disk and verified.
pub async fn receive<S>(
    mut inbound: S,
    receiver: &dyn SnapshotReceiver,
    permits: &Semaphore,
) -> Result<SnapshotHeader, Status>
where
    S: Stream<Item = Result<SnapshotChunk, Status>> + Unpin,
{
    let _permit = permits
        .acquire()
        .await
        .map_err(|_| Status::unavailable("snapshot receiver closed"))?;
    let header = match inbound.next().await {
        Some(Ok(SnapshotChunk {
            content: Some(snapshot_chunk::Content::Header(h)),
        })) => h,
        Some(Err(e)) => return Err(e),
        _ => {
            return Err(Status::invalid_argument(
                "a snapshot stream starts with its header",
            ))
        }
    };
    let dir = receiver
        .dir_for(&header)
        .map_err(|e| Status::invalid_argument(format!("snapshot refused: {e}")))?;
    match write_files(&mut inbound, &header, &dir).await {
        Ok(()) => Ok(header),
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            Err(e)
        }
    }
}

async fn write_files<S>(inbound: &mut S, header: &SnapshotHeader, dir: &Path) -> Result<(), Status>
where
    S: Stream<Item = Result<SnapshotChunk, Status>> + Unpin,
{
    let io = |e: std::io::Error| Status::internal(format!("writing snapshot: {e}"));
    let mut pending: Vec<u8> = Vec::new();
    for meta in &header.files {
        let mut f = tokio::fs::File::create(file_path(dir, meta))
            .await
            .map_err(io)?;
        let mut hasher = crc32fast::Hasher::new();
        let mut written = 0u64;
        while written < meta.size {
            if pending.is_empty() {
                pending = match inbound.next().await {
                    Some(Ok(SnapshotChunk {
                        content: Some(snapshot_chunk::Content::Data(d)),
                    })) => d,
                    Some(Err(e)) => return Err(e),
                    _ => return Err(Status::data_loss("snapshot stream ended early")),
                };
            }
            let take = pending.len().min((meta.size - written) as usize);
            let rest = pending.split_off(take);
            hasher.update(&pending);
            f.write_all(&pending).await.map_err(io)?;
            written += take as u64;
            pending = rest;
        }
        f.sync_all().await.map_err(io)?;
        if hasher.finalize() != meta.crc32 {
            return Err(Status::data_loss(format!(
                "snapshot file {} failed its CRC32 check",
                meta.cf
            )));
        }
    }
    if !pending.is_empty() || inbound.next().await.is_some() {
        return Err(Status::data_loss("snapshot stream carried extra bytes"));
    }
    Ok(())
}
