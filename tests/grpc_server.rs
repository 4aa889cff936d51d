//! The `grpc` example's service (`examples::servers::grpc`: tonic's server
//! parts behind hyper's HTTP/2 connection builder on this runtime, the code
//! the example runs), called by tonic's own client on a tokio runtime in
//! another thread: unary calls one after another and concurrently on one
//! channel, server-streamed answers, every error status, and a stream the
//! client drops halfway.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use examples::servers::grpc::{
    HelloReply, HelloRequest, MAX_COUNT, SAY_HELLO, SAY_HELLOS, SERVICE,
};
use futures_util::StreamExt;
use hyper::http::uri::PathAndQuery;
use integration_tests::{on_runtime, tokio_rt};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

const LIMIT: Duration = Duration::from_secs(120);

/// How long a call may take before the client fails it.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves the `Greeter` on this runtime while `client` runs on its own
/// thread with the server's address; returns the client's result.
async fn with_server<T: Send + 'static>(
    client: impl FnOnce(SocketAddr) -> T + Send + 'static,
) -> T {
    let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = runtime::spawn(examples::servers::grpc::serve(listener));
    let out = runtime::spawn_blocking(move || client(addr)).await.unwrap();
    server.abort();
    out
}

/// Runs `calls` with a `Greeter` client (one HTTP/2 connection) on tokio,
/// against the server on this runtime.
fn with_client<T, F>(calls: impl FnOnce(Greeter) -> F + Send + 'static) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T>,
{
    on_runtime(LIMIT, move || {
        with_server(move |addr| {
            tokio_rt().block_on(async move { calls(Greeter::new(connect(addr).await)).await })
        })
    })
}

/// A channel (one HTTP/2 connection) to the server at `addr`.
async fn connect(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(IO_TIMEOUT)
        .connect_timeout(IO_TIMEOUT)
        .connect()
        .await
        .expect("connect to the gRPC server")
}

/// A client of `helloworld.Greeter` on tonic's client parts, as
/// `tonic-build` would generate it.
#[derive(Clone)]
struct Greeter {
    grpc: tonic::client::Grpc<Channel>,
}

impl Greeter {
    fn new(channel: Channel) -> Greeter {
        Greeter {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    fn request(name: &str, count: u32) -> tonic::Request<HelloRequest> {
        tonic::Request::new(HelloRequest {
            name: name.to_string(),
            count,
        })
    }

    /// Calls the unary method at `path`.
    async fn unary(&mut self, path: &'static str, name: &str) -> Result<HelloReply, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let reply = self
            .grpc
            .unary(
                Greeter::request(name, 0),
                PathAndQuery::from_static(path),
                ProstCodec::default(),
            )
            .await?;
        Ok(reply.into_inner())
    }

    /// `SayHello`.
    async fn say_hello(&mut self, name: &str) -> Result<HelloReply, Status> {
        self.unary(SAY_HELLO, name).await
    }

    /// `SayHellos`: the stream of replies.
    async fn say_hellos(
        &mut self,
        name: &str,
        count: u32,
    ) -> Result<tonic::Streaming<HelloReply>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let replies = self
            .grpc
            .server_streaming(
                Greeter::request(name, count),
                PathAndQuery::from_static(SAY_HELLOS),
                ProstCodec::default(),
            )
            .await?;
        Ok(replies.into_inner())
    }

    /// `SayHellos`, every reply until the stream ends.
    async fn say_hellos_all(&mut self, name: &str, count: u32) -> Result<Vec<HelloReply>, Status> {
        let mut stream = self.say_hellos(name, count).await?;
        let mut replies = Vec::new();
        while let Some(reply) = stream.message().await? {
            replies.push(reply);
        }
        Ok(replies)
    }
}

/// The replies `SayHellos` owes for `name` and `count`.
fn expected_stream(name: &str, count: u32) -> Vec<HelloReply> {
    (1..=count)
        .map(|i| HelloReply {
            message: format!("Hello, {name}! ({i} of {count})"),
            number: u64::from(i),
        })
        .collect()
}

#[test]
fn unary_calls_in_sequence_and_concurrently_on_one_channel() {
    let numbers = with_client(|mut greeter| async move {
        let mut numbers = Vec::new();
        // One after another.
        for i in 0..100 {
            let name = format!("seq-{i}");
            let reply = greeter.say_hello(&name).await.unwrap();
            assert_eq!(reply.message, format!("Hello, {name}!"));
            numbers.push(reply.number);
        }
        // 200 at once on the same channel (one HTTP/2 connection, one
        // stream per call), answered by the server's HTTP/2 stream tasks.
        let calls = (0..200).map(|i| {
            let mut greeter = greeter.clone();
            async move {
                let name = format!("concurrent-{i}-{}", "x".repeat(i * 7));
                let reply = greeter.say_hello(&name).await.unwrap();
                assert_eq!(reply.message, format!("Hello, {name}!"));
                reply.number
            }
        });
        numbers.extend(futures_util::future::join_all(calls).await);
        numbers
    });
    // The server's one counter (an `Rc<Cell<u64>>` shared by its stream
    // tasks) numbered every greeting once: in order for the calls in
    // sequence, and 101 to 300 in some order for the concurrent ones.
    assert_eq!(numbers[..100], (1..=100).collect::<Vec<u64>>()[..]);
    let concurrent: BTreeSet<u64> = numbers[100..].iter().copied().collect();
    assert_eq!(concurrent, (101..=300).collect::<BTreeSet<u64>>());
}

#[test]
fn server_streaming_answers_every_reply_in_order() {
    with_client(|mut greeter| async move {
        assert_eq!(
            greeter.say_hellos_all("Ann", 1).await.unwrap(),
            expected_stream("Ann", 1)
        );
        // More replies than the server's channel and HTTP/2's initial
        // window hold, so both sides wait on each other.
        let name = "B".repeat(2000);
        assert_eq!(
            greeter.say_hellos_all(&name, MAX_COUNT).await.unwrap(),
            expected_stream(&name, MAX_COUNT)
        );
        // Streams and unary calls at once on the channel.
        let streams = (1..=8u32).map(|i| {
            let mut greeter = greeter.clone();
            async move {
                let name = format!("stream-{i}");
                let count = i * 50;
                let replies = greeter.say_hellos_all(&name, count).await.unwrap();
                assert_eq!(replies, expected_stream(&name, count));
            }
        });
        let unary = async {
            let mut greeter = greeter.clone();
            for i in 0..50 {
                let name = format!("between-{i}");
                let reply = greeter.say_hello(&name).await.unwrap();
                assert_eq!(reply.message, format!("Hello, {name}!"));
            }
        };
        futures_util::future::join(futures_util::future::join_all(streams), unary).await;
    });
}

#[test]
fn errors_come_back_as_their_status_codes() {
    with_client(|mut greeter| async move {
        let status = greeter.say_hello("").await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.message(), "name must not be empty");

        // A streaming call refused before its first reply.
        let status = greeter.say_hellos_all("", 3).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.message(), "name must not be empty");
        for count in [0, MAX_COUNT + 1] {
            let status = greeter.say_hellos_all("Ann", count).await.unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
            assert_eq!(
                status.message(),
                format!("count must be 1 to {MAX_COUNT}, not {count}")
            );
        }

        // A method the service does not have.
        let path = "/helloworld.Greeter/SayGoodbye";
        let status = greeter.unary(path, "Ann").await.unwrap_err();
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        assert_eq!(status.message(), format!("no method {path}"));
        assert!(path.starts_with(&format!("/{SERVICE}/")));

        // The connection is still good after every error.
        let reply = greeter.say_hello("Ann").await.unwrap();
        assert_eq!(reply.message, "Hello, Ann!");
        assert_eq!(reply.number, 1, "no error counted as a greeting");
    });
}

#[test]
fn a_stream_dropped_halfway_stops_its_producer_and_the_server_serves_on() {
    use tokio::sync::oneshot;
    const ROUNDS: u64 = 5;
    on_runtime(LIMIT, || async {
        let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = runtime::spawn(examples::servers::grpc::serve(listener));
        let (connected_tx, connected) = oneshot::channel();
        let (counted_tx, counted) = oneshot::channel();
        let (dropped_tx, dropped) = oneshot::channel();
        let (checked_tx, checked) = oneshot::channel::<()>();
        let client = runtime::spawn_blocking(move || {
            tokio_rt().block_on(async move {
                let mut greeter = Greeter::new(connect(addr).await);
                greeter.say_hello("first").await.unwrap();
                connected_tx.send(()).unwrap();
                counted.await.unwrap();
                for round in 0..ROUNDS {
                    let mut stream = greeter.say_hellos("Ann", MAX_COUNT).await.unwrap();
                    for i in 1..=3 {
                        let reply = stream.next().await.unwrap().unwrap();
                        assert_eq!(reply.number, i, "round {round}");
                    }
                    // The client cancels the call (an HTTP/2 RST_STREAM).
                    drop(stream);
                    let reply = greeter.say_hello(&format!("after-{round}")).await.unwrap();
                    assert_eq!(reply.message, format!("Hello, after-{round}!"));
                    assert_eq!(reply.number, round + 2);
                }
                dropped_tx.send(()).unwrap();
                checked.await.unwrap();
                let replies = greeter.say_hellos_all("Bo", 20).await.unwrap();
                assert_eq!(replies, expected_stream("Bo", 20));
            })
        });
        // (A client that panics drops its senders: the `expect`s below
        // fail, and the client's own panic message is printed above.)
        connected.await.expect("the client failed");
        // The server's tasks with the connection open and idle: the accept
        // loop and the connection (and perhaps the first call's stream
        // task, finishing).
        let before = runtime::metrics().tasks_alive;
        counted_tx.send(()).unwrap();
        dropped.await.expect("the client failed");
        // Each cancelled stream's producing task sees its channel closed
        // and ends; one that did not would stay blocked on its full
        // channel. Bounded wait for the count to come back.
        let mut polls = 0;
        loop {
            let alive = runtime::metrics().tasks_alive;
            if alive <= before {
                break;
            }
            polls += 1;
            assert!(
                polls < 2000,
                "{alive} tasks alive, {before} before {ROUNDS} cancelled streams"
            );
            runtime::time::sleep(Duration::from_millis(10)).await;
        }
        checked_tx.send(()).unwrap();
        client.await.unwrap();
        server.abort();
    });
}

#[test]
fn an_http1_client_is_refused_and_the_server_keeps_serving() {
    on_runtime(LIMIT, || {
        with_server(|addr| {
            // gRPC is HTTP/2 only: an HTTP/1.1 request is not served, and
            // the server closes the connection.
            let mut conn = std::net::TcpStream::connect(addr).unwrap();
            conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap();
            let mut answer = Vec::new();
            match conn.read_to_end(&mut answer) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("the server did not close the connection: {e}"),
            }
            assert!(
                !answer.starts_with(b"HTTP/1.1"),
                "answered as HTTP/1.1: {:?}",
                String::from_utf8_lossy(&answer)
            );
            // A gRPC client is still served.
            tokio_rt().block_on(async move {
                let reply = Greeter::new(connect(addr).await)
                    .say_hello("Ann")
                    .await
                    .unwrap();
                assert_eq!(reply.message, "Hello, Ann!");
            });
        })
    });
}
