// Settings are `name = value`: a bare value is an error at that value.
#[runtime::main(4096)]
async fn main() {}
