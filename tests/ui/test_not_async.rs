// `#[runtime::test]` needs an `async fn`: the error points at `fn`.
#[runtime::test]
fn not_async() {}

fn main() {}
