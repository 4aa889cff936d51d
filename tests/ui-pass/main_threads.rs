// The body runs once on each of two workers; the first Err would be main's.
#[runtime::main(threads = 2, entries = 64)]
async fn main() -> std::io::Result<()> {
    let me = runtime::worker_index().expect("on a pool worker");
    assert!(me < 2);
    runtime::yield_now().await;
    Ok(())
}
