//! `#[patter::webhook]`: a bodiless `async fn` declares a tool that patter POSTs to a URL.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{FnArg, ForeignItemFn, ItemFn, LitInt, LitStr, ReturnType};

use crate::attr::{Errors, Keys, Spanned, doc_text, is_valid_tool_name};
use crate::marker;

const KEYS: &[&str] = &[
    "url",
    "url_env",
    "name",
    "description",
    "timeout_secs",
    "secret_env",
];

#[derive(Default)]
struct WebhookAttrs {
    url: Option<LitStr>,
    url_env: Option<LitStr>,
    name: Option<Spanned>,
    description: Option<Spanned>,
    timeout_secs: Option<LitInt>,
    secret_env: Option<LitStr>,
}

fn parse_attrs(tokens: TokenStream) -> syn::Result<WebhookAttrs> {
    let mut attrs = WebhookAttrs::default();
    let mut keys = Keys::new(KEYS);
    let parser = syn::meta::parser(|meta| {
        match keys.key(&meta)?.as_str() {
            "url" => attrs.url = Some(meta.value()?.parse()?),
            "url_env" => attrs.url_env = Some(meta.value()?.parse()?),
            "name" => attrs.name = Some(meta.value()?.parse::<LitStr>()?.into()),
            "description" => attrs.description = Some(meta.value()?.parse::<LitStr>()?.into()),
            "secret_env" => attrs.secret_env = Some(meta.value()?.parse()?),
            _ => {
                let lit: LitInt = meta.value()?.parse()?;
                if lit.base10_parse::<u64>()? == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "the timeout must be at least 1 second",
                    ));
                }
                attrs.timeout_secs = Some(lit);
            }
        }
        Ok(())
    });
    syn::parse::Parser::parse2(parser, tokens)?;
    Ok(attrs)
}

pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let decl: ForeignItemFn = match syn::parse2(item.clone()) {
        Ok(decl) => decl,
        Err(parse_error) => {
            return match syn::parse2::<ItemFn>(item) {
                Ok(with_body) => {
                    let error = syn::Error::new(
                        with_body.block.span(),
                        "a webhook tool has no body: patter POSTs the arguments to its URL; \
                         replace the body with `;` (or use `#[patter::tool]` to run Rust code)",
                    )
                    .into_compile_error();
                    let stub = marker::stub(
                        &with_body.vis,
                        &with_body.sig.ident,
                        quote!(::patter::WebhookTool),
                    );
                    Ok(quote!(#stub #error))
                }
                Err(_) => Err(parse_error),
            };
        }
    };
    // The declaration stands for its tool even when it has errors, so that its uses add none.
    let stub = || marker::stub(&decl.vis, &decl.sig.ident, quote!(::patter::WebhookTool));
    // A bad attribute is reported alone: checking the declaration against attributes that
    // were not read (a misspelled `url`, say) would only add confusing errors.
    let attrs = match parse_attrs(attr) {
        Ok(attrs) => attrs,
        Err(e) => {
            let (stub, error) = (stub(), e.into_compile_error());
            return Ok(quote!(#stub #error));
        }
    };
    let mut errors = Errors::default();
    let sig = &decl.sig;
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token.span,
            format!("declare the webhook as `async fn {}(…);`", sig.ident),
        );
    }
    if !sig.generics.params.is_empty() {
        errors.spanned_tokens(
            &sig.generics,
            "a webhook tool cannot be generic; remove the generic parameters",
        );
    }
    let url = match (&attrs.url, &attrs.url_env) {
        (Some(url), None) => {
            let value = url.value();
            if !(value.starts_with("https://") || value.starts_with("http://")) {
                errors.spanned(
                    url.span(),
                    "the webhook URL must start with https:// or http://",
                );
            }
            Some(quote!(new))
        }
        (None, Some(_)) => Some(quote!(from_env)),
        (Some(url), Some(_)) => {
            errors.spanned(url.span(), "give either `url` or `url_env`, not both");
            None
        }
        (None, None) => {
            errors.spanned(
                sig.ident.span(),
                "a webhook tool needs its endpoint: add `url = \"https://…\"` or \
                 `url_env = \"ENV_VAR\"` to `#[patter::webhook(...)]`",
            );
            None
        }
    };
    let (name, name_span) = match &attrs.name {
        Some(n) => (n.value.clone(), n.span),
        None => (sig.ident.to_string(), sig.ident.span()),
    };
    if !is_valid_tool_name(&name) {
        errors.spanned(
            name_span,
            format!("`{name}` is not a valid tool name: use 1 to 64 of A-Z, a-z, 0-9, `_` and `-`"),
        );
    }
    let description = attrs
        .description
        .as_ref()
        .map(|d| d.value.clone())
        .or_else(|| doc_text(&decl.attrs));
    if description.is_none() {
        errors.spanned(
            sig.ident.span(),
            format!(
                "tool `{name}` needs a description, which the model reads to decide when to call \
                 it: add a doc comment (`/// What it does.`) or `description = \"…\"`"
            ),
        );
    }
    let mut args_ty = None;
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => errors.spanned_tokens(
                r,
                "a webhook tool is a free function declaration; remove `self`",
            ),
            FnArg::Typed(pat) if args_ty.is_none() => args_ty = Some((*pat.ty).clone()),
            FnArg::Typed(pat) => errors.spanned_tokens(
                &pat.ty,
                "a webhook tool takes one argument struct; the call's ids are added to the \
                 request body for you",
            ),
        }
    }
    if let Some(reported) = errors.keeping(stub()) {
        return Ok(reported);
    }
    let (Some(ctor), Some(description)) = (url, description) else {
        return Err(syn::Error::new(Span::call_site(), "invalid webhook"));
    };
    let args_ty = match &args_ty {
        Some(ty) => quote!(#ty),
        None => quote!(::patter::NoArgs),
    };
    let response = match &sig.output {
        ReturnType::Default => TokenStream::new(),
        ReturnType::Type(_, ty) => quote_spanned! {ty.span()=> .expect_response::<#ty>()},
    };
    let timeout = attrs
        .timeout_secs
        .as_ref()
        .map(|secs| quote!(.with_timeout(::core::time::Duration::from_secs(#secs))));
    let secret = attrs
        .secret_env
        .as_ref()
        .map(|var| quote!(.with_signing_secret_from_env(#var)));
    let ident = &sig.ident;
    let docs: TokenStream = decl
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .map(|a| quote!(#a))
        .collect();
    let endpoint = attrs.url.as_ref().or(attrs.url_env.as_ref());
    // The user's own argument type in the turbofish: a type that is not `ToolArgs` is
    // reported on their span.
    let build = quote! {
        ::patter::WebhookTool::#ctor::<#args_ty>(#name, #description, #endpoint)
            #response #timeout #secret
    };
    Ok(marker::marker(
        &decl.vis,
        ident,
        &name,
        docs,
        quote!(::patter::WebhookTool),
        build,
    ))
}
