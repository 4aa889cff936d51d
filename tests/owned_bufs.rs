//! Buffers a user already has (`API.md`, "Buffers and files a user already
//! has"): `Arc<[u8]>` and `Rc<[u8]>` written without a copy, and with the
//! runtime's `bytes` feature (enabled by this crate's Cargo.toml)
//! `bytes::Bytes` written and `bytes::BytesMut` read into like a `Vec`.
//!
//! Every test runs under `on_runtime`, so a hang fails.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use integration_tests::{on_runtime, payload};
use net::{TcpListener, TcpStream, UnixStream};
use runtime::buf::IoBuf;
use runtime::io::OwnedRead;

/// The limit of every test (a healthy run takes well under a second).
const LIMIT: Duration = Duration::from_secs(60);

/// One `Arc<[u8]>` written to several sockets at once: every write holds a
/// clone of the same allocation (never a copy) while it is in flight, each
/// gives back the very same `Arc`, and every peer receives the bytes intact.
#[test]
fn one_arc_goes_to_many_sockets_without_a_copy() {
    on_runtime(LIMIT, || async {
        const PEERS: usize = 6;
        // Larger than a Unix socket's buffer: no write can finish before its
        // peer reads, so all of them are in flight together.
        let data: Arc<[u8]> = Arc::from(payload(7, 1 << 20));
        let mut writers = Vec::new();
        let mut readers = Vec::new();
        for _ in 0..PEERS {
            let (a, b) = UnixStream::pair().unwrap();
            let buf = data.clone();
            writers.push(runtime::spawn(async move { a.write_all(buf).await }));
            readers.push(b);
        }
        for _ in 0..10 {
            runtime::yield_now().await;
        }
        assert_eq!(
            Arc::strong_count(&data),
            PEERS + 1,
            "each write in flight holds one clone of the same Arc"
        );
        for b in &readers {
            let (res, got) = b.read_exact(Vec::with_capacity(data.len())).await;
            res.unwrap();
            assert!(got[..] == data[..], "a peer got different bytes");
        }
        for w in writers {
            let (res, back) = w.await.unwrap();
            res.unwrap();
            assert!(
                Arc::ptr_eq(&back, &data),
                "the write gave back another buffer"
            );
        }
        assert_eq!(Arc::strong_count(&data), 1, "a clone was leaked");

        // Over TCP too, with a slice of the Arc and writev of two clones.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let small: Arc<[u8]> = Arc::from(&b"0123456789"[..]);
        let (res, _) = client.write_all(small.clone().slice(2..5)).await;
        res.unwrap();
        let (res, bufs) = client.writev(vec![small.clone(), small.clone()]).await;
        assert_eq!(res.unwrap(), 20);
        assert!(bufs.iter().all(|b| Arc::ptr_eq(b, &small)));
        let (res, got) = server.read_exact(Vec::with_capacity(23)).await;
        res.unwrap();
        assert_eq!(&got[..], b"23401234567890123456789");
    });
}

/// `Rc<[u8]>` to a socket and to a file.
#[test]
fn rc_slices_are_written_as_they_are() {
    on_runtime(LIMIT, || async {
        let data: Rc<[u8]> = Rc::from(&b"reference counted"[..]);
        let (a, b) = UnixStream::pair().unwrap();
        let (res, back) = a.write_all(data.clone()).await;
        res.unwrap();
        assert!(Rc::ptr_eq(&back, &data));
        let (res, got) = b.read_exact(Vec::with_capacity(data.len())).await;
        res.unwrap();
        assert_eq!(&got[..], &data[..]);

        let path = std::env::temp_dir().join(format!("owned-bufs-rc-{}", std::process::id()));
        fs::write(&path, data.clone()).await.unwrap();
        assert_eq!(fs::read(&path).await.unwrap(), &data[..]);
        fs::remove_file(&path).await.unwrap();
        assert_eq!(Rc::strong_count(&data), 2, "only `back` and `data` remain");
    });
}

/// `bytes::Bytes` written (a static one and a shared one); `BytesMut` read
/// into: the bytes go after its length, into its spare capacity, and the
/// length grows; `read_exact` fills it to its capacity; a full `BytesMut`
/// reads `Ok(0)` at once.
#[test]
fn bytes_are_written_and_bytes_mut_is_read_into() {
    on_runtime(LIMIT, || async {
        let (a, b) = UnixStream::pair().unwrap();
        let (res, back) = a.write_all(Bytes::from_static(b"static")).await;
        res.unwrap();
        assert_eq!(&back[..], b"static");
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b">");
        let (res, buf) = b.read(buf).await;
        assert_eq!(res.unwrap(), 6);
        assert_eq!(&buf[..], b">static", "the read appends after the length");

        let shared = Bytes::from(b" shared".to_vec());
        let (res, back) = a.write_all(shared.clone()).await;
        res.unwrap();
        assert_eq!(back.as_ptr(), shared.as_ptr(), "the same bytes came back");
        let (res, buf) = b.read(buf).await;
        assert_eq!(res.unwrap(), 7);
        assert_eq!(&buf[..], b">static shared");

        // read_exact fills a BytesMut up to its capacity.
        let want = BytesMut::with_capacity(100);
        let data = payload(3, want.capacity());
        let (res, _) = a.write_all(data.clone()).await;
        res.unwrap();
        let (res, got) = b.read_exact(want).await;
        res.unwrap();
        assert_eq!(&got[..], &data[..]);

        // No room: Ok(0) at once, the buffer unchanged.
        let mut full = BytesMut::with_capacity(4);
        let cap = full.capacity();
        full.extend_from_slice(&vec![1u8; cap]);
        let (res, full) = b.read(full).await;
        assert_eq!(res.unwrap(), 0);
        assert_eq!(full.len(), cap);

        // Through the stream trait and from a file.
        let (res, _) = a.write_all(b"trait".to_vec()).await;
        res.unwrap();
        let (res, got) = OwnedRead::read(&b, BytesMut::with_capacity(16)).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(&got[..], b"trait");
        let path = std::env::temp_dir().join(format!("owned-bufs-bytes-{}", std::process::id()));
        fs::write(&path, Bytes::from_static(b"file bytes"))
            .await
            .unwrap();
        let file = fs::File::open(&path).await.unwrap();
        let (res, got) = file.read_at(BytesMut::with_capacity(32), 5).await;
        assert_eq!(res.unwrap(), 5);
        assert_eq!(&got[..], b"bytes");
        file.close().await.unwrap();
        fs::remove_file(&path).await.unwrap();
    });
}
