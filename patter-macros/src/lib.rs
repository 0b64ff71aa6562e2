//! Procedural macros of patter. Use them through the `patter` crate (`#[patter::tool]`,
//! `#[patter::args]`, `#[patter::data]`, `#[patter::webhook]`, `#[patter::agent]`), which
//! documents them; generated code names only `::patter::…` paths.

use proc_macro::TokenStream;

mod agent;
mod args;
mod attr;
mod marker;
mod tool;
mod webhook;

/// An item naming the `__private` module of the patter version these macros belong to: with
/// another version of patter it does not exist, and the mismatch is a compile error.
fn version_check() -> proc_macro2::TokenStream {
    let module = quote::format_ident!("v{}", env!("CARGO_PKG_VERSION").replace('.', "_"));
    quote::quote! {
        const _: ::patter::__private::#module::MacrosMatch = ::patter::__private::#module::MacrosMatch;
    }
}

fn finish(result: syn::Result<proc_macro2::TokenStream>) -> TokenStream {
    result.unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Turns an `async fn` into a tool; see the `patter` crate.
#[proc_macro_attribute]
pub fn tool(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(tool::expand(attr.into(), item.into()))
}

/// Marks a struct as a tool's arguments; see the `patter` crate.
#[proc_macro_attribute]
pub fn args(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(args::expand_args(attr.into(), item.into()))
}

/// Marks a type used inside arguments or returned by a tool; see the `patter` crate.
#[proc_macro_attribute]
pub fn data(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(args::expand_data(attr.into(), item.into()))
}

/// Declares a webhook tool on a bodiless `async fn`; see the `patter` crate.
#[proc_macro_attribute]
pub fn webhook(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(webhook::expand(attr.into(), item.into()))
}

/// Assembles an agent from a struct or an inherent `impl` block; see the `patter` crate.
#[proc_macro_attribute]
pub fn agent(attr: TokenStream, item: TokenStream) -> TokenStream {
    finish(agent::expand(attr.into(), item.into()))
}
