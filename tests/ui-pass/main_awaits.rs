// The body is async: it can await the runtime's futures.
#[runtime::main]
async fn main() {
    runtime::yield_now().await;
}
