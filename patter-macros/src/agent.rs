//! `#[patter::agent]`: on a struct (tools are free functions listed in `tools(...)`) or on an
//! inherent `impl` block (its `#[tool]` methods become tools sharing the agent's state).

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{Ident, ImplItem, Item, ItemImpl, LitStr, Path};

use crate::attr::{Errors, Keys};
use crate::tool::{Place, ToolAttrs, ToolSig};

const KEYS: &[&str] = &[
    "system_prompt",
    "first_message",
    "voice",
    "model",
    "variables",
    "tools",
    "audio_format",
    "engine",
    "transfers",
    "transfer_allow",
    "record",
];

#[derive(Default)]
struct AgentAttrs {
    system_prompt: Option<LitStr>,
    first_message: Option<LitStr>,
    voice: Option<LitStr>,
    model: Option<LitStr>,
    audio_format: Option<proc_macro2::TokenStream>,
    engine: Option<proc_macro2::TokenStream>,
    variables: Vec<(String, LitStr)>,
    transfers: Vec<(String, LitStr)>,
    transfer_allow: Vec<LitStr>,
    record: Option<syn::LitBool>,
    tools: Vec<Path>,
}

/// Whether `text` is E.164: `+` then 8 to 15 digits, not starting with 0.
fn is_e164(text: &str) -> bool {
    text.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// Whether `text` is a number pattern: `+`, digits or `X`, an optional final `*`.
fn is_number_pattern(text: &str) -> bool {
    let body = text.strip_prefix('+').unwrap_or("");
    let body = body.strip_suffix('*').unwrap_or(body);
    text.starts_with('+')
        && !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'X' || b == b'x')
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
            "audio_format" => {
                let lit: LitStr = meta.value()?.parse()?;
                attrs.audio_format = Some(match lit.value().as_str() {
                    "pcmu" => quote!(::patter::AudioFormat::Pcmu),
                    "pcm24k" => quote!(::patter::AudioFormat::Pcm24k),
                    _ => {
                        return Err(syn::Error::new(
                            lit.span(),
                            "`audio_format` is \"pcmu\" (μ-law pass-through, the default) or \"pcm24k\"",
                        ));
                    }
                });
            }
            "engine" => {
                let lit: LitStr = meta.value()?.parse()?;
                attrs.engine = Some(match lit.value().as_str() {
                    "realtime" => quote!(::patter::engine::EngineKind::Realtime),
                    "gpt-live" => quote!(::patter::engine::EngineKind::GptLive),
                    _ => {
                        return Err(syn::Error::new(
                            lit.span(),
                            "`engine` is \"realtime\" (OpenAI Realtime, the default) or \
                             \"gpt-live\" (OpenAI GPT-Live)",
                        ));
                    }
                });
            }
            "transfers" => meta.parse_nested_meta(|dest| {
                let Some(name) = dest.path.get_ident() else {
                    return Err(dest.error("write `transfers(sales = \"+15550111\", …)`"));
                };
                let name = syn::ext::IdentExt::unraw(name).to_string();
                if name.len() > 32
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(dest.error(
                        "a destination name has at most 32 characters of A-Z, a-z, 0-9 and _",
                    ));
                }
                if attrs.transfers.iter().any(|(n, _)| *n == name) {
                    return Err(dest.error(format!("destination `{name}` is given twice")));
                }
                let number: LitStr = dest.value()?.parse()?;
                if !is_e164(&number.value()) {
                    return Err(syn::Error::new(
                        number.span(),
                        "a destination's number is E.164: `+` and 8 to 15 digits, like \"+15550111\"",
                    ));
                }
                attrs.transfers.push((name, number));
                Ok(())
            })?,
            "record" => attrs.record = Some(meta.value()?.parse()?),
            "transfer_allow" => {
                let patterns: LitStr = meta.value()?.parse()?;
                for pattern in patterns.value().split(',').map(str::trim) {
                    if !is_number_pattern(pattern) {
                        return Err(syn::Error::new(
                            patterns.span(),
                            "`transfer_allow` takes number patterns separated by commas: `+` then \
                             digits or X (any digit), optionally ending in * (any further \
                             digits), like \"+1555XXXXXXX, +44*\"",
                        ));
                    }
                }
                attrs.transfer_allow.push(patterns);
            }
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
                // `syn::Path: PartialEq` needs syn's `extra-traits`; compare the tokens.
                let listed = |p: &Path| quote!(#p).to_string();
                if attrs.tools.iter().any(|p| listed(p) == listed(&tool.path)) {
                    return Err(syn::Error::new_spanned(
                        &tool.path,
                        "this tool is listed twice; tool names must be unique within an agent",
                    ));
                }
                attrs.tools.push(tool.path.clone());
                Ok(())
            })?,
        }
        Ok(())
    });
    match syn::parse::Parser::parse2(parser, tokens) {
        Err(e) => errors.push(e),
        Ok(()) if attrs.system_prompt.is_none() => errors.spanned(
            Span::call_site(),
            "an agent needs its instructions: add `system_prompt = \"You are …\"` to \
             `#[patter::agent(...)]`",
        ),
        Ok(()) => {}
    }
    attrs
}

pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let attrs = parse_attrs(attr, &mut errors);
    // The attribute's errors are kept whatever is wrong with the item.
    let item: Item = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => return Err(errors.and(e)),
    };
    match item {
        Item::Struct(s) => {
            if !s.generics.params.is_empty() {
                errors.spanned_tokens(&s.generics, "an agent cannot be generic");
            }
            if let Some(kept) = errors.keeping(&s) {
                return Ok(kept);
            }
            let ident = &s.ident;
            let body = spec_body(&attrs, Vec::new(), ident);
            Ok(quote! {
                #s
                #body
            })
        }
        Item::Impl(imp) => expand_impl(attrs, imp, errors),
        other => Err(errors.and(syn::Error::new(
            other.span(),
            "`#[patter::agent]` goes on a struct (with `tools(...)`) or on an inherent `impl` \
             block whose `&self` methods are marked `#[tool]`",
        ))),
    }
}

fn expand_impl(
    attrs: AgentAttrs,
    mut imp: ItemImpl,
    mut errors: Errors,
) -> syn::Result<TokenStream> {
    if let Some((trait_path, for_token)) = &imp.trait_ {
        let self_ty = &imp.self_ty;
        errors.spanned_tokens(
            quote!(#trait_path #for_token #self_ty),
            format!(
                "`#[patter::agent]` goes on an inherent impl block, not on a trait impl: put \
                 the `#[tool]` methods in `impl {} {{ … }}`",
                quote!(#self_ty)
            ),
        );
        // The impl stays, without the `#[tool]` markers (which are no attribute of their own).
        for item in &mut imp.items {
            if let ImplItem::Fn(method) = item {
                method.attrs.retain(|a| !is_tool_marker(a));
            }
        }
        return Ok(errors.keeping(&imp).unwrap_or_default());
    }
    if !imp.generics.params.is_empty() {
        errors.spanned_tokens(&imp.generics, "an agent cannot be generic");
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
    if let Some(kept) = errors.keeping(&imp) {
        return Ok(kept);
    }
    let self_ty = &imp.self_ty;
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
    let method_names: Vec<(String, &Ident, Span)> = tools
        .iter()
        .map(|t| (t.name.clone(), &t.ident, t.name_span))
        .collect();
    let body = spec_body_with_names(&attrs, method_tools, method_names, self_ty);
    Ok(quote! {
        #imp
        #body
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
///
/// `method_names` are the `#[tool]` methods' names (already checked against each other),
/// their idents and where the name was written.
fn spec_body_with_names(
    attrs: &AgentAttrs,
    method_tools: Vec<TokenStream>,
    method_names: Vec<(String, &Ident, Span)>,
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
    if let Some(format) = &attrs.audio_format {
        settings.push(quote!(.audio_format(#format)));
    }
    if let Some(engine) = &attrs.engine {
        settings.push(quote!(.engine(#engine)));
    }
    for (name, value) in &attrs.variables {
        settings.push(quote!(.variable(#name, #value)));
    }
    if let Some(record) = &attrs.record {
        settings.push(quote!(.record(#record)));
    }
    if !attrs.transfers.is_empty() || !attrs.transfer_allow.is_empty() {
        let names = attrs.transfers.iter().map(|(name, _)| name);
        let numbers = attrs.transfers.iter().map(|(_, number)| number);
        let allow = &attrs.transfer_allow;
        settings.push(quote!(.transfers(::patter::Transfers::__checked(
            &[#((#names, #numbers)),*],
            &[#(#allow),*],
        ))));
    }
    // Each listed path is imported under an alias, beside a glob of stand-ins of the same
    // names: a tool's marker (in the type namespace) wins over its stand-in, while a plain
    // function leaves the stand-in in place, which is no `ListedTool`. So listing a function
    // that is not a tool is one error, on its name, that says what to add.
    let listed: Vec<(&Path, Ident)> = attrs
        .tools
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let span = path
                .segments
                .last()
                .map_or_else(Span::call_site, |s| s.ident.span());
            (path, Ident::new(&format!("__patter_tool_{i}"), span))
        })
        .collect();
    let imports = listed.iter().map(|(path, alias)| {
        quote! {
            #[allow(unused_imports)]
            use #path as #alias;
        }
    });
    let aliases: Vec<&Ident> = listed.iter().map(|(_, alias)| alias).collect();
    let listed_tools = aliases.iter().map(
        |alias| quote_spanned!(alias.span()=> <#alias as ::patter::__private::ListedTool>::tool()),
    );
    let unique_check = unique_names_check(&listed, &method_names);
    let version = crate::version_check();
    quote! {
        const _: () = {
            #version
            #(#imports)*
            #[allow(unused_imports)]
            use __patter_not_tools::*;
            #[allow(non_camel_case_types, dead_code)]
            mod __patter_not_tools {
                #(pub enum #aliases {})*
            }

            impl ::patter::Agent for #self_ty {
                fn spec(
                    self: ::std::sync::Arc<Self>,
                ) -> ::core::result::Result<::patter::AgentSpec, ::patter::ToolSetError> {
                    let __patter_tools = ::patter::ToolSet::builder()
                        #(.tool(#listed_tools))*
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
        };
    }
}

/// One `const` per pair of tools that may share a name, at least one of them listed in
/// `tools(...)` (their names are only known to the compiler). Each is spanned on the later
/// tool, so a clash is reported there and names both tools.
fn unique_names_check(
    listed: &[(&Path, Ident)],
    methods: &[(String, &Ident, Span)],
) -> TokenStream {
    struct Entry {
        name: TokenStream,
        label: String,
        span: Span,
        /// The name, when the macro knows it (a method's).
        known: Option<String>,
    }
    let entries: Vec<Entry> = listed
        .iter()
        .map(|(path, alias)| Entry {
            name: quote!(<#alias as ::patter::__private::ListedTool>::NAME),
            label: format!(
                "the tool `{}`",
                path.segments
                    .iter()
                    .map(|s| s.ident.to_string())
                    .collect::<Vec<_>>()
                    .join("::")
            ),
            span: alias.span(),
            known: None,
        })
        .chain(methods.iter().map(|(name, ident, span)| Entry {
            name: quote!(#name),
            label: format!("the method `{ident}`"),
            span: *span,
            known: Some(name.clone()),
        }))
        .collect();
    let mut checks = TokenStream::new();
    for (j, later) in entries.iter().enumerate() {
        for earlier in &entries[..j] {
            let same = match (&earlier.known, &later.known) {
                // Two methods: the macro has already compared them.
                (Some(_), Some(_)) => continue,
                (Some(name), None) | (None, Some(name)) => format!("are both named `{name}`"),
                (None, None) => "have the same name".to_owned(),
            };
            let (a, b) = (&earlier.name, &later.name);
            let both = match (&earlier.known, &later.known) {
                (None, None) => format!(
                    "the tools {} and {}",
                    earlier.label.trim_start_matches("the tool "),
                    later.label.trim_start_matches("the tool ")
                ),
                _ => format!("{} and {}", earlier.label, later.label),
            };
            let message = format!("{both} of this agent {same}; rename one with `name = \"…\"`");
            checks.extend(quote_spanned! {later.span=>
                const _: () = ::core::assert!(
                    !::patter::__private::str_eq(#a, #b),
                    #message
                );
            });
        }
    }
    checks
}
