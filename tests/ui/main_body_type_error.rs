// An error in the body points at the user's code, not at the attribute.
#[runtime::main]
async fn main() -> std::io::Result<()> {
    let count = 5;
    count
}
