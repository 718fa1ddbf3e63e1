//! [`SocketFile`]: the Unix socket file a server created, removed when the
//! server closes — and only if it is still the one it created.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// A Unix socket file this server created, and how to recognise it: by
/// the time the server closes, the path may name another server's socket
/// (ours was removed and the path bound again), or, relative to a changed
/// working directory, some other file — neither is ours to remove.
#[derive(Debug)]
pub(super) struct SocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
    /// A forked child that drops its copy of the server must not remove the
    /// parent's file.
    pid: u32,
}

impl SocketFile {
    pub(super) fn created(path: &Path) -> Option<SocketFile> {
        let path = std::path::absolute(path).ok()?;
        let metadata = std::fs::symlink_metadata(&path).ok()?;
        Some(SocketFile {
            path,
            device: metadata.dev(),
            inode: metadata.ino(),
            pid: std::process::id(),
        })
    }

    pub(super) fn remove(self) {
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
