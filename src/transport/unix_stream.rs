//! [`Unix`]: Python's `UnixStreamServer`.

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use socket2::{Domain, SockRef, Socket, Type};

use super::{adopt_unix, bind_unix, BindOptions, Transport};
use crate::handler::{Connection, Stream};

/// The Unix stream transport: `Server<Unix, M>` is Python's
/// `UnixStreamServer`. The socket file is removed when the server closes
/// (Python leaves it behind).
#[derive(Debug, Clone, Copy)]
pub struct Unix;

impl Transport for Unix {
    const CLASS: &'static str = "UnixStreamServer";
    type Kind = Stream;
    type Socket = UnixListener;
    type Request = UnixStream;
    type Address = PathBuf;

    fn socket(_: &PathBuf) -> io::Result<UnixListener> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    }

    fn bind(socket: &UnixListener, path: &PathBuf, _: BindOptions) -> io::Result<PathBuf> {
        bind_unix(Self::CLASS, SockRef::from(socket), path)?;
        Ok(path.clone())
    }

    fn adopt(socket: &UnixListener) -> io::Result<PathBuf> {
        adopt_unix(Self::CLASS, socket, Type::STREAM, true)
    }

    #[cfg(feature = "systemd")]
    fn take_inherited(
        fds: &mut listenfd::ListenFd,
        index: usize,
    ) -> io::Result<Option<UnixListener>> {
        fds.take_unix_listener(index)
    }

    fn activate(socket: &UnixListener, request_queue_size: i32) -> io::Result<()> {
        SockRef::from(socket).listen(request_queue_size)
    }

    fn get_request(socket: &Arc<UnixListener>, _: usize) -> io::Result<(UnixStream, PathBuf)> {
        let (stream, address) = socket.accept()?;
        Ok((
            stream,
            address.as_pathname().map(Into::into).unwrap_or_default(),
        ))
    }

    fn socket_file(path: &PathBuf) -> Option<&Path> {
        Some(path)
    }

    fn view(request: &UnixStream) -> Connection<'_> {
        Connection::Unix(request)
    }
}
