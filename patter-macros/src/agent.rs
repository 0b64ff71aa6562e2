//! `#[patter::agent]`: on a struct (tools are free functions listed in `tools(...)`) or on an
//! inherent `impl` block (its `#[tool]` methods become tools sharing the agent's state).

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned as _;
use syn::{ImplItem, Item, ItemImpl, LitStr, Path};

use crate::attr::{Errors, Keys};
use crate::tool::{Place, ToolAttrs, ToolSig};

const KEYS: &[&str] = &[
    "system_prompt",
    "first_message",
    "voice",
    "model",
    "variables",
    "tools",
];

#[derive(Default)]
struct AgentAttrs {
    system_prompt: Option<LitStr>,
    first_message: Option<LitStr>,
    voice: Option<LitStr>,
    model: Option<LitStr>,
    variables: Vec<(String, LitStr)>,
    tools: Vec<Path>,
}

fn parse_attrs(tokens: TokenStream, errors: &mut Errors) -> AgentAttrs {
    let mut attrs = AgentAttrs::default();
    let mut keys = Keys::new(KEYS);
    let parser = syn::meta::parser(|meta| {
        match keys.key(&meta)?.as_str() {
            "system_prompt" => attrs.system_prompt = Some(meta.value()?.parse()?),
            "first_message" => attrs.first_message = Some(meta.value()?.parse()?),
            "voice" => attrs.voice = Some(meta.value()?.parse()?),
            "model" => attrs.model = Some(meta.value()?.parse()?),
            "variables" => meta.parse_nested_meta(|var| {
                let Some(name) = var.path.get_ident() else {
                    return Err(var.error("write `variables(name = \"value\", …)`"));
                };
                let name = name.to_string();
                if attrs.variables.iter().any(|(n, _)| *n == name) {
                    return Err(var.error(format!("variable `{name}` is given twice")));
                }
                attrs.variables.push((name, var.value()?.parse()?));
                Ok(())
            })?,
            _ => meta.parse_nested_meta(|tool| {
                if !tool.input.is_empty() && !tool.input.peek(syn::Token![,]) {
                    return Err(tool.error(
                        "list tools by function name: `tools(check_inventory, get_order)`",
                    ));
                }
                if let Some(earlier) = attrs.tools.iter().find(|p| **p == tool.path) {
                    let _ = earlier;
                    return Err(syn::Error::new(
                        tool.path.span(),
                        "this tool is listed twice; tool names must be unique within an agent",
                    ));
                }
                attrs.tools.push(tool.path.clone());
                Ok(())
            })?,
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, tokens) {
        errors.push(e);
    }
    attrs
}

pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let attrs = parse_attrs(attr, &mut errors);
    let item: Item = syn::parse2(item)?;
    match item {
        Item::Struct(s) => {
            if !s.generics.params.is_empty() {
                errors.spanned(s.generics.span(), "an agent cannot be generic");
            }
            errors.finish()?;
            let ident = &s.ident;
            let body = spec_body(&attrs, Vec::new(), ident);
            Ok(quote! {
                #s
                #body
            })
        }
        Item::Impl(imp) => expand_impl(attrs, imp, errors),
        other => Err(syn::Error::new(
            other.span(),
            "`#[patter::agent]` goes on a struct (with `tools(...)`) or on an inherent `impl` \
             block whose `&self` methods are marked `#[tool]`",
        )),
    }
}

fn expand_impl(
    attrs: AgentAttrs,
    mut imp: ItemImpl,
    mut errors: Errors,
) -> syn::Result<TokenStream> {
    if let Some((trait_path, _)) = &imp.trait_ {
        errors.spanned(
            trait_path.span(),
            "`#[patter::agent]` goes on an inherent `impl Agent { … }` block, not on a trait \
             impl; move the tool methods into `impl YourAgent { … }`",
        );
        return Err(errors
            .finish()
            .err()
            .unwrap_or_else(|| syn::Error::new(Span::call_site(), "trait impl")));
    }
    if !imp.generics.params.is_empty() {
        errors.spanned(imp.generics.span(), "an agent cannot be generic");
    }
    let mut tools = Vec::new();
    let mut names: Vec<(String, Span)> = Vec::new();
    for item in &mut imp.items {
        let ImplItem::Fn(method) = item else { continue };
        let Some(pos) = method.attrs.iter().position(is_tool_marker) else {
            continue;
        };
        let marker = method.attrs.remove(pos);
        let tool_attrs = match ToolAttrs::from_attribute(&marker) {
            Ok(a) => a,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let Some(sig) = ToolSig::analyse(
            &method.sig,
            &method.attrs,
            tool_attrs,
            Place::AgentMethod,
            &mut errors,
        ) else {
            continue;
        };
        if names.iter().any(|(n, _)| *n == sig.name) {
            errors.spanned(
                sig.name_span,
                format!(
                    "two tools of this agent are named `{}`; rename one with `#[tool(name = \"…\")]`",
                    sig.name
                ),
            );
            continue;
        }
        names.push((sig.name.clone(), sig.name_span));
        tools.push(sig);
    }
    errors.finish()?;
    let self_ty = &imp.self_ty;
    let checks = tools.iter().map(ToolSig::args_check);
    let method_tools = tools
        .iter()
        .map(|sig| {
            let method = &sig.ident;
            sig.fn_tool(
                quote!(__patter_this.#method),
                quote!(let __patter_this = ::std::sync::Arc::clone(&__patter_this);),
            )
        })
        .map(|build| {
            quote! {{
                let __patter_this = ::std::sync::Arc::clone(&self);
                #build
            }}
        })
        .collect::<Vec<_>>();
    let method_names: Vec<String> = tools.iter().map(|t| t.name.clone()).collect();
    let body = spec_body_with_names(&attrs, method_tools, method_names, self_ty);
    Ok(quote! {
        #imp
        #body
        #(#checks)*
    })
}

/// `#[tool]`, `#[tool(...)]` or `#[patter::tool(...)]` on a method.
fn is_tool_marker(attr: &syn::Attribute) -> bool {
    let path = attr.path();
    path.is_ident("tool")
        || (path.segments.len() == 2
            && path.segments[0].ident == "patter"
            && path.segments[1].ident == "tool")
}

fn spec_body(
    attrs: &AgentAttrs,
    method_tools: Vec<TokenStream>,
    self_ty: &dyn quote::ToTokens,
) -> TokenStream {
    spec_body_with_names(attrs, method_tools, Vec::new(), self_ty)
}

/// The `impl Agent` block, plus a compile-time check that no two tools share a name.
fn spec_body_with_names(
    attrs: &AgentAttrs,
    method_tools: Vec<TokenStream>,
    method_names: Vec<String>,
    self_ty: &dyn quote::ToTokens,
) -> TokenStream {
    let prompt = attrs
        .system_prompt
        .as_ref()
        .map(|p| quote!(#p))
        .unwrap_or_else(|| quote!(""));
    let mut settings = Vec::new();
    if let Some(text) = &attrs.first_message {
        settings.push(quote!(.first_message(#text)));
    }
    if let Some(voice) = &attrs.voice {
        settings.push(quote!(.voice(#voice)));
    }
    if let Some(model) = &attrs.model {
        settings.push(quote!(.model(#model)));
    }
    for (name, value) in &attrs.variables {
        settings.push(quote!(.variable(#name, #value)));
    }
    let listed = &attrs.tools;
    let names = listed
        .iter()
        .map(|p| quote!(#p::NAME))
        .chain(method_names.iter().map(|n| quote!(#n)))
        .collect::<Vec<_>>();
    let unique_check = if names.len() > 1 {
        quote! {
            const _: () = {
                let names: &[&str] = &[#(#names),*];
                let mut i = 0;
                while i < names.len() {
                    let mut j = i + 1;
                    while j < names.len() {
                        if ::patter::__private::str_eq(names[i], names[j]) {
                            panic!("two tools of this agent have the same name; rename one with `name = \"…\"`");
                        }
                        j += 1;
                    }
                    i += 1;
                }
            };
        }
    } else {
        TokenStream::new()
    };
    quote! {
        impl ::patter::Agent for #self_ty {
            fn spec(
                self: ::std::sync::Arc<Self>,
            ) -> ::core::result::Result<::patter::AgentSpec, ::patter::ToolSetError> {
                let __patter_tools = ::patter::ToolSet::builder()
                    #(.tool(#listed::tool()))*
                    #(.tool(#method_tools))*
                    .build()?;
                ::core::result::Result::Ok(
                    ::patter::AgentSpec::new(#prompt)
                        #(#settings)*
                        .tools(__patter_tools),
                )
            }
        }
        #unique_check
    }
}
