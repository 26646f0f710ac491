//! What Pillion forwards, case by case, on raw bytes: each message goes through the proxy to a
//! recording upstream with a strict parser of its own (`pillion_e2e::recorder`), and the test
//! checks what the client got and exactly what the upstream framed. Nothing that reaches the
//! upstream may be something a strict parser frames or routes differently. nginx and haproxy get
//! the same cases as a comparison, printed as a table (theirs is not ours to assert).

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pillion_e2e::{
    Proxy,
    process::{find_program, free_addr},
    recorder::{self, Arrival, Recorded, Recorder},
};

/// What the client must get.
enum Want {
    /// This status, and for a local reply its `x-pillion-error`.
    Status(u16, Option<&'static str>),
    /// A check of the whole answer.
    Answer(fn(&str) -> Result<(), String>),
}

/// What the upstream must have framed.
enum Upstream {
    /// Nothing at all.
    Nothing,
    /// One request, passing this check.
    One(fn(&Recorded) -> Result<(), String>),
}

struct Case {
    name: &'static str,
    send: &'static [u8],
    /// The upstream's answer, when the case is about responses.
    respond: Option<&'static [u8]>,
    /// Shut down the client's sending side after the request.
    half_close: bool,
    want: Want,
    upstream: Upstream,
}

const fn case(name: &'static str, send: &'static [u8], want: Want, upstream: Upstream) -> Case {
    Case { name, send, respond: None, half_close: false, want, upstream }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn served(r: &Recorded) -> Result<(), String> {
    check(r.line == "GET / HTTP/1.1" && r.all("host") == ["x"], || format!("{r:?}"))
}

fn refused(status: u16, code: &'static str) -> Want {
    Want::Status(status, Some(code))
}

const OK: Want = Want::Status(200, None);

fn cases() -> Vec<Case> {
    use Upstream::{Nothing, One};
    vec![
        // Host: validated, one in any version, and the absolute-form target's authority wins.
        case("two Host on HTTP/1.0", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", refused(400, "bad-host"), Nothing),
        case("no Host on HTTP/1.1", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", refused(400, "bad-host"), Nothing),
        case("empty Host", b"GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n", refused(400, "bad-host"), Nothing),
        case("Host with a space", b"GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n", refused(400, "bad-host"), Nothing),
        case("Host list", b"GET / HTTP/1.1\r\nHost: a, b\r\nConnection: close\r\n\r\n", refused(400, "bad-host"), Nothing),
        case("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@a\r\nConnection: close\r\n\r\n", refused(400, "bad-host"), Nothing),
        case(
            "absolute-form target replaces Host",
            b"GET http://a.example/p?q HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n",
            OK,
            One(|r| check(r.line == "GET /p?q HTTP/1.1" && r.all("host") == ["a.example"], || format!("{r:?}"))),
        ),
        case(
            "HTTP/1.0 absolute-form target",
            b"GET http://a.example:8080/ HTTP/1.0\r\n\r\n",
            OK,
            One(|r| check(r.all("host") == ["a.example:8080"], || format!("{r:?}"))),
        ),
        case(
            "Connection names Host",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Host, close\r\n\r\n",
            OK,
            One(served),
        ),
        // Target forms.
        case("authority-form GET", b"GET a.example:80 HTTP/1.1\r\nHost: a.example\r\n\r\n", refused(400, "bad-target"), Nothing),
        case("asterisk GET", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", refused(400, "bad-target"), Nothing),
        case("fragment in the target", b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", refused(400, "bad-target"), Nothing),
        case(
            "OPTIONS absolute without a path",
            b"OPTIONS http://a.example HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n",
            OK,
            One(|r| check(r.line == "OPTIONS * HTTP/1.1" && r.all("host") == ["a.example"], || format!("{r:?}"))),
        ),
        case("ftp target", b"GET ftp://a.example/f HTTP/1.1\r\nHost: a.example\r\n\r\n", refused(400, "bad-target"), Nothing),
        case(
            "asterisk OPTIONS",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            OK,
            One(|r| check(r.line == "OPTIONS * HTTP/1.1", || format!("{r:?}"))),
        ),
        // CONNECT: refused, and what follows it never becomes a request.
        case(
            "CONNECT and a request behind it",
            b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
            Want::Answer(|a| {
                check(a.starts_with("HTTP/1.1 405") && a.matches("HTTP/1.1 ").count() == 1, || a.to_owned())?;
                check(a.contains("x-pillion-error: connect-not-supported"), || a.to_owned())
            }),
            Nothing,
        ),
        // h2c: served as a plain request, its upgrade fields gone.
        case(
            "h2c upgrade",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            OK,
            One(|r| {
                let gone = ["upgrade", "http2-settings"].iter().all(|n| r.all(n).is_empty());
                check(gone && !r.all("connection").iter().any(|v| v.to_ascii_lowercase().contains("upgrade")), || {
                    format!("{r:?}")
                })
            }),
        ),
        // Chunk extensions: to the grammar, CRLF-bounded.
        case(
            "CR inside a chunk extension",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n",
            refused(400, "bad-framing"),
            Nothing,
        ),
        case(
            "quoted extension across CRLF",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0;a=\"\r\ncontent-length: 5\r\n\"\r\n\r\n",
            refused(400, "bad-framing"),
            Nothing,
        ),
        case(
            "valid extensions are dropped",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5 ; a=\"q;\\\"x\" ;b\r\nhello\r\n0\r\n\r\n",
            OK,
            One(|r| check(r.body == b"hello", || format!("{r:?}"))),
        ),
        // Trailers: only fields allowed in trailers go on.
        case(
            "request trailers",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\nx-sum: 1\r\ncontent-length: 9\r\nhost: evil\r\nx-pillion-client-id: spiffe://forged\r\n\r\n",
            OK,
            One(|r| check(r.body == b"hi" && r.trailers == [("x-sum".into(), "1".into())], || format!("{r:?}"))),
        ),
        // Framing the proxy refuses (as `hardening.rs` does, here checked at the upstream too).
        case("gzip, chunked", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", refused(400, "bad-framing"), Nothing),
        case("chunked, gzip", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", refused(400, "bad-framing"), Nothing),
        case("CL and TE", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", refused(400, "bad-framing"), Nothing),
        case("two lengths", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", refused(400, "bad-framing"), Nothing),
        case("chunked on HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", refused(400, "bad-framing"), Nothing),
        case("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", refused(400, "bad-framing"), Nothing),
        case("obs-fold", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", refused(400, "bad-request"), Nothing),
        case("space before colon", b"GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", refused(400, "bad-request"), Nothing),
        case("bare LF", b"GET / HTTP/1.1\r\nHost: x\n\r\n", refused(400, "bad-line-ending"), Nothing),
        case("bare CR", b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", refused(400, "bad-line-ending"), Nothing),
        case("bare LF before the request line", b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", refused(400, "bad-line-ending"), Nothing),
        case("bare CR before the request line", b"\rGET / HTTP/1.1\r\nHost: x\r\n\r\n", refused(400, "bad-line-ending"), Nothing),
        case("empty lines before the request line", b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", OK, One(served)),
        // Half-close: a whole request, then the client's FIN: it is answered.
        Case { half_close: true, ..case("half-close after the request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", OK, One(served)) },
        // Responses: trailers filtered, ambiguous framing refused, bad chunks cut short.
        Case {
            respond: Some(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-sum: 1\r\nset-cookie: a=b\r\ncontent-length: 9\r\n\r\n"),
            ..case(
                "response trailers",
                b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close, TE\r\n\r\n",
                Want::Answer(|a| {
                    let trailers = a.rsplit_once("\r\n0\r\n").map_or("", |(_, t)| t);
                    check(a.starts_with("HTTP/1.1 200") && trailers == "x-sum: 1\r\n\r\n", || a.to_owned())
                }),
                One(served),
            )
        },
        Case {
            respond: Some(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
            ..case("response with CL and TE", b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Want::Status(502, Some("upstream-reset")), One(served))
        },
        Case {
            respond: Some(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2;a\rb\r\nok\r\n0\r\n\r\n"),
            ..case(
                "response chunk extension with CR",
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                Want::Answer(|a| check(!a.contains("ok") && !a.ends_with("0\r\n\r\n"), || a.to_owned())),
                One(served),
            )
        },
    ]
}

/// Sends a case's bytes and returns all that came back until the proxy closed, or until it
/// sent nothing for `quiet` (a peer that keeps the connection open).
fn exchange(addr: SocketAddr, c: &Case, quiet: Duration) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the proxy");
    s.set_read_timeout(Some(quiet)).expect("read timeout");
    s.write_all(c.send).expect("send the case");
    if c.half_close {
        s.shutdown(Shutdown::Write).expect("half-close");
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of the comparison: status, and what the upstream framed.
fn summary(answer: &str, arrivals: &[Arrival]) -> String {
    let status = answer.get(9..12).filter(|_| answer.starts_with("HTTP/1.")).unwrap_or("---");
    let unframeable = arrivals.iter().filter(|a| matches!(a, Arrival::Unframeable { .. })).count();
    let up = match (arrivals.len(), unframeable) {
        (0, _) => "-".to_owned(),
        (n, 0) => format!("{n} req"),
        (n, u) => format!("{n} req, {u} UNFRAMEABLE"),
    };
    format!("{status} {up}")
}

fn run_pillion(recorder: &Recorder) -> Vec<String> {
    let listener = free_addr();
    let cfg = format!(
        "admin: {{bind: \"{{admin}}\"}}\ninbound: {{bind: \"{}\"}}\noutbound:\n  listeners: [{{bind: \"{listener}\", service: app}}]\nservices:\n  - {{name: app, protocol: http1, endpoints: [{{addr: \"{}\"}}]}}\n",
        free_addr(),
        recorder.addr
    );
    let _proxy = Proxy::start(&cfg);
    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for c in cases() {
        recorder.respond_with(c.respond.unwrap_or(recorder::OK));
        let answer = exchange(listener, &c, Duration::from_secs(10));
        let arrivals = recorder.take();
        rows.push(summary(&answer, &arrivals));
        let client = match c.want {
            Want::Status(status, code) => {
                let line = format!("HTTP/1.1 {status} ");
                let named = code.is_none_or(|code| answer.contains(&format!("x-pillion-error: {code}\r\n")));
                check(answer.starts_with(&line) && named, || format!("answer {answer:?}"))
            }
            Want::Answer(f) => f(&answer),
        };
        let upstream = match (&c.upstream, arrivals.as_slice()) {
            (Upstream::Nothing, []) => Ok(()),
            (Upstream::One(f), [Arrival::Request(r)]) => f(r),
            (_, got) => Err(format!("upstream got {got:?}")),
        };
        for e in [client, upstream].into_iter().filter_map(Result::err) {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n")
    );
    rows
}

/// How long a peer's silence ends a comparison case: they keep some connections open, and
/// their rows are not asserted.
const PEER_QUIET: Duration = Duration::from_secs(2);

/// A peer proxy, killed when dropped, and the directory of its config.
struct Peer {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_peer(name: &str, upstream: SocketAddr, listen: SocketAddr) -> Option<Peer> {
    let Some(bin) = find_program(name) else {
        pillion_e2e::skip(&format!("needs {name}"), &format!("differential::comparison_with_{name}"));
        return None;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display();
    let (file, text, args) = if name == "nginx" {
        // As root, nginx's worker would run as `nobody`, which cannot use this root-owned dir.
        let user = if pillion_e2e::netns::is_root() { "user root;" } else { "" };
        let text = format!(
            "{user}\nworker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
             \x20 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             \x20 scgi_temp_path {d}/scgi;\n  server {{ listen {listen}; location / {{ proxy_pass http://{upstream}; \
             proxy_http_version 1.1; proxy_set_header Host $http_host; }} }}\n}}\n"
        );
        let conf = format!("{d}/nginx.conf");
        (
            conf.clone(),
            text,
            vec!["-p".to_owned(), d.to_string(), "-e".into(), format!("{d}/error.log"), "-c".into(), conf],
        )
    } else {
        let text = format!(
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n\n\
             frontend f\n  bind {listen}\n  default_backend up\n\nbackend up\n  server up {upstream}\n"
        );
        let conf = format!("{d}/haproxy.cfg");
        (conf.clone(), text, vec!["-db".to_owned(), "-f".into(), conf])
    };
    std::fs::write(&file, text).expect("write the peer's config");
    let child = Command::new(bin)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start peer");
    let peer = Peer { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(listen).is_err() {
        assert!(Instant::now() < deadline, "{name} did not listen on {listen}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(peer)
}

#[test]
fn what_reaches_the_upstream_is_what_a_strict_parser_reads_the_same_way() {
    let recorder = Recorder::start();
    let ours = run_pillion(&recorder);
    let mut table = vec![("pillion", ours)];
    for name in ["nginx", "haproxy"] {
        let listen = free_addr();
        let Some(_peer) = start_peer(name, recorder.addr, listen) else { continue };
        let rows = cases()
            .iter()
            .map(|c| {
                recorder.respond_with(c.respond.unwrap_or(recorder::OK));
                let answer = exchange(listen, c, PEER_QUIET);
                summary(&answer, &recorder.take())
            })
            .collect();
        table.push((name, rows));
    }
    let mut out = format!("{:<40}", "case");
    for (name, _) in &table {
        out += &format!(" | {name:<24}");
    }
    for (i, c) in cases().iter().enumerate() {
        out += &format!("\n{:<40}", c.name);
        for (_, rows) in &table {
            out += &format!(" | {:<24}", rows[i]);
        }
    }
    // Straight to stderr, past the harness's capture: the comparison is the point of the run.
    let _ = writeln!(std::io::stderr(), "{out}");
}
