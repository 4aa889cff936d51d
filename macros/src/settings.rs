//! The attribute's arguments: a comma-separated list of `name = value`
//! Builder settings, e.g. `#[runtime::main(entries = 4096, sqpoll = d)]`.

use proc_macro2::TokenStream;
use quote::quote_spanned;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, Ident, Token};

/// One `name = value` pair; it becomes the Builder call `.name(value)`.
pub(crate) struct Setting {
    name: Ident,
    value: Expr,
}

/// Every setting given to the attribute, in the order written.
#[derive(Default)]
pub(crate) struct Settings(Vec<Setting>);

impl Settings {
    /// Takes out the `threads = N` setting, which is not a Builder call but
    /// asks for a pool of N workers.
    pub(crate) fn take_threads(&mut self) -> Option<Expr> {
        let index = self.0.iter().position(|s| s.name == "threads")?;
        Some(self.0.remove(index).value)
    }

    /// The Builder calls `.name(value)...`, each spanned at the user's `name`
    /// so that an unknown setting is reported at that name.
    pub(crate) fn builder_calls(&self) -> TokenStream {
        self.0
            .iter()
            .map(|Setting { name, value }| quote_spanned!(name.span()=> .#name(#value)))
            .collect()
    }
}

impl Parse for Settings {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut settings: Vec<Setting> = Vec::new();
        while !input.is_empty() {
            let name: Ident = input
                .parse()
                .map_err(|e| syn::Error::new(e.span(), EXPECTED))?;
            input
                .parse::<Token![=]>()
                .map_err(|e| syn::Error::new(e.span(), EXPECTED))?;
            let value: Expr = input.parse()?;
            if settings.iter().any(|s| s.name == name) {
                return Err(syn::Error::new(
                    name.span(),
                    format!("duplicate setting `{name}`: each setting can be given once"),
                ));
            }
            settings.push(Setting { name, value });
            if !input.is_empty() {
                input
                    .parse::<Token![,]>()
                    .map_err(|e| syn::Error::new(e.span(), EXPECTED_COMMA))?;
            }
        }
        Ok(Self(settings))
    }
}

const EXPECTED: &str =
    "expected a Builder setting of the form `name = value`, e.g. `entries = 4096`";

const EXPECTED_COMMA: &str =
    "expected `,` between settings, e.g. `entries = 4096, cq_entries = 8192`";
