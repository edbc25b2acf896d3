//! The stdin source. A std thread does the blocking reads (tokio's stdin cannot be
//! cancelled, as vector's `file_descriptors` source notes) and writes the chunks into an
//! in-memory pipe of `read_buffer` bytes, which the async side frames and decodes like any
//! stream. A full pipe blocks the thread, so a slow consumer slows the reading of stdin.

use std::io::Read;

use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::stream::{self, Ctx, End};
use super::{Origin, Result, SourceError, SourceKind};

/// Spawns the reading thread and the decoding task.
pub(crate) fn spawn(ctx: Ctx, runtime: &Handle) -> Result<JoinHandle<Result<()>>> {
    let (mut writer, mut reader) = tokio::io::duplex(ctx.read_buffer);
    let (error_tx, mut error_rx) = oneshot::channel::<std::io::Error>();
    let chunk = ctx.read_buffer;
    let thread_runtime = runtime.clone();
    std::thread::Builder::new()
        .name("tbptt-stdin".into())
        .spawn(move || {
            let mut buf = vec![0; chunk];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let bytes = buf.get(..n).unwrap_or_default();
                        // Fails once the decoding task is gone (shutdown).
                        if thread_runtime.block_on(writer.write_all(bytes)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // Sent before the pipe closes, so the task sees it at end of stream.
                        let _ = error_tx.send(e);
                        break;
                    }
                }
            }
            drop(writer);
        })
        .map_err(|source| SourceError::Read {
            name: "stdin".into(),
            source,
        })?;
    let mut ctx = ctx;
    let task = runtime.spawn(async move {
        let origin = Origin::new(SourceKind::Stdin, "stdin", 0, ctx.template.start());
        let mut conn = ctx.template.conn(origin)?;
        let mut end = stream::pump(&mut reader, &mut conn, &mut ctx, None).await;
        if let (End::Eof, Ok(e)) = (&end, error_rx.try_recv()) {
            end = End::Io(e);
        }
        stream::end_of_stream(end, &conn.origin)
    });
    Ok(task)
}
