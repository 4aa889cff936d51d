//! The poll-style I/O traits on `net::TcpStream` and `net::UnixStream`
//! (features `tokio-io`, `futures-io`), held to API.md's rules: a read that
//! returns `Pending` or is given up loses no bytes; a write that returned
//! `Pending` and is re-polled with other bytes sends only those; flush and
//! shutdown; and the ecosystem on top (tokio-util codecs, futures-io
//! helpers).

use std::io::{Read as _, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use integration_tests::on_runtime;
use net::{TcpListener, TcpStream, UnixStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);

async fn tcp_pair() -> (TcpStream, std::net::TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (server, client)
}

/// A writer thread sends 0, 1, 2, ... (as u32s) in small bursts with pauses,
/// while the reader keeps giving up its reads with a short timeout (often
/// while they are pending, sometimes while bytes arrive). Every value must
/// arrive once, in order: a read that was given up took nothing.
#[test]
fn reads_given_up_under_a_timeout_lose_nothing() {
    on_runtime(LIMIT, move || async move {
        let (mut server, mut client) = tcp_pair().await;
        const N: u32 = 20_000;
        let writer = std::thread::spawn(move || {
            for chunk in (0..N).collect::<Vec<_>>().chunks(97) {
                let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
                client.write_all(&bytes).unwrap();
                std::thread::sleep(Duration::from_micros(200));
            }
            client
        });
        let mut got: Vec<u8> = Vec::new();
        let mut given_up = 0u32;
        while got.len() < N as usize * 4 {
            let mut buf = [0u8; 1000];
            let read = runtime::time::timeout(
                Duration::from_micros(150),
                AsyncReadExt::read(&mut server, &mut buf),
            );
            match read.await {
                Ok(res) => {
                    let n = res.unwrap();
                    assert!(n > 0, "end of stream before all values arrived");
                    got.extend_from_slice(&buf[..n]);
                }
                Err(_elapsed) => given_up += 1,
            }
        }
        let _client = writer.join().unwrap();
        assert!(
            given_up > 0,
            "no read was given up: the test proved nothing"
        );
        for (i, v) in got.chunks(4).enumerate() {
            let v = u32::from_le_bytes(v.try_into().unwrap());
            assert_eq!(v, i as u32, "value {i} lost or reordered");
        }
    });
}

/// A read that stops short marks the socket drained, and the next read
/// waits for readiness without asking the socket first. Bytes that arrived
/// in between must still be found at once: the peer writes after the short
/// read and before the next one, and that read must return them (it would
/// hang until the runtime's limit, failing the test, if the wait missed
/// bytes already there). The same for a write that was taken in part.
#[test]
fn bytes_arriving_after_a_short_read_are_found() {
    on_runtime(LIMIT, || async {
        let (mut server, mut client) = tcp_pair().await;
        for round in 0..200u32 {
            client.write_all(&round.to_le_bytes()).unwrap();
            let mut buf = [0u8; 64];
            // Short (4 of 64 bytes): the socket is drained now.
            let n = AsyncReadExt::read(&mut server, &mut buf).await.unwrap();
            assert_eq!(&buf[..n], &round.to_le_bytes()[..n]);
            let mut have = n;
            while have < 4 {
                have += AsyncReadExt::read(&mut server, &mut buf[have..4])
                    .await
                    .unwrap();
            }
            // More bytes come in before the next read is polled.
            client.write_all(b"next").unwrap();
            let mut next = [0u8; 4];
            AsyncReadExt::read_exact(&mut server, &mut next)
                .await
                .unwrap();
            assert_eq!(&next, b"next");
        }
        // The last bytes and the end of the stream arrive together: the
        // short read that takes the bytes is followed by the end (0), not
        // by a wait for a wake-up that already happened.
        client.write_all(b"tail").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 64];
        let mut tail = Vec::new();
        loop {
            let n = AsyncReadExt::read(&mut server, &mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
        }
        assert_eq!(tail, b"tail");

        // Writes: fill the send side until a write is taken only in part,
        // let the peer drain it all, then the next write must go out.
        let mut cx = Context::from_waker(Waker::noop());
        let chunk = vec![7u8; 256 * 1024];
        let mut sent = 0usize;
        loop {
            match Pin::new(&mut server).poll_write(&mut cx, &chunk) {
                Poll::Ready(Ok(n)) if n < chunk.len() => {
                    sent += n;
                    break;
                }
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) => panic!("write failed: {e}"),
                Poll::Pending => break,
            }
        }
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; sent + 3];
            client.read_exact(&mut got).unwrap();
            got
        });
        AsyncWriteExt::write_all(&mut server, b"end").await.unwrap();
        let got = reader.join().unwrap();
        assert!(got[..got.len() - 3].iter().all(|&x| x == 7));
        assert_eq!(&got[got.len() - 3..], b"end");
    });
}

/// h2's pattern: a write returns `Pending` (the socket's buffer is full),
/// and the next poll offers other bytes. Only the bytes of the writes that
/// returned `Ready(Ok(n))` (their first `n`), then the new ones, may reach
/// the peer.
#[test]
fn a_pending_write_repolled_with_other_bytes_sends_only_those() {
    on_runtime(LIMIT, || async {
        let (mut server, mut client) = tcp_pair().await;
        let mut cx = Context::from_waker(Waker::noop());
        let a = vec![b'a'; 64 * 1024];
        let mut accepted = 0usize;
        let mut pendings = 0;
        // Fill the socket until a write is not taken.
        loop {
            match Pin::new(&mut server).poll_write(&mut cx, &a) {
                Poll::Ready(Ok(n)) => accepted += n,
                Poll::Ready(Err(e)) => panic!("write failed: {e}"),
                Poll::Pending => {
                    pendings += 1;
                    break;
                }
            }
        }
        assert_eq!(pendings, 1);
        // The peer drains everything that was taken, in a thread.
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; accepted + 5];
            client.read_exact(&mut got).unwrap();
            got
        });
        // Re-polled with other bytes: they go out once there is room.
        let b = b"BBBBB";
        let n = std::future::poll_fn(|cx| Pin::new(&mut server).poll_write(cx, b))
            .await
            .unwrap();
        assert!(n > 0);
        AsyncWriteExt::write_all(&mut server, &b[n..])
            .await
            .unwrap();
        AsyncWriteExt::flush(&mut server).await.unwrap();
        let got = reader.join().unwrap();
        assert!(got[..accepted].iter().all(|&x| x == b'a'));
        assert_eq!(&got[accepted..], b, "bytes of the pending write were sent");
    });
}

/// Flush has nothing to wait for; shutdown ends the write side (the peer
/// reads the end of stream) and the read side still works.
#[test]
fn flush_and_shutdown() {
    on_runtime(LIMIT, || async {
        let (mut server, mut client) = tcp_pair().await;
        // The inherent owned-buffer methods (`write_all(buf)` taking the
        // buffer) shadow the extension traits' methods of the same name:
        // call those through the trait.
        AsyncWriteExt::write_all(&mut server, b"last words")
            .await
            .unwrap();
        AsyncWriteExt::flush(&mut server).await.unwrap();
        AsyncWriteExt::shutdown(&mut server).await.unwrap();
        let mut all = Vec::new();
        client.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"last words");
        client.write_all(b"reply").unwrap();
        drop(client);
        let mut back = Vec::new();
        AsyncReadExt::read_to_end(&mut server, &mut back)
            .await
            .unwrap();
        assert_eq!(back, b"reply");
        // Writing after the shutdown is the kernel's EPIPE.
        let err = AsyncWriteExt::write_all(&mut server, b"x")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    });
}

/// An empty read buffer reads nothing and returns at once.
#[test]
fn empty_buffers_return_at_once() {
    on_runtime(LIMIT, || async {
        let (mut server, _client) = tcp_pair().await;
        let mut cx = Context::from_waker(Waker::noop());
        let mut empty = [0u8; 0];
        let mut rb = tokio::io::ReadBuf::new(&mut empty);
        assert!(matches!(
            Pin::new(&mut server).poll_read(&mut cx, &mut rb),
            Poll::Ready(Ok(()))
        ));
        assert!(matches!(
            Pin::new(&mut server).poll_write(&mut cx, &[]),
            Poll::Ready(Ok(0))
        ));
    });
}

/// tokio-util's `Framed` + `LinesCodec` over a Unix stream pair, both ends
/// on this runtime: lines both ways, then the end of stream.
#[test]
fn codec_round_trips() {
    on_runtime(LIMIT, || async {
        use tokio_util::codec::{Framed, LinesCodec};
        let (a, b) = UnixStream::pair().unwrap();
        let mut a = Framed::new(a, LinesCodec::new());
        let mut b = Framed::new(b, LinesCodec::new());
        let echo = runtime::spawn(async move {
            while let Some(line) = b.next().await {
                let line = line.unwrap();
                b.send(format!("echo: {line}")).await.unwrap();
            }
        });
        for i in 0..500 {
            a.send(format!("line {i}")).await.unwrap();
            assert_eq!(a.next().await.unwrap().unwrap(), format!("echo: line {i}"));
        }
        let long = "x".repeat(200_000);
        a.send(long.clone()).await.unwrap();
        assert_eq!(a.next().await.unwrap().unwrap(), format!("echo: {long}"));
        drop(a);
        echo.await.unwrap();
    });
}

/// The futures traits: `write_all`, `close`, `read_to_end`.
#[test]
fn futures_io_read_to_end_write_all_close() {
    on_runtime(LIMIT, || async {
        let (a, b) = UnixStream::pair().unwrap();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let expected = payload.clone();
        let writer = runtime::spawn(async move {
            let mut a = a;
            futures_util::AsyncWriteExt::write_all(&mut a, &payload)
                .await
                .unwrap();
            futures_util::AsyncWriteExt::close(&mut a).await.unwrap();
            a
        });
        let mut b = b;
        let mut got = Vec::new();
        futures_util::AsyncReadExt::read_to_end(&mut b, &mut got)
            .await
            .unwrap();
        assert!(got == expected, "received bytes differ");
        let _a = writer.await.unwrap();
    });
}

/// A stream dropped while its poll-style read and write wait in the ring:
/// the waits are cancelled and nothing is left in flight.
#[test]
fn dropping_a_stream_with_waits_in_flight_leaves_nothing() {
    on_runtime(LIMIT, || async {
        let before = runtime::op::in_flight();
        let (mut server, _client) = tcp_pair().await;
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 16];
        let mut rb = tokio::io::ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut server)
            .poll_read(&mut cx, &mut rb)
            .is_pending());
        let big = vec![0u8; 1 << 20];
        while Pin::new(&mut server).poll_write(&mut cx, &big).is_ready() {}
        assert!(runtime::op::in_flight() >= before + 2);
        drop(server);
        for _ in 0..1000 {
            if runtime::op::in_flight() <= before {
                break;
            }
            runtime::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(runtime::op::in_flight() <= before, "waits left in flight");
    });
}
