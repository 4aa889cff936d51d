//! A JSON API with axum on this runtime: an in-memory todo list with
//! routing, shared state and JSON errors.
//!
//! `cargo run --release -p examples --example axum -- 127.0.0.1:8082`
//! (the address is optional; that one is the default), then
//!
//! ```text
//! curl -d '{"title":"milk"}' -H 'content-type: application/json' http://127.0.0.1:8082/items
//! curl http://127.0.0.1:8082/items
//! curl -X PATCH -d '{"done":true}' -H 'content-type: application/json' http://127.0.0.1:8082/items/1
//! curl -X DELETE http://127.0.0.1:8082/items/1
//! curl http://127.0.0.1:8082/items/1        # 404 {"error":"no item 1"}
//! ```
//!
//! The application (routes, state, errors) is
//! `examples::servers::todo` (`servers/todo.rs`), which the integration
//! tests serve too. axum's `Router` is a tower `Service`; it is served
//! through hyper's connection builder on this runtime, not `axum::serve`
//! (which needs tokio's runtime). See that module for why its state is an
//! `Arc<Mutex<..>>` though everything runs on one thread.

#[runtime::main]
async fn main() -> std::io::Result<()> {
    let addr = examples::arg_or("127.0.0.1:8082");
    let listener = net::TcpListener::bind(addr.as_str())?;
    println!("axum: listening on http://{}", listener.local_addr()?);
    examples::servers::todo::serve(listener).await;
    Ok(())
}
