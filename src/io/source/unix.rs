//! The Unix stream socket listener: like the TCP one; the socket file is removed on shutdown.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::task::{JoinHandle, JoinSet};

use super::slots::Slots;
use super::stream::Ctx;
use super::tcp::{accept_failed, admit, log_panic, serve_accepted};
use super::{Origin, Result, SourceError, SourceKind};

/// Binds `path` and spawns the accept loop. A stale socket file at `path` (no one listening)
/// is removed first; any other file is left alone and is an error.
pub(crate) fn spawn(path: &Path, slots: Arc<Slots>, ctx: Ctx) -> Result<JoinHandle<Result<()>>> {
    let bind_error = |source| SourceError::Bind {
        addr: format!("unix://{}", path.display()),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(bind_error(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process is listening on this socket",
                )));
            }
            tracing::info!(path = %path.display(), "removing stale socket file");
            std::fs::remove_file(path).map_err(bind_error)?;
        }
        Ok(_) => {
            return Err(SourceError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error(e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_error)?;
    let guard = SocketFile(path.to_path_buf());
    listener.set_nonblocking(true).map_err(bind_error)?;
    let listener = UnixListener::from_std(listener).map_err(bind_error)?;
    tracing::info!(target: "tbptt::listening", "listening on unix://{}", path.display());
    Ok(tokio::spawn(run(listener, guard, slots, ctx)))
}

/// Removes the socket file when dropped (at shutdown, or if the task is cancelled), if it is
/// still a socket.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let is_socket = std::fs::symlink_metadata(&self.0)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false);
        if is_socket {
            if let Err(e) = std::fs::remove_file(&self.0) {
                tracing::warn!(path = %self.0.display(), error = %e, "cannot remove socket file");
            }
        }
    }
}

async fn run(
    listener: UnixListener,
    socket_file: SocketFile,
    slots: Arc<Slots>,
    mut ctx: Ctx,
) -> Result<()> {
    let mut conns = JoinSet::new();
    let mut next_peer = 0_u64;
    let path = socket_file.0.display().to_string();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => {
                    next_peer += 1;
                    let Some(slot) = admit(&slots, next_peer, None, &path, &ctx) else {
                        continue;
                    };
                    let name = format!("unix {path} #{next_peer}");
                    let origin = Origin::new(SourceKind::Unix, name, next_peer, ctx.template.start());
                    serve_accepted(socket, origin, slot, &ctx, &mut conns);
                }
                Err(e) => accept_failed(&e, &mut ctx).await,
            },
            Some(joined) = conns.join_next(), if !conns.is_empty() => log_panic(joined),
            () = ctx.shutdown.recv() => break,
        }
    }
    // No new client from here on; remove the file before the channel can close.
    drop(listener);
    drop(socket_file);
    while let Some(joined) = conns.join_next().await {
        log_panic(joined);
    }
    Ok(())
}
