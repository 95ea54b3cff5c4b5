//! A client for cgrulesengd's socket: asks the daemon to leave a process (and
//! optionally its future children) where it is, as `cgexec --sticky` does.
//!
//! Protocol (libcgroup 2.0.2): connect to /run/cgred.socket, send the pid and
//! the flags as two native-endian 4-byte ints, read the 18-byte reply
//! `SUCCESS_STORE_PID\0`; the daemon then closes. It closes without a reply
//! when /proc/PID does not exist. It serves one client at a time with a
//! backlog of one: every connection is closed at once after the reply.

use std::io::{self, Read};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub const SOCKET: &str = "/run/cgred.socket";
const REPLY: &[u8] = b"SUCCESS_STORE_PID\0";
const TIMEOUT: Duration = Duration::from_secs(2);

/// What to ask of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Request {
    /// Leave this task alone.
    Unchanged = 0,
    /// Leave this task and the children it forks from now on alone.
    UnchangedWithChildren = 1,
    /// Forget the task.
    Remove = 2,
}

/// What came of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Stored,
    /// No socket file: no daemon, nothing to protect against.
    NoDaemon,
    /// A socket file nobody listens on (the daemon died): nothing to protect
    /// against either, but worth a word in the log.
    StaleSocket,
    /// The daemon closed without replying (the task is gone).
    NoReply,
}

#[derive(Debug, thiserror::Error)]
#[error("cgrulesengd ({socket}): {what} for pid {pid}: {error}")]
pub struct CgredError {
    pub socket: String,
    pub pid: i32,
    pub what: &'static str,
    pub error: io::Error,
}

/// What is behind the socket path, found without connecting (a connection
/// closed without a request kills libcgroup 2.0.2's daemon with SIGPIPE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SocketState {
    /// No socket file: no daemon.
    Absent,
    /// A socket file nobody listens on: left over by a daemon that died.
    Stale,
    /// A process listens on it: the daemon runs.
    Listening,
}

/// The state of the socket at `socket`, from the kernel's table of unix
/// sockets (/proc/net/unix): listening means a socket in the listening state
/// is bound to the same file (compared by device and inode, so a path seen
/// through a bind mount or a symlink such as /var/run matches too).
pub fn socket_state(socket: &Path) -> SocketState {
    let Ok(meta) = std::fs::metadata(socket) else {
        return SocketState::Absent;
    };
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    if listening_paths(&table).any(|p| same_file(Path::new(p), &meta)) {
        SocketState::Listening
    } else {
        SocketState::Stale
    }
}

fn same_file(path: &Path, meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
}

/// The paths of listening sockets in a /proc/net/unix table
/// (`Num RefCount Protocol Flags Type St Inode Path`; flag 0x10000 is
/// __SO_ACCEPTCON, set by listen(2)).
fn listening_paths(table: &str) -> impl Iterator<Item = &str> {
    const ACCEPTCON: u32 = 0x10000;
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
        let path = fields.get(7)?;
        (flags & ACCEPTCON != 0 && path.starts_with('/')).then_some(*path)
    })
}

/// Sends one request and waits for the reply.
pub fn request(socket: &Path, pid: i32, what: Request) -> Result<Outcome, CgredError> {
    let err = |what: &'static str, error: io::Error| CgredError {
        socket: socket.display().to_string(),
        pid,
        what,
        error,
    };
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::NoDaemon),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(Outcome::StaleSocket),
        Err(e) => return Err(err("connect", e)),
    };
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|_| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| err("set timeout", e))?;
    let mut message = [0u8; 8];
    message[..4].copy_from_slice(&pid.to_ne_bytes());
    message[4..].copy_from_slice(&(what as i32).to_ne_bytes());
    // MSG_NOSIGNAL: a daemon that already closed must not SIGPIPE slurmstepd.
    // SAFETY: a valid socket fd and an 8-byte buffer.
    let sent = unsafe {
        libc::send(
            stream.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            libc::MSG_NOSIGNAL,
        )
    };
    if sent != message.len() as isize {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::BrokenPipe {
            return Ok(Outcome::NoReply);
        }
        return Err(err("send", e));
    }
    let mut reply = Vec::with_capacity(REPLY.len());
    match stream.read_to_end(&mut reply) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        Err(e) => return Err(err("read reply", e)),
    }
    if reply.is_empty() {
        return Ok(Outcome::NoReply);
    }
    if reply.starts_with(&REPLY[..REPLY.len() - 1]) {
        Ok(Outcome::Stored)
    } else {
        Err(err(
            "unexpected reply",
            io::Error::new(
                io::ErrorKind::InvalidData,
                String::from_utf8_lossy(&reply).into_owned(),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    /// A one-shot daemon that records the request and answers like cgrulesengd.
    fn daemon(
        reply: &'static [u8],
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::thread::JoinHandle<[u8; 8]>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cgred.socket");
        let listener = UnixListener::bind(&path).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf).unwrap();
            s.write_all(reply).unwrap();
            buf
        });
        (dir, path, handle)
    }

    #[test]
    fn a_registration_sends_pid_and_flags_and_reads_success() {
        let (_dir, path, handle) = daemon(b"SUCCESS_STORE_PID\0");
        assert_eq!(
            request(&path, 1234, Request::UnchangedWithChildren).unwrap(),
            Outcome::Stored
        );
        let sent = handle.join().unwrap();
        assert_eq!(i32::from_ne_bytes(sent[..4].try_into().unwrap()), 1234);
        assert_eq!(i32::from_ne_bytes(sent[4..].try_into().unwrap()), 1);
    }

    #[test]
    fn a_close_without_reply_means_the_process_is_gone() {
        let (_dir, path, handle) = daemon(b"");
        assert_eq!(
            request(&path, 99, Request::Unchanged).unwrap(),
            Outcome::NoReply
        );
        handle.join().unwrap();
    }

    #[test]
    fn no_socket_and_a_stale_socket_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cgred.socket");
        assert_eq!(
            request(&path, 1, Request::Unchanged).unwrap(),
            Outcome::NoDaemon
        );
        drop(UnixListener::bind(&path).unwrap());
        assert_eq!(
            request(&path, 1, Request::Unchanged).unwrap(),
            Outcome::StaleSocket
        );
    }

    #[test]
    fn the_socket_state_is_read_without_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cgred.socket");
        assert_eq!(socket_state(&path), SocketState::Absent);
        let listener = UnixListener::bind(&path).unwrap();
        assert_eq!(socket_state(&path), SocketState::Listening);
        drop(listener);
        assert_eq!(socket_state(&path), SocketState::Stale);
    }

    #[test]
    fn listening_sockets_are_found_by_their_flags() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 23595 /var/run/cgred.socket\n\
            0000000000000000: 00000002 00000000 00000000 0001 03 23596 /run/other.socket\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 23597 @abstract\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 23598\n";
        assert_eq!(
            listening_paths(table).collect::<Vec<_>>(),
            vec!["/var/run/cgred.socket"]
        );
    }

    #[test]
    fn a_garbled_reply_is_an_error() {
        let (_dir, path, handle) = daemon(b"NOPE");
        assert!(request(&path, 1, Request::Unchanged).is_err());
        handle.join().unwrap();
    }
}
