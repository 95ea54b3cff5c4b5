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

/// Whether a daemon listens (without sending it a request).
pub fn socket_present(socket: &Path) -> bool {
    socket.exists()
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
    fn a_garbled_reply_is_an_error() {
        let (_dir, path, handle) = daemon(b"NOPE");
        assert!(request(&path, 1, Request::Unchanged).is_err());
        handle.join().unwrap();
    }
}
