//! `#[patter::args]` and `#[patter::data]`: serde and schemars derives through patter's own
//! paths, so the user's crate needs neither dependency.

use proc_macro2::TokenStream;
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
    let strukt = match item {
        Item::Struct(s) => s,
        Item::Enum(e) => {
            return Err(syn::Error::new(
                e.enum_token.span,
                "tool arguments are a JSON object: put `#[patter::args]` on a struct with named \
                 fields; an enum can be the type of one of those fields if it is marked \
                 `#[patter::data]`",
            ));
        }
        other => {
            return Err(syn::Error::new(
                other.span(),
                "`#[patter::args]` goes on a struct with named fields",
            ));
        }
    };
    match &strukt.fields {
        Fields::Named(_) => {}
        Fields::Unnamed(fields) => {
            return Err(syn::Error::new(
                fields.span(),
                "tool arguments are a JSON object with named parameters: use named fields \
                 (`struct Args { order_id: String }`), not a tuple struct",
            ));
        }
        Fields::Unit => {
            return Err(syn::Error::new(
                strukt.ident.span(),
                "a unit struct has no parameters: give the struct named fields, or write the \
                 tool without an arguments parameter",
            ));
        }
    }
    if !strukt.generics.params.is_empty() {
        return Err(syn::Error::new(
            strukt.generics.span(),
            "tool arguments cannot be generic: the model needs one concrete schema",
        ));
    }
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
