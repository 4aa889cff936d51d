//! The `#[runtime::main]` and `#[runtime::test]` attributes.
//!
//! Both turn an `async fn` into an ordinary sync fn that builds a fresh
//! `::runtime::Runtime` with `::runtime::Runtime::builder()` and blocks on
//! the function's body. Use them through the `runtime` crate, which
//! re-exports them as `runtime::main` and `runtime::test`; the expansion
//! names `::runtime`, so that crate must be a dependency under that name.
//!
//! # Settings
//!
//! Both attributes take an optional comma-separated list of `name = value`
//! pairs. Each becomes the call `.name(value)` on the `runtime::Builder`
//! before `.build()`, in the order written, so any Builder setting can be
//! given by name and its value is any expression of the right type:
//!
//! ```ignore
//! #[runtime::main(entries = 4096, sqpoll = std::time::Duration::from_millis(10))]
//! async fn main() { /* ... */ }
//! ```
//!
//! `threads = N` is the exception: it runs the body on each worker of a
//! `runtime::Pool` of N (see [`macro@main`]).
//!
//! An unknown setting is a compile error at its name; a setting given twice,
//! or an argument that is not `name = value`, is a compile error at it.
//!
//! # Misuse
//!
//! Misuse is reported as a compile error at the offending code, never as a
//! panic of the macro: a function that is not `async`, takes arguments, is
//! generic, `const`, `unsafe` or `extern`, and for `#[runtime::test]` a
//! second `#[test]` attribute.

#![warn(missing_docs)]

mod expand;
mod settings;

use proc_macro::TokenStream;

use expand::Kind;

/// Runs an `async fn main` on a fresh runtime.
///
/// Put it on `async fn main()` or `async fn main() -> T`. It expands to a
/// sync `fn main() -> T` with the same attributes, visibility and return
/// type, which builds the runtime and blocks on the body:
///
/// ```ignore
/// #[runtime::main]
/// async fn main() -> std::io::Result<()> {
///     let listener = net::TcpListener::bind("127.0.0.1:7000")?;
///     // ...
///     Ok(())
/// }
/// ```
///
/// becomes, roughly,
///
/// ```ignore
/// fn main() -> std::io::Result<()> {
///     // The user's function under another name: errors in the body are
///     // reported exactly as in any `async fn`.
///     async fn __runtime_body() -> std::io::Result<()> {
///         let listener = net::TcpListener::bind("127.0.0.1:7000")?;
///         // ...
///         Ok(())
///     }
///     match ::runtime::Runtime::builder().build() {
///         Ok(runtime) => runtime.block_on(__runtime_body()),
///         Err(error) => {
///             eprintln!("error: cannot start the runtime: {}", error);
///             std::process::exit(1)
///         }
///     }
/// }
/// ```
///
/// If the runtime cannot start (for example because the kernel has no `io_uring`), the
/// program prints `error: cannot start the runtime: <the io::Error>` to
/// stderr and exits with status 1.
///
/// # Settings
///
/// `name = value` pairs become Builder calls `.name(value)` before
/// `.build()`:
///
/// ```ignore
/// #[runtime::main(entries = 4096, max_blocking_threads = 16)]
/// async fn main() {
///     runtime::yield_now().await;
/// }
/// ```
///
/// # Several workers: `threads = N`
///
/// `threads = N` is not a Builder call: main starts a `runtime::Pool` of N
/// workers (the other settings apply to every worker's runtime), runs the
/// body once on each and returns when every body has returned:
///
/// ```ignore
/// #[runtime::main(threads = 4, entries = 1024)]
/// async fn main() -> std::io::Result<()> {
///     let listener = net::TcpListener::bind_reuseport("127.0.0.1:7000")?;
///     // ... one accept loop per worker
///     Ok(())
/// }
/// ```
///
/// becomes, roughly,
///
/// ```ignore
/// fn main() -> std::io::Result<()> {
///     async fn __runtime_body() -> std::io::Result<()> { /* the body */ }
///     let builder = ::runtime::Runtime::builder().entries(1024);
///     match ::runtime::Pool::builder().threads(4).runtime(builder).build() {
///         Ok(pool) => PoolMainOutput::combine(pool.run(|_| __runtime_body())),
///         Err(error) => { /* as above: print, exit(1) */ }
///     }
/// }
/// ```
///
/// The return type must then be `()` or a `Result` whose `Ok` and `Err`
/// are `Send`: the first `Err` in worker order is the result, else worker
/// 0's `Ok`. A panic in a body is resumed once every worker has finished.
/// `#[runtime::test(threads = N)]` does the same for a test.
///
/// Every body must return for `main` to return: a worker whose body fails
/// early (say its `bind_reuseport` is refused) does not stop the others,
/// so a server whose workers loop forever should stop them itself on an
/// error (for example by raising a shutdown signal they all listen for).
///
/// The function does not have to be named `main`; it must be an `async fn`
/// without arguments or generics.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Main, args.into(), item.into()).into()
}

/// Runs an `async fn` test on a fresh runtime.
///
/// Put it on `async fn name()` or `async fn name() -> T`, where `T` is a
/// test return type such as `std::io::Result<()>`. It expands to a
/// `#[test] fn name() -> T` that builds a runtime and blocks on the body;
/// failing to build the runtime panics, so the test fails with
/// `cannot start the runtime`. Other attributes, such as `#[should_panic]`
/// or `#[ignore]`, are kept.
///
/// ```ignore
/// #[runtime::test]
/// async fn yields() {
///     runtime::yield_now().await;
/// }
///
/// #[runtime::test(entries = 64)]
/// #[should_panic(expected = "boom")]
/// async fn panics() {
///     panic!("boom");
/// }
/// ```
///
/// It takes the same `name = value` Builder settings as
/// [`macro@main`]. Do not add `#[test]` yourself: the attribute does.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(Kind::Test, args.into(), item.into()).into()
}
