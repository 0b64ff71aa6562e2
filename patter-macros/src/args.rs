//! `#[patter::args]` and `#[patter::data]`: serde and schemars derives through patter's own
//! paths, so the user's crate needs neither dependency.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned as _;
use syn::{Fields, Item};

pub fn expand_args(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let serialize = match syn::parse2::<Option<syn::Ident>>(attr.clone()) {
        Ok(None) => false,
        Ok(Some(flag)) if flag == "serialize" => true,
        _ => {
            let span = attr
                .into_iter()
                .next()
                .map_or_else(Span::call_site, |t| t.span());
            return Err(syn::Error::new(
                span,
                "`#[patter::args]` takes nothing, or `serialize` to derive `Serialize` too; use \
                 `#[serde(...)]` on the struct or its fields for the rest",
            ));
        }
    };
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
    Ok(args_impls(&strukt, serialize))
}

/// The derives and impls of an argument struct.
///
/// A field type with no `Deserialize` or no `JsonSchema` would make each derive fail on its
/// own, in words about serde and schemars. So the derives ask for the field types through
/// `ArgField<'de>`, a bound with a lifetime, which the compiler checks where the arguments
/// are used (the `ToolArgs` impl) instead: one error per bad type, saying to add
/// `#[patter::data]`. The schema comes from a private mirror of the struct whose fields
/// take their schema through `SchemaOf<'_, T>`; the mirror carries the doc comments and the
/// serde and schemars attributes, so the schema is what a plain derive would give.
fn args_impls(strukt: &syn::ItemStruct, serialize: bool) -> TokenStream {
    let ident = &strukt.ident;
    let version = crate::version_check();
    let Fields::Named(fields) = &strukt.fields else {
        return TokenStream::new();
    };
    let kept = |attrs: &[syn::Attribute]| -> Vec<syn::Attribute> {
        attrs
            .iter()
            .filter(|a| {
                ["doc", "serde", "schemars"]
                    .iter()
                    .any(|k| a.path().is_ident(k))
            })
            .cloned()
            .collect()
    };
    let mut deserialize_bounds = Vec::new();
    let mut schema_bounds = Vec::new();
    let mut mirror_fields = Vec::new();
    for field in &fields.named {
        let (name, ty) = (&field.ident, &field.ty);
        let attrs = kept(&field.attrs);
        let serde_says = |keys: &[&str]| {
            field
                .attrs
                .iter()
                .any(|a| a.path().is_ident("serde") && mentions(a, keys))
        };
        let own_schema = field
            .attrs
            .iter()
            .any(|a| a.path().is_ident("schemars") && mentions(a, &["with", "schema_with"]));
        // What serde needs of the field's type, and where its schema comes from.
        let skipped = serde_says(&["skip", "skip_deserializing"]);
        let deserialized_with = serde_says(&["with", "deserialize_with"]);
        match (skipped || deserialized_with, own_schema) {
            (false, false) => deserialize_bounds.push(format!(
                "{}: ::patter::__private::ArgField<'de>",
                quote!(#ty)
            )),
            (false, true) => deserialize_bounds.push(format!(
                "{}: ::patter::__private::serde::Deserialize<'de>",
                quote!(#ty)
            )),
            (true, _) => {}
        }
        if skipped || own_schema {
            mirror_fields.push(quote! { #(#attrs)* #name: #ty, });
            continue;
        }
        // A type deserialised by other means needs only its schema.
        let wrapper = if deserialized_with {
            quote!(::patter::__private::SchemaOnly)
        } else {
            quote!(::patter::__private::SchemaOf)
        };
        let with = format!("{}<'__patter, {}>", wrapper, quote!(#ty));
        schema_bounds.push(quote! {
            #wrapper<'__patter, #ty>: ::patter::__private::schemars::JsonSchema
        });
        mirror_fields.push(quote! {
            #(#attrs)*
            #[schemars(with = #with)]
            #name: #ty,
        });
    }
    let deserialize_bound = deserialize_bounds.join(", ");
    let field_names: Vec<_> = fields.named.iter().map(|f| &f.ident).collect();
    let container_attrs = kept(&strukt.attrs);
    // A bound of the user's own replaces the one made here.
    let own_bound = strukt
        .attrs
        .iter()
        .any(|a| a.path().is_ident("serde") && mentions(a, &["bound"]));
    let serde_bound =
        (!own_bound).then(|| quote!(#[serde(bound(deserialize = #deserialize_bound))]));
    let derive_serialize = serialize.then(|| quote!(::patter::__private::serde::Serialize,));
    let schema_bound = schema_bounds
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    // `#[serde(default)]` on the struct fills missing fields from `Default`; the schema shows
    // those defaults, which the mirror takes from the struct's own `Default`.
    let mirror_default = strukt
        .attrs
        .iter()
        .any(|a| a.path().is_ident("serde") && bare_default(a))
        .then(|| {
            let names = fields.named.iter().map(|f| &f.ident);
            quote! {
                impl ::core::default::Default for __PatterSchema<'_> {
                    fn default() -> Self {
                        let __patter_default = <#ident as ::core::default::Default>::default();
                        __PatterSchema {
                            #(#names: __patter_default.#names,)*
                            __patter_lifetime: ::core::marker::PhantomData,
                        }
                    }
                }
            }
        });
    // `#[schemars(...)]` is for the mirror; the struct itself derives only `Deserialize`.
    let mut strukt = strukt.clone();
    strukt.attrs.retain(|a| !a.path().is_ident("schemars"));
    if let Fields::Named(fields) = &mut strukt.fields {
        for field in &mut fields.named {
            field.attrs.retain(|a| !a.path().is_ident("schemars"));
        }
    }
    quote! {
        #[derive(::patter::__private::serde::Deserialize, #derive_serialize)]
        #[serde(crate = "::patter::__private::serde")]
        #serde_bound
        #strukt

        const _: () = {
            #version

            #[derive(::patter::__private::schemars::JsonSchema)]
            #[schemars(crate = "::patter::__private::schemars")]
            #[schemars(bound = #schema_bound)]
            #(#container_attrs)*
            #[allow(dead_code, non_camel_case_types)]
            struct __PatterSchema<'__patter> {
                #(#mirror_fields)*
                #[serde(skip)]
                __patter_lifetime: ::core::marker::PhantomData<&'__patter ()>,
            }

            #mirror_default

            // Fields filled by the model and only sent on (a webhook tool's) are used.
            #[allow(dead_code)]
            fn __patter_fields_are_read(args: &#ident) {
                #(let _ = &args.#field_names;)*
            }

            impl<'__patter> ::patter::__private::schemars::JsonSchema for #ident
            where
                #(#schema_bounds,)*
            {
                fn schema_name() -> ::std::borrow::Cow<'static, str> {
                    ::std::borrow::Cow::Borrowed(::core::stringify!(#ident))
                }

                fn json_schema(
                    generator: &mut ::patter::__private::schemars::SchemaGenerator,
                ) -> ::patter::__private::schemars::Schema {
                    <__PatterSchema<'__patter> as ::patter::__private::schemars::JsonSchema>::json_schema(generator)
                }
            }
        };

        impl ::patter::ToolArgs for #ident {}
    }
}

/// schemars lists an enum's undocumented unit variants together, ahead of the documented
/// ones; with a title (which the flat schema drops) each stays in its place, so the model
/// sees the variants in the order they were declared.
fn keep_variant_order(item: &mut syn::ItemEnum) {
    let documented = |v: &syn::Variant| v.attrs.iter().any(|a| a.path().is_ident("doc"));
    if !item.variants.iter().any(documented) {
        return;
    }
    for variant in &mut item.variants {
        let has_schemars = variant.attrs.iter().any(|a| a.path().is_ident("schemars"));
        if !documented(variant) && !has_schemars {
            let title = variant.ident.to_string();
            variant
                .attrs
                .push(syn::parse_quote!(#[schemars(title = #title)]));
        }
    }
}

/// Whether the attribute's arguments name one of `keys` (as `key` or `key = …`).
fn mentions(attr: &syn::Attribute, keys: &[&str]) -> bool {
    let mut found = false;
    let _ = attr.parse_nested_meta(|meta| {
        if keys.iter().any(|k| meta.path.is_ident(k)) {
            found = true;
        }
        if meta.input.peek(syn::Token![=]) {
            let _: syn::Expr = meta.value()?.parse()?;
        } else if meta.input.peek(syn::token::Paren) {
            meta.parse_nested_meta(|_| Ok(()))?;
        }
        Ok(())
    });
    found
}

/// Whether a `#[serde(...)]` attribute holds a bare `default`.
fn bare_default(attr: &syn::Attribute) -> bool {
    let mut found = false;
    let _ = attr.parse_nested_meta(|meta| {
        if meta.input.peek(syn::Token![=]) {
            let _: syn::Expr = meta.value()?.parse()?;
        } else if meta.input.peek(syn::token::Paren) {
            meta.parse_nested_meta(|_| Ok(()))?;
        } else if meta.path.is_ident("default") {
            found = true;
        }
        Ok(())
    });
    found
}

/// Types used inside arguments (an enum field, a nested struct) and tool results.
pub fn expand_data(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if let Some(first) = attr.into_iter().next() {
        return Err(syn::Error::new(
            first.span(),
            "`#[patter::data]` takes no arguments; use `#[serde(...)]` on the item",
        ));
    }
    let mut item: Item = syn::parse2(item)?;
    if let Item::Enum(e) = &mut item {
        keep_variant_order(e);
    }
    match &item {
        Item::Struct(_) | Item::Enum(_) => {}
        other => {
            return Err(syn::Error::new(
                other.span(),
                "`#[patter::data]` goes on a struct or an enum",
            ));
        }
    }
    let version = crate::version_check();
    Ok(quote! {
        #[derive(
            ::patter::__private::serde::Deserialize,
            ::patter::__private::serde::Serialize,
            ::patter::__private::schemars::JsonSchema,
        )]
        #[serde(crate = "::patter::__private::serde")]
        #[schemars(crate = "::patter::__private::schemars")]
        #item

        const _: () = { #version };
    })
}
