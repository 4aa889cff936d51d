// `#[runtime::main]` needs an `async fn`: the error points at `fn`.
#[runtime::main]
fn main() {}
