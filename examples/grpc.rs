//! A gRPC service with tonic on this runtime: `helloworld.Greeter`, with a
//! unary method and a server-streaming one, over HTTP/2 (cleartext, prior
//! knowledge).
//!
//! `cargo run --release -p examples --example grpc -- 127.0.0.1:50051`
//! (the address is optional; that one is the default). A client needs the
//! service's description (the `.proto` text in `servers/grpc.rs`; the
//! server has no reflection service): tonic's client, as the integration
//! tests use, or a gRPC tool given that text. Or curl, with one hand-made
//! gRPC frame (`HelloRequest { name: "Ann", count: 3 }`):
//!
//! ```text
//! printf '\0\0\0\0\7\n\3Ann\20\3' > req.bin
//! curl -s --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
//!     -D /dev/stderr --data-binary @req.bin http://127.0.0.1:50051/helloworld.Greeter/SayHellos | xxd
//! ```
//!
//! answers three framed `HelloReply`s, `Hello, Ann! (1 of 3)` to `(3 of
//! 3)`, with the trailer `grpc-status: 0` among the headers on stderr.
//!
//! The service is `examples::servers::grpc` (`servers/grpc.rs`), which the
//! integration tests serve too: prost messages and tonic's server parts
//! (`tonic::server::Grpc` with a prost codec), no `protoc` at build time,
//! served through hyper-util's connection builder on `net::TcpStream` with
//! this runtime's executor and timer. tonic's own server
//! (`tonic::transport::Server`) is not used: it spawns on tokio's runtime
//! and asks for a `Send` connection. See that module for exactly why, and
//! for what has to be `Send`.

#[runtime::main]
async fn main() -> std::io::Result<()> {
    let addr = examples::arg_or("127.0.0.1:50051");
    let listener = net::TcpListener::bind(addr.as_str())?;
    println!("grpc: listening on http://{}", listener.local_addr()?);
    examples::servers::grpc::serve(listener).await;
    Ok(())
}
