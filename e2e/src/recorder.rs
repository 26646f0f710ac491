//! A recording HTTP/1.1 upstream with a strict parser of its own (not the proxy's): it frames
//! every request it is sent by RFC 9112 read literally (CRLF only, one `Host`, `Content-Length` or
//! `chunked` alone, extensions and trailers to the grammar), keeps what it parsed, and answers
//! each request with the one response it was given. Bytes it cannot frame are kept as such: a
//! proxy in front of it must never send them.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::Duration,
};

/// A request as the recorder framed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The request line, as sent.
    pub line: String,
    /// The fields, in order, names lowercased.
    pub fields: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Trailer fields, names lowercased.
    pub trailers: Vec<(String, String)>,
}

impl Recorded {
    /// Every value of the field `name` (lowercase).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// What reached the recorder: a framed request, or bytes it refused and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// A request it framed.
    Request(Recorded),
    /// Bytes that are not a request a strict parser frames one way only.
    Unframeable {
        /// Why.
        why: String,
        /// The bytes, lossily as text.
        bytes: String,
    },
}

/// The recording upstream: runs until the test ends.
pub struct Recorder {
    /// Where it listens.
    pub addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    response: Arc<Mutex<Vec<u8>>>,
}

/// The response given until [`Recorder::respond_with`] changes it.
pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";

impl Recorder {
    /// Starts one on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recorder");
        let addr = listener.local_addr().expect("recorder address");
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let response = Arc::new(Mutex::new(OK.to_vec()));
        let (a, r) = (arrivals.clone(), response.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (a, r) = (a.clone(), r.clone());
                std::thread::spawn(move || serve(stream, &a, &r));
            }
        });
        Self { addr, arrivals, response }
    }

    /// Answers every request from now on with these bytes.
    pub fn respond_with(&self, raw: &[u8]) {
        *self.response.lock().expect("recorder lock") = raw.to_vec();
    }

    /// What arrived since the last call, and starts afresh.
    pub fn take(&self) -> Vec<Arrival> {
        std::mem::take(&mut *self.arrivals.lock().expect("recorder lock"))
    }
}

fn serve(mut stream: TcpStream, arrivals: &Mutex<Vec<Arrival>>, response: &Mutex<Vec<u8>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match frame(&buf) {
            Ok(Some((req, used))) => {
                buf.drain(..used);
                arrivals.lock().expect("recorder lock").push(Arrival::Request(req));
                let out = response.lock().expect("recorder lock").clone();
                if stream.write_all(&out).is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(why) => {
                let bytes = String::from_utf8_lossy(&buf).into_owned();
                arrivals.lock().expect("recorder lock").push(Arrival::Unframeable { why, bytes });
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => {
                if !buf.is_empty() {
                    let bytes = String::from_utf8_lossy(&buf).into_owned();
                    let why = "connection ended inside a request".to_owned();
                    arrivals.lock().expect("recorder lock").push(Arrival::Unframeable { why, bytes });
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One request from the front of `buf` and the bytes it took; `None` until it is all there.
fn frame(buf: &[u8]) -> Result<Option<(Recorded, usize)>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return no_bare_ending(buf).map(|()| None);
    };
    let head = &buf[..end];
    no_bare_ending(head)?;
    let text = std::str::from_utf8(head).map_err(|_| "head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default().to_owned();
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) || parts[2] != "HTTP/1.1" {
        return Err(format!("request line {line:?}"));
    }
    let fields = lines.map(field).collect::<Result<Vec<_>, _>>()?;
    let one = |name: &str| fields.iter().filter(|(n, _)| n == name).count();
    if one("host") != 1 {
        return Err("not exactly one host".into());
    }
    let length: Vec<&str> =
        fields.iter().filter(|(n, _)| n == "content-length").map(|(_, v)| v.as_str()).collect();
    let te: Vec<&str> =
        fields.iter().filter(|(n, _)| n == "transfer-encoding").map(|(_, v)| v.as_str()).collect();
    let start = end + 4;
    let (body, trailers, used) = match (length.as_slice(), te.as_slice()) {
        ([], []) => (Vec::new(), Vec::new(), start),
        ([n], []) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            let n: usize = n.parse().map_err(|_| "content-length too large".to_owned())?;
            if buf.len() < start + n {
                return Ok(None);
            }
            (buf[start..start + n].to_vec(), Vec::new(), start + n)
        }
        ([], ["chunked"]) => match chunked(&buf[start..])? {
            Some((body, trailers, n)) => (body, trailers, start + n),
            None => return Ok(None),
        },
        _ => return Err(format!("framing: content-length {length:?}, transfer-encoding {te:?}")),
    };
    Ok(Some((Recorded { line, fields, body, trailers }, used)))
}

/// `name: value`, the name a token, the value without CTLs, trimmed of SP/HTAB.
fn field(line: &str) -> Result<(String, String), String> {
    let (name, value) = line.split_once(':').ok_or_else(|| format!("field without a colon: {line:?}"))?;
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(tchar) {
        return Err(format!("field name {name:?}"));
    }
    if value.chars().any(|c| c.is_ascii_control() && c != '\t') {
        return Err(format!("control byte in the value of {name}"));
    }
    Ok((name.to_ascii_lowercase(), value.trim_matches([' ', '\t']).to_owned()))
}

/// A chunked body: its data, trailers, and length on the wire; `None` until it is all there.
/// Chunk lines are `HEX` alone: the proxy frames bodies anew, and sends no extensions.
type Chunked = (Vec<u8>, Vec<(String, String)>, usize);
fn chunked(buf: &[u8]) -> Result<Option<Chunked>, String> {
    let (mut at, mut body) = (0, Vec::new());
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else { return Ok(None) };
        let size = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| "chunk size".to_owned())?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("chunk line {size:?}"));
        }
        let n = usize::from_str_radix(size, 16).map_err(|_| "chunk size".to_owned())?;
        at += eol + 2;
        if n == 0 {
            break;
        }
        if buf.len() < at + n + 2 {
            return Ok(None);
        }
        if &buf[at + n..at + n + 2] != b"\r\n" {
            return Err("chunk data longer than its size".into());
        }
        body.extend_from_slice(&buf[at..at + n]);
        at += n + 2;
    }
    let mut trailers = Vec::new();
    loop {
        let Some(eol) = find(&buf[at..], b"\r\n") else { return Ok(None) };
        let line = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| "trailer".to_owned())?;
        at += eol + 2;
        if line.is_empty() {
            return Ok(Some((body, trailers, at)));
        }
        trailers.push(field(line)?);
    }
}

fn no_bare_ending(bytes: &[u8]) -> Result<(), String> {
    for (i, &b) in bytes.iter().enumerate() {
        let bare = match b {
            b'\n' => i == 0 || bytes[i - 1] != b'\r',
            b'\r' => bytes.get(i + 1).is_some_and(|&n| n != b'\n'),
            _ => false,
        };
        if bare {
            return Err(format!("bare CR or LF at byte {i}"));
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
