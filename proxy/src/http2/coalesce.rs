//! Write coalescing under the HTTP/2 codec: the frames one poll of a connection produces go to
//! the socket in one write instead of one write each.
//!
//! The `h2` codec holds at most one DATA payload at a time and flushes the socket before it
//! takes the next, so a poll that answers ten streams made ten system calls (strace: one
//! `writev` per response under h2load). [`Coalesce`] copies small writes into its buffer and
//! answers a flush by waking the task instead of writing; the first flush (or read) in a later
//! poll of the task, which that wake brings at the latest, writes everything at once. The task
//! counts its polls with [`Counted`]; hyper's client spawns its codec's task itself, through
//! [`CountedSpawn`]. Large writes go straight through when nothing is buffered, so bulk
//! transfers are not copied.

use std::{
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering::Relaxed},
    },
    task::{Context, Poll, ready},
};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes at least this long bypass an empty buffer.
const DIRECT: usize = 8 * 1024;
/// Bytes buffered before a write is forced.
const LIMIT: usize = 32 * 1024;
/// A buffer that grew past this is freed once written, so an idle connection holds none.
const RETAIN: usize = 8 * 1024;

/// `io` with its small writes gathered into one per poll of the task (see the module doc).
pub struct Coalesce<S> {
    io: S,
    buf: Vec<u8>,
    /// How much of `buf` the socket has taken.
    written: usize,
    /// The polls of the task that does the writing.
    polls: Polls,
    /// The poll in which a flush was answered by waking the task instead of writing.
    deferred_in: Option<u32>,
}

impl<S> Coalesce<S> {
    /// Wraps `io`, written by the task whose polls `polls` counts; nothing is allocated until
    /// the first buffered write.
    pub fn new(io: S, polls: Polls) -> Self {
        Self { io, buf: Vec::new(), written: 0, polls, deferred_in: None }
    }

    /// Whether a flush was put off in an earlier poll than this one.
    fn owed_from_earlier_poll(&self) -> bool {
        self.deferred_in.is_some_and(|p| p != self.polls.get())
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out the whole buffer.
    fn write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.written = 0;
        if self.buf.capacity() > RETAIN {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.deferred_in = None;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if me.buf.len() + len > LIMIT {
            ready!(me.write_out(cx))?;
        }
        if me.buf.is_empty() && len >= DIRECT {
            return Pin::new(&mut me.io).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            me.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.buf.is_empty() {
            return Pin::new(&mut me.io).poll_flush(cx);
        }
        if !me.owed_from_earlier_poll() {
            // More frames may follow in this poll; the wake makes sure a later poll comes.
            if me.deferred_in.is_none() {
                me.deferred_in = Some(me.polls.get());
                cx.waker().wake_by_ref();
            }
            return Poll::Ready(Ok(()));
        }
        ready!(me.write_out(cx))?;
        Pin::new(&mut me.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.write_out(cx))?;
        Pin::new(&mut me.io).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        // A later poll that reads and never flushes still sends what was put off. If the
        // socket is full, the write's wake-up brings another poll, and this tries again.
        if me.owed_from_earlier_poll() {
            if let Poll::Ready(Err(e)) = me.write_out(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut me.io).poll_read(cx, buf)
    }
}

/// Counts the polls of the tasks that drive one connection, shared by its [`Coalesce`] and its
/// [`Counted`] futures. A count that other tasks also advance only makes "a later poll" come
/// sooner: less coalescing, never a write held back.
#[derive(Clone, Default)]
pub struct Polls(Arc<AtomicU32>);

impl Polls {
    fn get(&self) -> u32 {
        self.0.load(Relaxed)
    }
}

pin_project! {
    /// `fut`, counting its polls.
    pub struct Counted<F> {
        #[pin]
        fut: F,
        polls: Polls,
    }
}

impl<F> Counted<F> {
    /// `fut`, counting its polls in `polls`.
    pub fn new(fut: F, polls: Polls) -> Self {
        Self { fut, polls }
    }

    /// The future inside.
    pub fn inner(self: Pin<&mut Self>) -> Pin<&mut F> {
        self.project().fut
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let me = self.project();
        // An atomic add: with several tasks on several threads, a load and store could put
        // the count back to a value a deferred flush recorded.
        me.polls.0.fetch_add(1, Relaxed);
        me.fut.poll(cx)
    }
}

/// Spawns each task of one connection with its polls counted: hyper's HTTP/2 client runs the
/// codec in a task it spawns itself, through this.
#[derive(Clone)]
pub struct CountedSpawn(pub Polls);

impl<F> hyper::rt::Executor<F> for CountedSpawn
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Counted::new(fut, self.0.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::AtomicBool,
        task::{Wake, Waker},
    };

    use tokio::{
        io::AsyncReadExt,
        net::{TcpListener, TcpStream},
    };

    use super::*;

    /// A socket that counts the writes that reach it.
    struct Counting {
        io: TcpStream,
        writes: usize,
    }

    impl AsyncWrite for Counting {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
            self.writes += 1;
            Pin::new(&mut self.io).poll_write(cx, b)
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.writes += 1;
            Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    impl AsyncRead for Counting {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            b: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, b)
        }
    }

    #[derive(Default)]
    struct Woken(AtomicBool);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Relaxed);
        }
    }

    /// A coalescing writer over a real loopback connection, and the connection's other end.
    async fn pair() -> (Coalesce<Counting>, Polls, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let polls = Polls::default();
        (Coalesce::new(Counting { io: client, writes: 0 }, polls.clone()), polls, server)
    }

    fn next_poll(polls: &Polls) {
        polls.0.store(polls.get() + 1, Relaxed);
    }

    fn write_and_flush(w: &mut Coalesce<Counting>, cx: &mut Context<'_>, b: &[u8]) {
        assert!(matches!(Pin::new(&mut *w).poll_write(cx, b), Poll::Ready(Ok(n)) if n == b.len()));
        assert!(matches!(Pin::new(&mut *w).poll_flush(cx), Poll::Ready(Ok(()))));
    }

    async fn read_exactly(server: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        server.read_exact(&mut got).await.expect("read");
        got
    }

    #[tokio::test]
    async fn one_poll_of_flushed_writes_leaves_in_one_write_on_the_next_poll() {
        let (mut w, polls, mut server) = pair().await;
        let woken = Arc::new(Woken::default());
        let waker = Waker::from(Arc::clone(&woken));
        let mut cx = Context::from_waker(&waker);
        next_poll(&polls);
        for chunk in [&b"one"[..], b"two", b"three"] {
            write_and_flush(&mut w, &mut cx, chunk);
        }
        assert_eq!(w.io.writes, 0, "nothing is written in the poll that flushed");
        assert!(woken.0.load(Relaxed), "the task is woken so that a later poll writes");
        next_poll(&polls);
        assert!(Pin::new(&mut w).poll_flush(&mut cx).is_ready());
        assert_eq!(w.io.writes, 1);
        assert_eq!(read_exactly(&mut server, 11).await, b"onetwothree");
    }

    #[tokio::test]
    async fn a_later_poll_that_only_reads_still_sends_what_was_put_off() {
        let (mut w, polls, mut server) = pair().await;
        let mut cx = Context::from_waker(Waker::noop());
        next_poll(&polls);
        write_and_flush(&mut w, &mut cx, b"ping");
        next_poll(&polls);
        let mut space = [0u8; 8];
        let mut buf = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut w).poll_read(&mut cx, &mut buf).is_pending(), "the peer sent nothing");
        assert_eq!(read_exactly(&mut server, 4).await, b"ping");
    }

    #[tokio::test]
    async fn large_writes_bypass_an_empty_buffer_and_shutdown_sends_the_rest() {
        let (mut w, polls, mut server) = pair().await;
        let mut cx = Context::from_waker(Waker::noop());
        next_poll(&polls);
        let big = vec![7u8; DIRECT];
        assert!(matches!(Pin::new(&mut w).poll_write(&mut cx, &big), Poll::Ready(Ok(n)) if n == DIRECT));
        assert_eq!(w.io.writes, 1, "written straight away, not copied");
        write_and_flush(&mut w, &mut cx, b"tail");
        assert!(Pin::new(&mut w).poll_shutdown(&mut cx).is_ready());
        let mut all = Vec::new();
        server.read_to_end(&mut all).await.expect("read");
        assert_eq!(all.len(), DIRECT + 4);
        assert!(all.ends_with(b"tail"));
    }
}
