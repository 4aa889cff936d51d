//! Turning an `async fn` into a sync fn that runs its body on a fresh
//! `::runtime::Runtime`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Ident, ItemFn, Signature};

use crate::settings::Settings;

/// Which attribute is being expanded.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Main,
    Test,
}

impl Kind {
    fn attribute(self) -> &'static str {
        match self {
            Self::Main => "#[runtime::main]",
            Self::Test => "#[runtime::test]",
        }
    }
}

/// Expands `#[runtime::main(args)]` or `#[runtime::test(args)]` on `item`.
///
/// Never panics: every misuse becomes a `compile_error!` spanned at the
/// offending tokens. Where possible the function is still expanded next to
/// the error, so that only the real mistake is reported.
pub(crate) fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    let Ok(function) = syn::parse2::<ItemFn>(item.clone()) else {
        let message = format!("{} can only be used on an `async fn`", kind.attribute());
        let mut error = syn::Error::new_spanned(&item, message).to_compile_error();
        error.extend(item);
        return error;
    };

    let (mut settings, settings_error) = match syn::parse2::<Settings>(args) {
        Ok(settings) => (settings, None),
        Err(error) => (Settings::default(), Some(error.to_compile_error())),
    };

    if let Err(error) = check(kind, &function) {
        let error = error.to_compile_error();
        let stub = stub(kind, &function);
        return quote!(#settings_error #error #stub);
    }

    let threads = settings.take_threads();
    let expanded = match kind {
        Kind::Main => expand_main(&function, &settings, threads.as_ref()),
        Kind::Test => expand_test(&function, &settings, threads.as_ref()),
    };
    quote!(#settings_error #expanded)
}

/// Rejects every signature that the expansion cannot turn into a sync fn
/// with no arguments, collecting all the mistakes at once.
fn check(kind: Kind, function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    let attribute = kind.attribute();
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut error = |tokens: &dyn ToTokens, message: String| {
        errors.push(syn::Error::new_spanned(tokens, message));
    };

    if sig.asyncness.is_none() {
        error(
            &sig.fn_token,
            format!("the `async` keyword is missing from the function declaration: {attribute} needs an `async fn`"),
        );
    }
    if let Some(constness) = &sig.constness {
        error(
            constness,
            format!("{attribute} cannot be used on a `const fn`"),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        error(
            unsafety,
            format!("{attribute} cannot be used on an `unsafe fn`"),
        );
    }
    if let Some(abi) = &sig.abi {
        error(abi, format!("{attribute} cannot be used on an `extern` fn"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        error(
            &sig.generics,
            format!("{attribute} functions cannot be generic"),
        );
    }
    if !sig.inputs.is_empty() || sig.variadic.is_some() {
        let arguments: TokenStream = match &sig.variadic {
            Some(variadic) => {
                let inputs = &sig.inputs;
                quote!(#inputs #variadic)
            }
            None => sig.inputs.to_token_stream(),
        };
        error(
            &arguments,
            format!("{attribute} functions cannot take arguments"),
        );
    }
    if let Kind::Test = kind {
        for attr in function.attrs.iter().filter(|attr| is_test_attribute(attr)) {
            error(
                attr,
                "#[runtime::test] already marks the function as a test: remove this attribute"
                    .to_owned(),
            );
        }
    }

    match errors.into_iter().reduce(|mut all, next| {
        all.combine(next);
        all
    }) {
        Some(errors) => Err(errors),
        None => Ok(()),
    }
}

/// `#[test]`, `#[core::prelude::v1::test]` and the like.
fn is_test_attribute(attr: &Attribute) -> bool {
    let path = attr.path();
    path.is_ident("test")
        || (path.segments.len() > 1
            && path
                .segments
                .last()
                .is_some_and(|last| last.ident == "test")
            && path
                .segments
                .first()
                .is_some_and(|first| first.ident == "core" || first.ident == "std"))
}

/// Stands in for a function whose signature was rejected, so that the error
/// is not followed by "`main` function not found" and the like.
fn stub(kind: Kind, function: &ItemFn) -> TokenStream {
    match kind {
        Kind::Main => {
            let vis = &function.vis;
            let ident = &function.sig.ident;
            quote!(#[allow(dead_code)] #vis fn #ident() {})
        }
        Kind::Test => TokenStream::new(),
    }
}

/// The pieces that both expansions share.
struct Parts<'a> {
    attrs: &'a [Attribute],
    /// `vis fn name() -> T`: the user's signature without `async`.
    sig: Signature,
    /// `async fn __runtime_body() -> T { user's block }`: the user's
    /// function itself under another name, so that every error in the body,
    /// its tail expression and its `?` conversions is reported exactly as it
    /// would be in an `async fn`. It captures nothing: the function has no
    /// arguments and no generics.
    body: TokenStream,
    /// `__runtime_body()`: the future to block on.
    future: TokenStream,
    /// `__runtime_body`: the function, for a pool to call on every worker.
    body_fn: Ident,
    /// `::runtime::Runtime::builder().setting(value)...`
    builder: TokenStream,
}

fn parts<'a>(function: &'a ItemFn, settings: &Settings) -> Parts<'a> {
    let mut sig = function.sig.clone();
    sig.asyncness = None;
    let block = &function.block;
    let output = &sig.output;
    let span = sig.ident.span();
    let body_fn = Ident::new("__runtime_body", span);
    // The user wrote `async` because the attribute asks for it, awaiting
    // or not.
    let body = quote_spanned! {span=>
        #[allow(clippy::unused_async)]
        async fn #body_fn() #output #block
    };
    let future = quote_spanned!(span=> #body_fn());
    let builder_calls = settings.builder_calls();
    let builder = quote!(::runtime::Runtime::builder() #builder_calls);

    Parts {
        attrs: &function.attrs,
        sig,
        body,
        future,
        body_fn,
        builder,
    }
}

/// With `threads = N`: `::runtime::Pool::builder().threads(N).runtime(builder)`.
fn pool_builder(threads: &Expr, builder: &TokenStream) -> TokenStream {
    let span = threads.span();
    quote_spanned! {span=>
        ::runtime::Pool::builder().threads(#threads).runtime(#builder)
    }
}

/// With `threads = N`: runs the body once on every worker of `pool` and
/// combines the outputs (the first `Err` wins).
fn run_on_pool(pool: &Ident, body_fn: &Ident) -> TokenStream {
    quote! {
        <_ as ::runtime::PoolMainOutput>::combine(#pool.run(|_| #body_fn()))
    }
}

/// `#[runtime::main]`: a sync fn that exits with status 1 if the runtime
/// cannot start, and otherwise returns what the body returns. With
/// `threads = N`, the body runs on each worker of a pool of N.
fn expand_main(function: &ItemFn, settings: &Settings, threads: Option<&Expr>) -> TokenStream {
    let vis = &function.vis;
    let Parts {
        attrs,
        sig,
        body,
        future,
        body_fn,
        builder,
    } = parts(function, settings);
    let runtime = Ident::new("runtime", Span::mixed_site());
    let error = Ident::new("error", Span::mixed_site());
    let (build, run) = match threads {
        Some(threads) => (
            pool_builder(threads, &builder),
            run_on_pool(&runtime, &body_fn),
        ),
        None => (builder, quote!(#runtime.block_on(#future))),
    };
    quote! {
        #(#attrs)*
        #vis #sig {
            #body
            match #build.build() {
                ::core::result::Result::Ok(#runtime) => #run,
                ::core::result::Result::Err(#error) => {
                    ::std::eprintln!("error: cannot start the runtime: {}", #error);
                    ::std::process::exit(1)
                }
            }
        }
    }
}

/// `#[runtime::test]`: a `#[test]` fn on a fresh runtime; failing to start
/// the runtime fails the test.
fn expand_test(function: &ItemFn, settings: &Settings, threads: Option<&Expr>) -> TokenStream {
    let vis = &function.vis;
    let Parts {
        attrs,
        sig,
        body,
        future,
        body_fn,
        builder,
    } = parts(function, settings);
    let run = match threads {
        Some(threads) => {
            let pool = Ident::new("pool", Span::mixed_site());
            let build = pool_builder(threads, &builder);
            let run = run_on_pool(&pool, &body_fn);
            quote! {
                let #pool = #build.build().expect("cannot start the runtime");
                #run
            }
        }
        None => quote! {
            #builder
                .build()
                .expect("cannot start the runtime")
                .block_on(#future)
        },
    };
    quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis #sig {
            #body
            #run
        }
    }
}
