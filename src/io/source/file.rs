//! The file source: reads a file to its end.

use std::path::Path;

use tokio::task::JoinHandle;

use super::stream::{self, Ctx};
use super::{Origin, Result, SourceError, SourceKind};

/// Opens `path` (before returning, so that the error names the path at once) and spawns the
/// reader.
pub(crate) fn spawn(path: &Path, ctx: Ctx) -> Result<JoinHandle<Result<()>>> {
    let open_error = |source| SourceError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(open_error)?;
    if file.metadata().map_err(open_error)?.is_dir() {
        return Err(open_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is a directory",
        )));
    }
    let name = format!("file {}", path.display());
    let origin = Origin::new(SourceKind::File, name, 0, ctx.template.start());
    let file = tokio::fs::File::from_std(file);
    Ok(tokio::spawn(stream::read_to_end(file, origin, ctx)))
}
