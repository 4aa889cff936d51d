// `main` can return `io::Result` and use `?` in its body.
#[runtime::main]
async fn main() -> std::io::Result<()> {
    let dir = std::env::current_dir()?;
    let _ = dir;
    Ok(())
}
