// A setting can be given once: the error points at the second one.
#[runtime::main(entries = 64, entries = 128)]
async fn main() {}
