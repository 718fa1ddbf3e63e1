//! [`SocketFile`]: the Unix socket file a server created, removed when the
//! server closes — and only if it is still the one it created, and not
//! handed on to a process that serves it now ([`keep`]).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// The socket files (device, inode) this process handed on to a successor
/// ([`crate::restart`]): another process serves them now.
static KEPT: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// Leaves the socket file at `path` in place when this process's server
/// closes: a successor serves the socket through it now.
pub(crate) fn keep(path: &Path) {
    if let Ok(metadata) = std::fs::symlink_metadata(path) {
        KEPT.lock().push((metadata.dev(), metadata.ino()));
    }
}

/// A Unix socket file this server created, and how to recognise it: by
/// the time the server closes, the path may name another server's socket
/// (ours was removed and the path bound again), or, relative to a changed
/// working directory, some other file — neither is ours to remove.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
    /// A forked child that drops its copy of the server must not remove the
    /// parent's file.
    pid: u32,
}

impl SocketFile {
    pub(crate) fn created(path: &Path) -> Option<SocketFile> {
        let path = std::path::absolute(path).ok()?;
        let metadata = std::fs::symlink_metadata(&path).ok()?;
        Some(SocketFile {
            path,
            device: metadata.dev(),
            inode: metadata.ino(),
            pid: std::process::id(),
        })
    }

    pub(crate) fn remove(self) {
        if KEPT.lock().contains(&(self.device, self.inode)) {
            log::debug!(
                "left the socket file {} to the process that took it over",
                self.path.display()
            );
            return;
        }
        let ours = std::process::id() == self.pid
            && std::fs::symlink_metadata(&self.path).is_ok_and(|m| {
                m.file_type().is_socket() && m.dev() == self.device && m.ino() == self.inode
            });
        if !ours {
            return;
        }
        if let Err(err) = std::fs::remove_file(&self.path) {
            if err.kind() != io::ErrorKind::NotFound {
                log::warn!(
                    "could not remove socket file {}: {err}",
                    self.path.display()
                );
            }
        }
    }
}
