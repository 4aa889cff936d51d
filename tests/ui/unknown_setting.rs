// Each setting is a Builder method: an unknown one is an error at its name.
#[runtime::main(entries = 64, no_such_setting = 1)]
async fn main() {}
