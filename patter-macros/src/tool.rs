//! `#[patter::tool]`: an `async fn` becomes a tool. The signature analysis here is shared
//! with the `&self` methods of an `#[patter::agent]` impl block.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{
    Attribute, FnArg, ForeignItemFn, Ident, ItemFn, LitInt, LitStr, ReceiverKind, ReturnType,
    Signature, Type,
};

use crate::attr::{Errors, Keys, Spanned, doc_text, is_valid_tool_name};
use crate::marker;

pub const TOOL_KEYS: &[&str] = &["name", "description", "timeout_secs"];

/// What `#[tool(...)]` says.
#[derive(Default)]
pub struct ToolAttrs {
    pub name: Option<Spanned>,
    pub description: Option<Spanned>,
    pub timeout_secs: Option<LitInt>,
}

impl ToolAttrs {
    pub fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut attrs = ToolAttrs::default();
        let mut keys = Keys::new(TOOL_KEYS);
        let parser = syn::meta::parser(|meta| {
            match keys.key(&meta)?.as_str() {
                "name" => attrs.name = Some(meta.value()?.parse::<LitStr>()?.into()),
                "description" => attrs.description = Some(meta.value()?.parse::<LitStr>()?.into()),
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

    /// Parses the arguments of a `#[tool]` / `#[tool(...)]` attribute on a method.
    pub fn from_attribute(attr: &Attribute) -> syn::Result<Self> {
        match &attr.meta {
            syn::Meta::Path(_) => Ok(ToolAttrs::default()),
            syn::Meta::List(list) => Self::parse(list.tokens.clone()),
            syn::Meta::NameValue(nv) => Err(syn::Error::new(
                nv.eq_token.span(),
                "write `#[tool]` or `#[tool(name = \"…\", description = \"…\")]`",
            )),
        }
    }
}

/// How a tool function takes the call context.
#[derive(Clone, Copy)]
enum CtxPass {
    Owned,
    Borrowed,
}

/// One parameter of a tool function, in order.
enum Param {
    Args,
    Ctx(CtxPass),
}

/// A checked tool signature.
pub struct ToolSig {
    pub ident: Ident,
    pub name: String,
    pub name_span: Span,
    pub description: String,
    pub timeout_secs: Option<LitInt>,
    pub args_ty: Option<Type>,
    params: Vec<Param>,
    output: ReturnType,
}

/// Where the function sits, which decides what its receiver may be.
#[derive(Clone, Copy, PartialEq)]
pub enum Place {
    FreeFn,
    AgentMethod,
}

impl ToolSig {
    /// Checks `sig` and collects every problem into `errors`; `None` if any was found.
    pub fn analyse(
        sig: &Signature,
        attrs: &[Attribute],
        tool_attrs: ToolAttrs,
        place: Place,
        errors: &mut Errors,
    ) -> Option<ToolSig> {
        let mut found = 0usize;
        if sig.asyncness.is_none() {
            let (fn_token, ident) = (&sig.fn_token, &sig.ident);
            errors.spanned_tokens(
                quote!(#fn_token #ident),
                format!(
                    "a tool must be an `async fn`: write `async fn {}`",
                    sig.ident
                ),
            );
            found += 1;
        }
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            let message = "a tool cannot be generic: the model's arguments need one concrete \
                           type; remove the generic parameters";
            if sig.generics.params.is_empty() {
                errors.spanned_tokens(&sig.generics.where_clause, message);
            } else {
                errors.spanned_tokens(&sig.generics, message);
            }
            found += 1;
        }
        let (name, name_span) = match tool_attrs.name {
            Some(n) => (n.value, n.span),
            None => (sig.ident.to_string(), sig.ident.span()),
        };
        if !is_valid_tool_name(&name) {
            errors.spanned(
                name_span,
                format!(
                    "`{name}` is not a valid tool name: use 1 to 64 of A-Z, a-z, 0-9, `_` and `-`"
                ),
            );
            found += 1;
        }
        let description = match tool_attrs
            .description
            .map(|d| d.value)
            .or_else(|| doc_text(attrs))
        {
            Some(d) => d,
            None => {
                errors.spanned(
                    sig.ident.span(),
                    format!(
                        "tool `{name}` needs a description, which the model reads to decide when \
                         to call it: add a doc comment (`/// What it does.`) or \
                         `description = \"…\"`"
                    ),
                );
                found += 1;
                String::new()
            }
        };

        let mut params = Vec::new();
        let mut args_ty: Option<Type> = None;
        let mut has_ctx = false;
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => {
                    let problem = match (place, &receiver.kind) {
                        (Place::FreeFn, _) => Some(
                            "a tool that takes `self` must be a method in an `impl` block marked \
                             `#[patter::agent]`, with `#[tool]` on the method",
                        ),
                        (Place::AgentMethod, ReceiverKind::Reference(_, _, None)) => None,
                        (Place::AgentMethod, ReceiverKind::Reference(_, _, Some(_))) => Some(
                            "a tool method takes `&self`, not `&mut self`: the agent is shared by \
                             every call; keep mutable state behind a `Mutex`",
                        ),
                        (Place::AgentMethod, _) => {
                            Some("a tool method takes `&self`: the agent is shared by every call")
                        }
                    };
                    if let Some(problem) = problem {
                        errors.spanned_tokens(receiver, problem);
                        found += 1;
                    }
                }
                FnArg::Typed(pat) => match context_kind(&pat.ty) {
                    Some(Ok(pass)) => {
                        if has_ctx {
                            errors.spanned_tokens(
                                &pat.ty,
                                "a tool takes at most one `CallContext` parameter; remove this one",
                            );
                            found += 1;
                        }
                        has_ctx = true;
                        params.push(Param::Ctx(pass));
                    }
                    Some(Err(())) => {
                        errors.spanned_tokens(
                            &pat.ty,
                            "take the call context as `&CallContext` or `CallContext`, not \
                             `&mut CallContext`: it is shared with the rest of the call",
                        );
                        found += 1;
                    }
                    None => {
                        if args_ty.is_some() {
                            errors.spanned_tokens(
                                &pat.ty,
                                "a tool takes one argument struct: put every parameter in one \
                                 `#[patter::args]` struct",
                            );
                            found += 1;
                        } else if let Type::Reference(r) = &*pat.ty {
                            errors.spanned_tokens(
                                r,
                                "take the tool's arguments by value (`args: MyArgs`), not by \
                                 reference",
                            );
                            found += 1;
                        } else {
                            args_ty = Some((*pat.ty).clone());
                            params.push(Param::Args);
                        }
                    }
                },
            }
        }
        if place == Place::AgentMethod && sig.receiver().is_none() {
            errors.spanned(
                sig.ident.span(),
                "a `#[tool]` method of an agent takes `&self`; tools without state can be free \
                 functions listed in `tools(...)`",
            );
            found += 1;
        }
        (found == 0).then_some(ToolSig {
            ident: sig.ident.clone(),
            name,
            name_span,
            description,
            timeout_secs: tool_attrs.timeout_secs,
            args_ty,
            params,
            output: sig.output.clone(),
        })
    }

    /// The argument type, `NoArgs` for a tool without arguments.
    pub fn args_ty(&self) -> TokenStream {
        match &self.args_ty {
            Some(ty) => quote!(#ty),
            None => quote!(::patter::NoArgs),
        }
    }

    /// An expression building the tool's `FnTool`. `callee` is the path of the function
    /// (`check_inventory`, or `__this.lookup` for a method); `setup` runs once per call
    /// before the `async` block (to clone an `Arc`, say).
    pub fn fn_tool(&self, callee: TokenStream, setup: TokenStream) -> TokenStream {
        let name = &self.name;
        let description = &self.description;
        let args_ty = self.args_ty();
        let args = format_ident!("__patter_args");
        let ctx = format_ident!("__patter_ctx");
        let call_args = self.params.iter().map(|p| match p {
            Param::Args => quote!(#args),
            Param::Ctx(CtxPass::Owned) => quote!(::core::clone::Clone::clone(&#ctx)),
            Param::Ctx(CtxPass::Borrowed) => quote!(&#ctx),
        });
        let convert = convert_return(&self.output);
        let timeout = self
            .timeout_secs
            .as_ref()
            .map(|secs| quote!(.with_timeout(::core::time::Duration::from_secs(#secs))));
        // Without an args type the generated closure's first parameter is unused.
        let args_pat = if self.args_ty.is_some() {
            quote!(#args)
        } else {
            quote!(_)
        };
        quote! {
            ::patter::FnTool::with_result_fn::<#args_ty, _, _>(
                #name,
                #description,
                move |#args_pat: #args_ty, #ctx: ::patter::CallContext| {
                    #setup
                    async move {
                        let __patter_ret = #callee(#(#call_args),*).await;
                        #convert
                    }
                },
            )
            #timeout
        }
    }
}

/// `Some(Ok)` for `CallContext`/`&CallContext`, `Some(Err)` for `&mut CallContext`, `None`
/// for anything else.
fn context_kind(ty: &Type) -> Option<Result<CtxPass, ()>> {
    fn is_context(ty: &Type) -> bool {
        matches!(ty, Type::Path(p) if p.qself.is_none()
            && p.path.segments.last().is_some_and(|s| s.ident == "CallContext"))
    }
    match ty {
        Type::Reference(r) if is_context(&r.elem) => match r.mutability {
            Some(_) => Some(Err(())),
            None => Some(Ok(CtxPass::Borrowed)),
        },
        Type::Paren(p) => context_kind(&p.elem),
        ty if is_context(ty) => Some(Ok(CtxPass::Owned)),
        _ => None,
    }
}

/// Turns `__patter_ret` into `Result<ToolOutput, ToolError>`. The trait checks are spanned
/// on the return type, so a wrong return type is reported there.
fn convert_return(output: &ReturnType) -> TokenStream {
    let (ok_span, err_span) = return_spans(output);
    let split = quote_spanned! {err_span=>
        (&__patter_ret).__patter_result_kind().split(__patter_ret)
    };
    let output = quote_spanned! {ok_span=>
        (&__patter_value).__patter_value_kind().output(__patter_value)
    };
    quote! {
        #[allow(unused_imports)]
        use ::patter::__private::ret::{
            JsonKind as _, PlainKind as _, ResultKind as _, TextKind as _,
        };
        match #split {
            ::core::result::Result::Ok(__patter_value) => #output,
            ::core::result::Result::Err(__patter_error) => {
                ::core::result::Result::Err(__patter_error)
            }
        }
    }
}

/// Where to report a bad success type and a bad error type: on `T` and `E` of a return type
/// written `Result<T, E>`, else (an alias, say) on the whole return type.
fn return_spans(output: &ReturnType) -> (Span, Span) {
    let ty = match output {
        ReturnType::Type(_, ty) => ty,
        ReturnType::Default => return (Span::call_site(), Span::call_site()),
    };
    let whole = ty.span();
    let Type::Path(path) = &**ty else {
        return (whole, whole);
    };
    let Some(last) = path.path.segments.last() else {
        return (whole, whole);
    };
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return (whole, whole);
    };
    if last.ident != "Result" {
        return (whole, whole);
    }
    let mut types = args.args.iter().filter_map(|arg| match arg {
        syn::GenericArgument::Type(t) => Some(t.span()),
        _ => None,
    });
    let ok = types.next().unwrap_or(whole);
    (ok, types.next().unwrap_or(whole))
}

/// `#[patter::tool]` on a free `async fn`.
pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            if let Ok(decl) = syn::parse2::<ForeignItemFn>(item) {
                let error = syn::Error::new(
                    decl.semi_token.span,
                    "a `#[patter::tool]` function needs a body; a tool without one is a \
                     webhook: `#[patter::webhook(url = \"…\")]`",
                )
                .into_compile_error();
                let stub = marker::stub(&decl.vis, &decl.sig.ident, quote!(::patter::FnTool));
                return Ok(quote!(#stub #error));
            }
            return Err(syn::Error::new(
                Span::call_site(),
                "`#[patter::tool]` goes on an `async fn` with a body; for a webhook tool use \
                 `#[patter::webhook(url = \"…\")]`",
            ));
        }
    };
    // A bad attribute is reported alone: checking the function against attributes that were
    // not read (a misspelled `description`, say) would only add confusing errors.
    // A method (`self`) is in an `impl` block, where no stand-in can go; its error says
    // where tool methods belong.
    let stub = || {
        if func.sig.receiver().is_some() {
            return TokenStream::new();
        }
        marker::stub(&func.vis, &func.sig.ident, quote!(::patter::FnTool))
    };
    let tool_attrs = match ToolAttrs::parse(attr) {
        Ok(a) => a,
        Err(e) => {
            let error = e.into_compile_error();
            let stub = stub();
            return Ok(quote!(#func #stub #error));
        }
    };
    let mut errors = Errors::default();
    let sig = ToolSig::analyse(
        &func.sig,
        &func.attrs,
        tool_attrs,
        Place::FreeFn,
        &mut errors,
    );
    if let Some(kept) = errors.keeping(quote!(#func)) {
        let stub = stub();
        return Ok(quote!(#kept #stub));
    }
    let Some(sig) = sig else {
        return Err(syn::Error::new(Span::call_site(), "invalid tool"));
    };
    let ident = &func.sig.ident;
    let name = &sig.name;
    let build = sig.fn_tool(quote!(#ident), TokenStream::new());
    let docs = quote! {
        #[doc = concat!("The `", #name, "` tool: `", stringify!(#ident), "::tool()`.")]
    };
    let marker = marker::marker(
        &func.vis,
        ident,
        name,
        docs,
        quote!(::patter::FnTool),
        build,
    );
    Ok(quote! {
        #func
        #marker
    })
}
