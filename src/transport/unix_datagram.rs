//! [`UnixDgram`]: Python's `UnixDatagramServer`.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::socket::UnixAddr;
use socket2::{Domain, SockRef, Socket, Type};

use super::{adopt_unix, bind_unix, recv_datagram, BindOptions, Transport};
use crate::handler::{Datagram, DatagramView, Packet};

/// The Unix datagram transport: `Server<UnixDgram, M>` is Python's
/// `UnixDatagramServer`. A client must bind a path of its own to get replies.
#[derive(Debug, Clone, Copy)]
pub struct UnixDgram;

impl Transport for UnixDgram {
    const CLASS: &'static str = "UnixDatagramServer";
    type Kind = Datagram;
    type Socket = UnixDatagram;
    type Request = Packet<UnixDatagram>;
    type Address = PathBuf;

    fn socket(_: &PathBuf) -> io::Result<UnixDatagram> {
        // Blocking: see recv_datagram.
        Ok(Socket::new(Domain::UNIX, Type::DGRAM, None)?.into())
    }

    fn bind(socket: &UnixDatagram, path: &PathBuf, _: BindOptions) -> io::Result<PathBuf> {
        bind_unix(Self::CLASS, SockRef::from(socket), path)?;
        Ok(path.clone())
    }

    fn adopt(socket: &UnixDatagram) -> io::Result<PathBuf> {
        // Blocking: see recv_datagram.
        adopt_unix(Self::CLASS, socket, Type::DGRAM, false)
    }

    #[cfg(feature = "systemd")]
    fn take_inherited(
        fds: &mut listenfd::ListenFd,
        index: usize,
    ) -> io::Result<Option<UnixDatagram>> {
        fds.take_unix_datagram(index)
    }

    fn activate(_: &UnixDatagram, _: i32) -> io::Result<()> {
        Ok(())
    }

    fn get_request(
        socket: &Arc<UnixDatagram>,
        max_packet_size: usize,
    ) -> io::Result<(Packet<UnixDatagram>, PathBuf)> {
        let (data, address) = recv_datagram::<UnixAddr>(&**socket, max_packet_size)?;
        let address = address.path().map(Into::into).unwrap_or_default();
        Ok((Packet::new(data, Arc::clone(socket)), address))
    }

    fn socket_file(path: &PathBuf) -> Option<&Path> {
        Some(path)
    }

    fn view(request: &Packet<UnixDatagram>) -> DatagramView<'_> {
        request.view()
    }
}
