//! A gRPC service with tonic on this runtime: `helloworld.Greeter`, with a
//! unary method and a server-streaming one, over HTTP/2 (cleartext, prior
//! knowledge).
//!
//! `cargo run --release -p examples --example grpc -- 127.0.0.1:50051`
//! (the address is optional; that one is the default). Any gRPC client
//! works given the service's description (in `servers/grpc.rs`; the server
//! has no reflection service), e.g. tonic's client, or `grpcurl -plaintext
//! -proto greeter.proto -d '{"name":"Ann","count":3}' 127.0.0.1:50051
//! helloworld.Greeter/SayHellos`.
//!
//! The service is `examples::servers::grpc` (`servers/grpc.rs`), which the
//! integration tests serve too: prost messages and tonic's server parts
//! (`tonic::server::Grpc` with a prost codec), no `protoc` at build time,
//! served through hyper-util's connection builder on `net::TcpStream` with
//! this runtime's executor and timer. tonic's own transport is not used
//! (it needs tokio's runtime); see that module for why, and for what has
//! to be `Send`.

#[runtime::main]
async fn main() -> std::io::Result<()> {
    let addr = examples::arg_or("127.0.0.1:50051");
    let listener = net::TcpListener::bind(addr.as_str())?;
    println!("grpc: listening on http://{}", listener.local_addr()?);
    examples::servers::grpc::serve(listener).await;
    Ok(())
}
