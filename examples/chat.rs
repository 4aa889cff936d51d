//! A line-based chat server: every line a client sends goes to every other
//! client, prefixed with the sender's name; joins and leaves are announced.
//!
//! `cargo run --release -p examples --example chat -- 127.0.0.1:8084`
//! (the address is optional; that one is the default), then, in two or
//! more terminals, `nc 127.0.0.1 8084` (first line: a name).
//!
//! The server (`examples::servers::chat`, `servers/chat.rs`, which the
//! integration tests run too) reads and writes lines with tokio-util's
//! `Framed` + `LinesCodec` over `net::TcpStream`, and the room is a
//! `tokio::sync::broadcast` channel, which needs no tokio runtime.

#[runtime::main]
async fn main() -> std::io::Result<()> {
    let addr = examples::arg_or("127.0.0.1:8084");
    let listener = net::TcpListener::bind(addr.as_str())?;
    println!("chat: listening on {}", listener.local_addr()?);
    examples::servers::chat::serve(listener).await;
    Ok(())
}
