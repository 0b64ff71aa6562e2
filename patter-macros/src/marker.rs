//! The item that stands for a tool beside its function: `enum name {}` (in the type
//! namespace, so the function keeps its own name) with `NAME`, `tool()` and the
//! `ListedTool` impl that `#[patter::agent(tools(...))]` names it through.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Ident, Visibility};

/// The marker of a checked tool; `build` makes it, as a `tool_ty`.
pub fn marker(
    vis: &Visibility,
    ident: &Ident,
    name: &str,
    docs: TokenStream,
    tool_ty: TokenStream,
    build: TokenStream,
) -> TokenStream {
    let version = crate::version_check();
    quote! {
        #docs
        #[allow(non_camel_case_types, dead_code)]
        #vis enum #ident {}

        #[allow(dead_code)]
        impl #ident {
            /// The name the model calls this tool by.
            #vis const NAME: &'static str = #name;

            /// The tool, ready to add to a `ToolSet`.
            #vis fn tool() -> #tool_ty {
                #version
                #build
            }
        }

        impl ::patter::__private::ListedTool for #ident {
            const NAME: &'static str = #name;
            fn tool() -> impl ::patter::Tool {
                #ident::tool()
            }
        }
    }
}

/// The marker of a tool whose declaration has errors (reported beside it): its uses, in an
/// agent's `tools(...)` or as `name::tool()`, then add no errors of their own.
pub fn stub(vis: &Visibility, ident: &Ident, tool_ty: TokenStream) -> TokenStream {
    let name = ident.to_string();
    marker(
        vis,
        ident,
        &name,
        TokenStream::new(),
        tool_ty,
        quote!(::core::unreachable!("the tool's declaration has errors")),
    )
}
