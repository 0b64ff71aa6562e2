//! `#[patter::args]` and `#[patter::data]`: serde and schemars derives through patter's own
//! paths, so the user's crate needs neither dependency.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned as _;
use syn::{Fields, Item};

pub fn expand_args(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if let Some(first) = attr.into_iter().next() {
        return Err(syn::Error::new(
            first.span(),
            "`#[patter::args]` takes no arguments; use `#[serde(...)]` on the struct or its fields",
        ));
    }
    let item: Item = syn::parse2(item)?;
    let problem = match &item {
        Item::Struct(strukt) => match &strukt.fields {
            Fields::Named(_) if strukt.generics.params.is_empty() => None,
            Fields::Named(_) => Some(syn::Error::new_spanned(
                &strukt.generics,
                "tool arguments cannot be generic: the model needs one concrete schema",
            )),
            Fields::Unnamed(fields) => Some(syn::Error::new(
                fields.span(),
                "tool arguments are a JSON object with named parameters: use named fields \
                 (`struct Args { order_id: String }`), not a tuple struct",
            )),
            Fields::Unit => Some(syn::Error::new(
                strukt.ident.span(),
                "a unit struct has no parameters: give the struct named fields, or write the \
                 tool without an arguments parameter",
            )),
        },
        Item::Enum(e) => {
            let (enum_token, ident) = (&e.enum_token, &e.ident);
            Some(syn::Error::new_spanned(
                quote!(#enum_token #ident),
                "tool arguments are a JSON object: put `#[patter::args]` on a struct with named \
                 fields; an enum can be the type of one of those fields if it is marked \
                 `#[patter::data]`",
            ))
        }
        _ => Some(syn::Error::new(
            Span::call_site(),
            "`#[patter::args]` goes on a struct with named fields",
        )),
    };
    // The item stays, so its other uses do not add "cannot find type" errors.
    let strukt = match (problem, item) {
        (None, Item::Struct(strukt)) => strukt,
        (problem, item) => {
            let error = problem
                .unwrap_or_else(|| syn::Error::new(Span::call_site(), "expected a struct"))
                .into_compile_error();
            return Ok(quote!(#item #error));
        }
    };
    let ident = &strukt.ident;
    Ok(quote! {
        #[derive(
            ::patter::__private::serde::Deserialize,
            ::patter::__private::serde::Serialize,
            ::patter::__private::schemars::JsonSchema,
        )]
        #[serde(crate = "::patter::__private::serde")]
        #[schemars(crate = "::patter::__private::schemars")]
        #strukt

        impl ::patter::ToolArgs for #ident {}
    })
}

/// Types used inside arguments (an enum field, a nested struct) and tool results.
pub fn expand_data(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if let Some(first) = attr.into_iter().next() {
        return Err(syn::Error::new(
            first.span(),
            "`#[patter::data]` takes no arguments; use `#[serde(...)]` on the item",
        ));
    }
    let item: Item = syn::parse2(item)?;
    match &item {
        Item::Struct(_) | Item::Enum(_) => {}
        other => {
            return Err(syn::Error::new(
                other.span(),
                "`#[patter::data]` goes on a struct or an enum",
            ));
        }
    }
    Ok(quote! {
        #[derive(
            ::patter::__private::serde::Deserialize,
            ::patter::__private::serde::Serialize,
            ::patter::__private::schemars::JsonSchema,
        )]
        #[serde(crate = "::patter::__private::serde")]
        #[schemars(crate = "::patter::__private::schemars")]
        #item
    })
}
