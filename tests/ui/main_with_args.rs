// `main` takes no arguments: the error points at them.
#[runtime::main]
async fn main(port: u16, verbose: bool) {
    let _ = (port, verbose);
}
