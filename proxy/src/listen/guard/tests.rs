//! The guard's clocks on a paused runtime clock: when an idle connection ends, and that activity
//! moves the deadline even though the timer is not re-polled on every read.

use std::time::Duration;

use prometheus::{IntCounterVec, Opts};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, DuplexStream},
    time::Instant,
};

use super::*;

fn guarded(idle: Duration) -> (DuplexStream, Guarded<DuplexStream>, IntCounterVec) {
    let (client, server) = tokio::io::duplex(1024);
    let counter = IntCounterVec::new(Opts::new("rejected", "test"), &["direction", "reason"]).unwrap();
    let rejections = Rejections::new(counter.clone(), crate::metrics::Direction::Outbound);
    let limits = ListenerLimits { idle_timeout: idle, ..ListenerLimits::default() };
    let peer = "127.0.0.1:1".parse().unwrap();
    (client, Guarded::new(server, &limits, peer, rejections), counter)
}

#[tokio::test(start_paused = true)]
async fn reads_move_the_idle_deadline_and_silence_then_ends_the_connection() {
    let start = Instant::now();
    let (mut client, mut guard, counter) = guarded(Duration::from_secs(10));
    let mut buf = [0u8; 16];
    // Reads that find nothing for a while (each poll after the first takes the skip).
    for _ in 0..3 {
        assert!(tokio::time::timeout(Duration::from_secs(2), guard.read(&mut buf)).await.is_err());
    }
    // Data at 6 s: the deadline moves from 10 s to 16 s, though the timer stays set for 10 s.
    client.write_all(b"a").await.unwrap();
    assert_eq!(guard.read(&mut buf).await.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(6));
    // The timer fires at 10 s, finds the connection active since, and is set again.
    assert_eq!(guard.read(&mut buf).await.unwrap(), 0, "end of stream once idle");
    assert_eq!(start.elapsed(), Duration::from_secs(16));
    assert_eq!(
        counter.with_label_values(&["outbound", "header-timeout"]).get(),
        0,
        "idle is not a rejection"
    );
}
