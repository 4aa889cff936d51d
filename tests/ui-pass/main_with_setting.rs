// A Builder setting given by name.
#[runtime::main(entries = 64)]
async fn main() {}
