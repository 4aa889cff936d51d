//! The `grpc` example's server: a gRPC service with tonic on this runtime,
//! served over HTTP/2 (cleartext, prior knowledge: what tonic's client and
//! `grpcurl -plaintext` speak) by hyper's connection builder.
//!
//! The service, `helloworld.Greeter`, as it would be written in a `.proto`
//! file:
//!
//! ```text
//! service Greeter {
//!   rpc SayHello (HelloRequest) returns (HelloReply);
//!   rpc SayHellos (HelloRequest) returns (stream HelloReply);
//! }
//! message HelloRequest { string name = 1; uint32 count = 2; }
//! message HelloReply { string message = 1; uint64 number = 2; }
//! ```
//!
//! - `SayHello` answers `Hello, NAME!`, numbered in the order the server
//!   answered its greetings (1, 2, ...).
//! - `SayHellos` answers a stream of `count` replies, `Hello, NAME! (I of
//!   COUNT)` numbered 1 to `count`, in order.
//! - An empty name, or a `count` of 0 or above [`MAX_COUNT`], is answered
//!   with the status `INVALID_ARGUMENT`; any other method with
//!   `UNIMPLEMENTED`.
//!
//! # Without `protoc` and without tonic's transport
//!
//! The messages derive [`prost::Message`] by hand (what `tonic-build` would
//! generate from the file above), so building needs no `protoc`. The
//! service is built from tonic's server parts, as generated code is:
//! [`tonic::server::Grpc`] with [`tonic_prost::ProstCodec`] decodes the
//! request and encodes the answer or the status; [`GreeterServer`] is a
//! tower `Service` over `http::Request` that routes by path, the shape of a
//! generated `...Server`, which would be served the same way.
//!
//! tonic's own server (`tonic::transport::Server`, cargo feature `server`)
//! cannot run here, for three reasons in its signatures and body (tonic
//! 0.14): it builds hyper-util's connection builder with `TokioExecutor`
//! and `TokioTimer`, which call `tokio::spawn` and tokio's timers and so
//! need a tokio runtime; `serve_with_incoming` asks the connection for
//! `Send` and tonic's `Connected` (`net::TcpStream` is neither: it holds
//! `Rc`s of this thread's runtime); and it asks the service and its future
//! for `Send`. Only the transport is in the way: here hyper-util's
//! [`TowerToHyperService`] hands the tower service to
//! [`crate::hyper_builder`]'s connection builder (HTTP/2 only), with this
//! runtime's executor and timer, on `net::TcpStream`.
//!
//! # What has to be `Send`
//!
//! Nothing in the unary path: [`Grpc::unary`] does not ask for a `Send`
//! handler, and [`runtime::hyper::Executor`] runs hyper's HTTP/2 stream
//! tasks on this thread; so [`Greeter`]'s state is an `Rc<Cell<u64>>`.
//! A streamed answer is the exception: tonic boxes it into its `Body`,
//! which must be `Send`. `SayHellos` therefore makes its replies in a task
//! on this runtime (which could use the runtime's own I/O and timers, none
//! of them `Send`) and hands them over a bounded `tokio::sync::mpsc`
//! channel, whose receiver is `Send`; when the client goes away the
//! channel closes and the task stops.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_util::Stream;
use hyper::body::Body as HttpBody;
use hyper::http;
use hyper_util::service::TowerToHyperService;
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::Status;
use tonic_prost::ProstCodec;
use tower_service::Service;

/// The full name of the service.
pub const SERVICE: &str = "helloworld.Greeter";
/// The path of the unary method `SayHello`.
pub const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";
/// The path of the server-streaming method `SayHellos`.
pub const SAY_HELLOS: &str = "/helloworld.Greeter/SayHellos";
/// The most replies `SayHellos` sends for one request.
pub const MAX_COUNT: u32 = 10_000;

/// How many streamed replies wait in a channel for the connection to take
/// them before `SayHellos`'s task waits.
const STREAM_BACKLOG: usize = 16;

/// Any error of a request body.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request of both methods.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet; must not be empty.
    #[prost(string, tag = "1")]
    pub name: String,
    /// How many replies `SayHellos` sends (1 to [`MAX_COUNT`]); `SayHello`
    /// ignores it.
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

/// One reply.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
    /// `SayHello`: the greeting's place among those the server answered;
    /// `SayHellos`: the reply's place in its stream; both from 1.
    #[prost(uint64, tag = "2")]
    pub number: u64,
}

/// The answer of `SayHellos`: a `Send` stream of replies.
pub type ReplyStream = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>;

/// The service's logic and state, shared by every connection of the
/// server's thread.
#[derive(Clone, Debug, Default)]
pub struct Greeter {
    /// `SayHello` greetings answered so far.
    greeted: Rc<Cell<u64>>,
}

impl Greeter {
    /// `SayHello`.
    pub fn say_hello(&self, request: HelloRequest) -> Result<HelloReply, Status> {
        check_name(&request.name)?;
        let number = self.greeted.get() + 1;
        self.greeted.set(number);
        Ok(HelloReply {
            message: format!("Hello, {}!", request.name),
            number,
        })
    }

    /// `SayHellos`: checks the request, then starts the task that makes the
    /// replies (see the module docs for why a task) and answers its stream.
    ///
    /// # Panics
    ///
    /// If no runtime is running on this thread.
    pub fn say_hellos(&self, request: HelloRequest) -> Result<ReplyStream, Status> {
        check_name(&request.name)?;
        let count = request.count;
        if count == 0 || count > MAX_COUNT {
            return Err(Status::invalid_argument(format!(
                "count must be 1 to {MAX_COUNT}, not {count}"
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BACKLOG);
        drop(runtime::spawn(async move {
            for i in 1..=count {
                let reply = HelloReply {
                    message: format!("Hello, {}! ({i} of {count})", request.name),
                    number: u64::from(i),
                };
                if tx.send(Ok(reply)).await.is_err() {
                    // The client cancelled the call or hung up.
                    return;
                }
            }
        }));
        let replies = futures_util::stream::unfold(rx, |mut rx| async move {
            let reply = rx.recv().await?;
            Some((reply, rx))
        });
        Ok(Box::pin(replies))
    }
}

/// An empty name is an invalid argument.
fn check_name(name: &str) -> Result<(), Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument("name must not be empty"));
    }
    Ok(())
}

/// `SayHello` as tonic's [`Grpc::unary`] calls it.
struct SayHello(Greeter);

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = Ready<Result<tonic::Response<HelloReply>, Status>>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        ready(
            self.0
                .say_hello(request.into_inner())
                .map(tonic::Response::new),
        )
    }
}

/// `SayHellos` as tonic's [`Grpc::server_streaming`] calls it.
struct SayHellos(Greeter);

impl ServerStreamingService<HelloRequest> for SayHellos {
    type Response = HelloReply;
    type ResponseStream = ReplyStream;
    type Future = Ready<Result<tonic::Response<ReplyStream>, Status>>;

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        ready(
            self.0
                .say_hellos(request.into_inner())
                .map(tonic::Response::new),
        )
    }
}

/// The gRPC service as a tower `Service` over `http::Request`: routes each
/// request by its path to a method, which tonic's [`Grpc`] decodes and
/// answers (a reply, a stream of replies, or a status in the trailers).
#[derive(Clone, Debug, Default)]
pub struct GreeterServer {
    greeter: Greeter,
}

impl GreeterServer {
    /// The service over `greeter`.
    pub fn new(greeter: Greeter) -> GreeterServer {
        GreeterServer { greeter }
    }
}

impl NamedService for GreeterServer {
    const NAME: &'static str = SERVICE;
}

impl<B> Service<http::Request<B>> for GreeterServer
where
    B: HttpBody + Send + 'static,
    B::Error: Into<BoxError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    /// Not `Send`: this runtime does not ask for it.
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let greeter = self.greeter.clone();
        match request.uri().path() {
            SAY_HELLO => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::default());
                Ok(grpc.unary(SayHello(greeter), request).await)
            }),
            SAY_HELLOS => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::default());
                Ok(grpc.server_streaming(SayHellos(greeter), request).await)
            }),
            path => {
                let status = Status::unimplemented(format!("no method {path}"));
                Box::pin(ready(Ok(status.into_http())))
            }
        }
    }
}

/// Serves the `Greeter` service on every connection `listener` accepts,
/// forever, on this runtime.
///
/// Each connection is served by [`crate::hyper_builder`]'s builder made
/// HTTP/2 only (gRPC is HTTP/2; an HTTP/1.1 client is refused), through
/// hyper-util's [`TowerToHyperService`]. All connections share one
/// [`Greeter`].
pub async fn serve(listener: net::TcpListener) {
    let builder = crate::hyper_builder().http2_only();
    let server = GreeterServer::default();
    loop {
        let (stream, _) = crate::accept(&listener, "grpc").await;
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let service = TowerToHyperService::new(server.clone());
        runtime::spawn(async move {
            if let Err(e) = builder.serve_connection(stream, service).await {
                eprintln!("grpc: connection ended: {e}");
            }
        });
    }
}
