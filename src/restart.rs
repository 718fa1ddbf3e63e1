//! Restarting without closing the door: a running program hands its
//! listening sockets to a new process of itself, waits until that process
//! says it is ready, and only then stops accepting (not in Python).
//!
//! The listening socket is the same kernel object in both processes, with
//! one accept queue: a connection that arrives while both hold it waits in
//! that queue for whichever accepts first, so no connection is refused or
//! reset — unlike two sockets on one port with SO_REUSEPORT, where closing
//! the old one resets what waits in its own queue.
//!
//! # The two sides
//!
//! - The running program, on its restart signal: [`Restarter::spawn`] starts
//!   the successor (by default the executable path and arguments read by
//!   [`Restarter::new`] at start, so that a binary upgraded in place takes
//!   over) with the sockets, and returns once it is ready — or kills it and
//!   returns why not. Then the program stops accepting, finishes its
//!   requests, and exits.
//! - The successor, at start: [`Inherited::from_env`] takes the sockets
//!   (adopt each with [`Server::from_fd`](crate::Server::from_fd)); once it
//!   serves, [`Inherited::ready`] tells the predecessor.
//!
//! # The convention
//!
//! systemd's `LISTEN_FDS` protocol, so that a successor written against it
//! (such as [`Server::from_systemd`](crate::Server::from_systemd), though it
//! must still report ready) finds the sockets: they are descriptors 3, 4, …
//! in the order given, `LISTEN_FDS`
//! says how many, `LISTEN_FDNAMES` their names (`unknown` when not named).
//! `LISTEN_PID` is left **unset**: the parent cannot know the child's pid
//! before `exec`, and setting the variable in the forked child would mean
//! changing the environment after `fork` in a threaded program, which is not
//! safe. An unset `LISTEN_PID` is the relaxation the `listenfd` crate (and
//! `systemfd --no-pid`) accept; because a variable without the pid check
//! would also reach the successor's own children, [`Inherited::from_env`]
//! removes the variables as it reads them.
//!
//! One more descriptor, 3 + `LISTEN_FDS`, named by the variable
//! [`READY_FD`], is the write end of a pipe: the successor writes
//! `READY=1\n` to it (sd_notify's word) and closes it. A pipe rather than a
//! datagram socket because its end is news too: a successor that exits, or
//! closes the pipe without the word, is seen at once instead of at the
//! deadline; and `NOTIFY_SOCKET` stays free for systemd ([`notify`]).
//!
//! # Unix socket files
//!
//! A Unix stream or datagram socket's file stays in place across the
//! handover: once [`Restarter::spawn`] succeeds, a server of this process
//! that closes leaves the file of a socket it passed on (the successor serves
//! through it); the successor, once [`ready`](Inherited::ready), removes the
//! file when its [`Inherited`] is dropped, as the server that bound it would
//! have — unless it handed it on in turn.
//!
//! # Why not `ecdysis`
//!
//! Cloudflare's `ecdysis` (0.6, tableflip's design in Rust) does the same
//! dance, but: it makes the sockets itself (`listen_tcp`, `listen_unix`,
//! found again in the child by address), where these servers bind or adopt
//! their own; it sends the descriptors' numbers to the child serialized with
//! bincode over a pipe, a protocol nothing else speaks, rather than systemd's;
//! it gives the child a fixed 5 s to be ready; it starts the child with std's
//! `Command` and a `pre_exec` hook, which forks (see [`Restarter::spawn`] for
//! why that stalls next to a forking server); and it brings bincode, serde,
//! tokio-util, os_pipe, nix 0.26 and socket2 0.5 (second copies of the
//! crate's own) even without its default tokio feature. What remains here is
//! a `posix_spawn` with the descriptors moved into place and a pipe — this
//! module, with no dependency beyond the crate's own.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::server::socket_file::{self, SocketFile};

/// The environment variable naming the descriptor a successor reports ready
/// on (`SOCKETSERVER_READY_FD`); its presence is what makes a process a
/// successor for [`Inherited::from_env`].
pub const READY_FD: &str = "SOCKETSERVER_READY_FD";

/// [`Restarter::ready_timeout`]'s default: a minute, as tableflip's.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the wait for readiness also checks whether the successor has
/// exited (a process forked meanwhile may hold a copy of the pipe's write
/// end, delaying its end).
const EXIT_CHECK: Duration = Duration::from_millis(100);

/// Starts the successor of a running program: the same executable path and
/// arguments, the listening sockets passed on, ready or not within
/// [`ready_timeout`](Restarter::ready_timeout).
///
/// ```
/// use socketserver::restart::Restarter;
/// use std::os::fd::AsFd;
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// // A stand-in successor: a shell that reports ready at once. A real one is
/// // this program again (Restarter::new()), which adopts the socket.
/// let script = r#"test "$LISTEN_FDS" = 1 && echo READY=1 >&"$SOCKETSERVER_READY_FD""#;
/// let restarter = Restarter::with_program("sh", ["-c", script]);
/// let mut successor = restarter.spawn(&[listener.as_fd()])?;
/// assert!(successor.wait()?.success());
///
/// // One that never says it is ready is killed, and the error says why.
/// let mut restarter = Restarter::with_program("sh", ["-c", "exit 3"]);
/// restarter.ready_timeout = std::time::Duration::from_secs(5);
/// let err = restarter.spawn(&[listener.as_fd()]).unwrap_err();
/// assert!(err.to_string().contains("exited before it was ready"), "{err}");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Restarter {
    program: PathBuf,
    args: Vec<OsString>,
    /// How long the successor has to report ready before it is killed.
    /// Defaults to [`DEFAULT_READY_TIMEOUT`] (60 s).
    pub ready_timeout: Duration,
}

impl Restarter {
    /// This program as it was started: [`std::env::current_exe`] and the
    /// arguments. Call it at start: by the time of a restart, an upgrade
    /// may have replaced the file, and `/proc/self/exe` then names the old,
    /// deleted one — while the path read now names the new one, which is
    /// what runs. (`current_exe` resolves symbolic links: a program started
    /// through a link that an upgrade moves keeps the old target.)
    ///
    /// # Errors
    ///
    /// The executable's path cannot be read.
    pub fn new() -> io::Result<Restarter> {
        let program = std::env::current_exe().map_err(|err| {
            crate::error::context(
                err,
                format_args!("restart: cannot find this program's executable"),
            )
        })?;
        Ok(Restarter::with_program(
            program,
            std::env::args_os().skip(1),
        ))
    }

    /// Another program (a wrapper, a test's stand-in) and its arguments.
    pub fn with_program(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Restarter {
        Restarter {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// The program a restart runs.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Starts the successor with `sockets` (descriptors 3, 4, … in this
    /// order; see the module's convention), standard streams and
    /// environment inherited, and waits until it reports ready. Returns the
    /// running successor.
    ///
    /// Once this returns `Ok`, the sockets belong to the successor too: a
    /// Unix socket file among them is left in place when this process's
    /// server closes.
    ///
    /// The process is made with `posix_spawn(3)`, its descriptors put in
    /// place by the spawn's own `dup2` actions: nothing runs in a forked
    /// copy of this (threaded) process, and no descriptor of the spawn's
    /// is open in this process while it runs — so a child forked meanwhile
    /// (by [`ForkingMixIn`](crate::ForkingMixIn), say) inherits nothing
    /// that would hold the spawn up. (`std::process::Command` with a
    /// `pre_exec` hook forks, and waits on a pipe that such a child keeps
    /// open for as long as its request lasts.)
    ///
    /// # Errors
    ///
    /// Naming the program and why: it could not be started; it exited, or
    /// closed the pipe, before it was ready (with its exit status); it did
    /// not report ready within `ready_timeout`. A successor that was started
    /// is killed and waited for before the error returns, so the caller can
    /// go on serving as if nothing happened.
    pub fn spawn(&self, sockets: &[BorrowedFd<'_>]) -> io::Result<Successor> {
        let started = Instant::now();
        let (mut ready, ready_writer) = io::pipe()?;
        let mut sources: Vec<RawFd> = sockets.iter().map(|fd| fd.as_raw_fd()).collect();
        sources.push(ready_writer.as_raw_fd());
        let pid = self.posix_spawn(&sources).map_err(|err| {
            crate::error::context(
                err,
                format_args!("restart: cannot start {}", self.program.display()),
            )
        })?;
        // Only the child's copy may stay open: its end is the news that the
        // child is gone.
        drop(ready_writer);
        let mut successor = Successor { pid, status: None };
        match self.wait_ready(&mut ready, &mut successor, started) {
            Ok(()) => {
                for socket in sockets {
                    if let Some(path) = unix_path(*socket) {
                        socket_file::keep(&path);
                    }
                }
                Ok(successor)
            }
            Err(why) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let status = match successor.wait() {
                    Ok(status) => status.to_string(),
                    Err(err) => err.to_string(),
                };
                Err(io::Error::new(
                    why.kind(),
                    format!(
                        "restart: {} (pid {pid}) {why} ({status})",
                        self.program.display()
                    ),
                ))
            }
        }
    }

    /// `posix_spawn(3)` of the program, `sources` at descriptors 3, 4, …
    fn posix_spawn(&self, sources: &[RawFd]) -> io::Result<Pid> {
        use nix::spawn::{posix_spawnp, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
        use nix::sys::signal::{SigSet, Signal};
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c_string = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument")
            })
        };
        let mut argv = vec![c_string(self.program.as_os_str().as_bytes())?];
        for arg in &self.args {
            argv.push(c_string(arg.as_bytes())?);
        }
        let count = sources.len() - 1;
        let ours = [
            ("LISTEN_FDS".to_owned(), count.to_string()),
            (
                "LISTEN_FDNAMES".to_owned(),
                vec!["unknown"; count].join(":"),
            ),
            (READY_FD.to_owned(), (3 + count).to_string()),
        ];
        let mut envp = Vec::new();
        for (name, value) in std::env::vars_os() {
            let replaced = ["LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", READY_FD];
            if !replaced.iter().any(|r| name.as_bytes() == r.as_bytes()) {
                envp.push(c_string(
                    &[name.as_bytes(), b"=", value.as_bytes()].concat(),
                )?);
            }
        }
        for (name, value) in ours {
            envp.push(c_string(format!("{name}={value}").as_bytes())?);
        }
        // Two passes, so that placing one descriptor at its number never
        // closes another still to be placed: each source is first copied
        // above every source and target, then moved down to 3 + i (dup2
        // leaves the copy without close-on-exec), and the high copies are
        // closed.
        let above = sources
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(2 + sources.len() as RawFd);
        let mut actions = PosixSpawnFileActions::init()?;
        for (i, &source) in sources.iter().enumerate() {
            actions.add_dup2(source, above + 1 + i as RawFd)?;
        }
        for i in 0..sources.len() as RawFd {
            actions.add_dup2(above + 1 + i, 3 + i)?;
            actions.add_close(above + 1 + i)?;
        }
        // As std's Command: the child starts with no signal blocked and
        // SIGPIPE at its default action (Rust programs ignore it).
        let mut attr = PosixSpawnAttr::init()?;
        attr.set_sigmask(&SigSet::empty())?;
        attr.set_sigdefault(&SigSet::from(Signal::SIGPIPE))?;
        attr.set_flags(
            PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
        )?;
        Ok(posix_spawnp(&argv[0], &actions, &attr, &argv, &envp)?)
    }

    /// Reads the pipe until `READY=1`, its end, or the deadline.
    fn wait_ready(
        &self,
        pipe: &mut io::PipeReader,
        successor: &mut Successor,
        started: Instant,
    ) -> io::Result<()> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let deadline = started + self.ready_timeout;
        let mut said = Vec::new();
        loop {
            // The pipe first: a successor that said READY=1 and then exited
            // was ready, whatever came after.
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = PollTimeout::try_from(left.min(EXIT_CHECK)).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
            let readable = match poll(&mut fds, wait) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => false,
                Ok(_) => true,
                Err(errno) => return Err(errno.into()),
            };
            if readable {
                let mut buf = [0; 256];
                let len = match pipe.read(&mut buf) {
                    Ok(len) => len,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err),
                };
                if len == 0 {
                    return Err(io::Error::other("exited before it was ready"));
                }
                said.extend_from_slice(&buf[..len]);
                if said.split(|&b| b == b'\n').any(|line| line == b"READY=1") {
                    return Ok(());
                }
                continue;
            }
            // Nothing said: a copy of the pipe's write end held by a
            // process forked meanwhile delays its end, so ask the kernel.
            if successor.try_wait()?.is_some() {
                return Err(io::Error::other("exited before it was ready"));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("did not report ready within {:?}", self.ready_timeout),
                ));
            }
        }
    }
}

/// A successor [`Restarter::spawn`] started, ready. Dropping it leaves the
/// process running (it is the program now); its parent, the process that
/// called `spawn`, usually exits without waiting for it (the successor is
/// then adopted by init, or the nearest subreaper). A parent that goes on
/// running should [`wait`](Successor::wait) for it, or it stays a zombie
/// once it exits.
#[derive(Debug)]
pub struct Successor {
    pid: Pid,
    /// Its exit status, once waited for.
    status: Option<ExitStatus>,
}

impl Successor {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Waits for it to exit, as `std::process::Child::wait`.
    ///
    /// # Errors
    ///
    /// `waitpid(2)` failed.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.status {
                return Ok(status);
            }
            self.reap(None)?;
        }
    }

    /// Its exit status if it has exited, without waiting.
    fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.reap(Some(nix::sys::wait::WaitPidFlag::WNOHANG))?;
        }
        Ok(self.status)
    }

    fn reap(&mut self, flags: Option<nix::sys::wait::WaitPidFlag>) -> io::Result<()> {
        use nix::sys::wait::{waitpid, WaitStatus};
        use std::os::unix::process::ExitStatusExt;
        self.status = match waitpid(self.pid, flags) {
            Ok(WaitStatus::Exited(_, code)) => Some(ExitStatus::from_raw((code & 0xff) << 8)),
            Ok(WaitStatus::Signaled(_, signal, core)) => Some(ExitStatus::from_raw(
                signal as i32 | if core { 0x80 } else { 0 },
            )),
            Ok(_) => None,
            Err(nix::errno::Errno::EINTR) => None,
            Err(errno) => return Err(errno.into()),
        };
        Ok(())
    }
}

/// The sockets a predecessor passed to this process with
/// [`Restarter::spawn`], and the pipe to tell it this process is ready.
///
/// ```
/// use socketserver::restart::Inherited;
/// use socketserver::{BaseServer, StreamRequest, ThreadingTCPServer};
///
/// // First thing in main, before any thread starts.
/// let mut inherited = Inherited::from_env()?;
/// let handler = |_: &mut StreamRequest<'_>| Ok(());
/// let server = match inherited.as_mut().and_then(|passed| passed.take(0)) {
///     Some(fd) => ThreadingTCPServer::from_fd(fd, handler)?, // binds nothing
///     None => ThreadingTCPServer::new("127.0.0.1:0", handler)?,
/// };
/// if let Some(passed) = &mut inherited {
///     passed.ready()?; // the predecessor stops accepting now
/// }
/// // Not started by a restart here: the server bound its own socket.
/// assert!(inherited.is_none());
/// assert_ne!(server.server_address().port(), 0);
/// // Then: Arc::new(server).serve_forever(None)?; and on SIGHUP,
/// // Restarter::spawn(&[server.socket()?.as_fd()]).
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Inherited {
    sockets: Vec<Option<OwnedFd>>,
    /// The socket files of those that are Unix sockets bound to a path.
    paths: Vec<PathBuf>,
    ready: Option<OwnedFd>,
    /// The files this process took over when it became ready.
    files: Vec<SocketFile>,
}

impl Inherited {
    /// The sockets passed to this process, if a predecessor started it
    /// ([`READY_FD`] is set): `Ok(None)` otherwise. Removes the variables
    /// (`LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`, [`READY_FD`]), so that
    /// this process's children do not take them as theirs, and marks the
    /// descriptors close-on-exec. Call it before starting threads (the
    /// environment is not thread-safe), and before anything else reads
    /// `LISTEN_FDS` (such as [`Server::from_systemd`](crate::Server::from_systemd)).
    ///
    /// # Errors
    ///
    /// The variables are malformed, `LISTEN_PID` names another process, or
    /// a descriptor they name is not open.
    pub fn from_env() -> io::Result<Option<Inherited>> {
        let Some(ready) = std::env::var_os(READY_FD) else {
            return Ok(None);
        };
        let count = std::env::var_os("LISTEN_FDS");
        let pid = std::env::var_os("LISTEN_PID");
        for name in ["LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", READY_FD] {
            std::env::remove_var(name);
        }
        let bad = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("restart: {what}, so the sockets passed cannot be taken"),
            )
        };
        let number = |name: &str, value: Option<OsString>| {
            value
                .as_ref()
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| bad(format!("{name} is {value:?}, not a number")))
        };
        if let Some(pid) = pid.filter(|pid| !pid.is_empty()) {
            if number("LISTEN_PID", Some(pid.clone()))? != std::process::id() {
                return Err(bad(format!("LISTEN_PID is {pid:?}, not this process")));
            }
        }
        let count = number("LISTEN_FDS", count)?;
        let ready = number(READY_FD, Some(ready))?;
        let sockets = (3..3 + count)
            .map(|fd| take_fd(fd as RawFd).map(Some))
            .collect::<io::Result<Vec<_>>>()?;
        let paths = sockets
            .iter()
            .filter_map(|fd| unix_path(fd.as_ref()?.as_fd()))
            .collect();
        Ok(Some(Inherited {
            sockets,
            paths,
            ready: Some(take_fd(ready as RawFd)?),
            files: Vec::new(),
        }))
    }

    /// How many sockets were passed.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Socket `index` (the first is 0), for
    /// [`Server::from_fd`](crate::Server::from_fd); `None` if there is no
    /// such socket or it was taken already.
    pub fn take(&mut self, index: usize) -> Option<OwnedFd> {
        self.sockets.get_mut(index)?.take()
    }

    /// Tells the predecessor this process is ready (it then stops accepting
    /// and finishes its requests), and takes over the Unix socket files of
    /// the sockets passed: they are removed when this `Inherited` is
    /// dropped, unless this process hands them on in turn. Call it once the
    /// servers are made and about to serve; a second call does nothing.
    ///
    /// # Errors
    ///
    /// The pipe is broken: the predecessor gave up waiting (and will kill
    /// this process).
    pub fn ready(&mut self) -> io::Result<()> {
        let Some(pipe) = self.ready.take() else {
            return Ok(());
        };
        std::fs::File::from(pipe)
            .write_all(b"READY=1\n")
            .map_err(|err| {
                crate::error::context(err, format_args!("restart: cannot report ready"))
            })?;
        self.files = self
            .paths
            .iter()
            .filter_map(|path| SocketFile::created(path))
            .collect();
        Ok(())
    }
}

impl Drop for Inherited {
    /// Removes the socket files taken over by [`ready`](Inherited::ready),
    /// if they are still the ones passed and not handed on.
    fn drop(&mut self) {
        for file in self.files.drain(..) {
            file.remove();
        }
    }
}

/// Takes ownership of inherited descriptor `fd`, close-on-exec. `unsafe`
/// (denied in the crate but where a file says why): std cannot turn a
/// descriptor number into an owned descriptor safely.
#[allow(unsafe_code)]
fn take_fd(fd: RawFd) -> io::Result<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: F_GETFD only reads the flags of the number, open or not;
    // borrowing it for the call cannot close or change it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_GETFD).map_err(|errno| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("restart: descriptor {fd} was to be passed on, but is not open ({errno})"),
        )
    })?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    // SAFETY: the descriptor is open (checked above) and, by the convention,
    // passed for this process to own; `from_env` removed the variables that
    // name it, so nothing else takes it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The path of a Unix socket bound to one.
fn unix_path(socket: BorrowedFd<'_>) -> Option<PathBuf> {
    let address = socket2::SockRef::from(&socket).local_addr().ok()?;
    address.as_pathname().map(Path::to_path_buf)
}

/// sd_notify(3): sends `state` (`"READY=1"`, `"MAINPID=1234\nREADY=1"`,
/// `"STOPPING=1"`) to the service manager's `NOTIFY_SOCKET`, a path or an
/// abstract name (`@…`). Returns `Ok(false)` when the variable is unset (not
/// run by systemd with `Type=notify`).
///
/// ```
/// // Outside systemd, nothing to tell.
/// std::env::remove_var("NOTIFY_SOCKET");
/// assert!(!socketserver::restart::notify("READY=1")?);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The socket cannot be reached.
pub fn notify(state: &str) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let sent = match path.as_bytes().strip_prefix(b"@") {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        Some(name) => {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &address)
        }
        _ => socket.send_to(state.as_bytes(), &path),
    };
    sent.map_err(|err| {
        crate::error::context(err, format_args!("sd_notify to NOTIFY_SOCKET={path:?}"))
    })?;
    Ok(true)
}
