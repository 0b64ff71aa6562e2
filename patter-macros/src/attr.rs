//! Attribute-argument parsing shared by every macro: known keys only, each at most once, and
//! a "did you mean" for typos.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, Lit, LitStr};

/// Tracks the keys of one attribute.
pub struct Keys {
    allowed: &'static [&'static str],
    seen: Vec<String>,
}

impl Keys {
    pub fn new(allowed: &'static [&'static str]) -> Self {
        Keys {
            allowed,
            seen: Vec::new(),
        }
    }

    /// The key of `meta`, checked: known, and not seen before.
    pub fn key(&mut self, meta: &ParseNestedMeta) -> syn::Result<String> {
        let Some(ident) = meta.path.get_ident() else {
            return Err(meta.error(format!("expected one of {}", list(self.allowed))));
        };
        let key = ident.to_string();
        if !self.allowed.contains(&key.as_str()) {
            let hint = match suggest(&key, self.allowed) {
                Some(best) => format!("; did you mean `{best}`?"),
                None => format!("; expected one of {}", list(self.allowed)),
            };
            return Err(syn::Error::new(
                ident.span(),
                format!("unknown key `{key}`{hint}"),
            ));
        }
        if self.seen.contains(&key) {
            return Err(syn::Error::new(
                ident.span(),
                format!("`{key}` is given twice; keep one"),
            ));
        }
        self.seen.push(key.clone());
        Ok(key)
    }
}

fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The allowed key closest to `key`, if it is close enough to be a typo.
fn suggest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1) + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The text of the item's `///` doc comments, or `None` if it has none.
pub fn doc_text(attrs: &[Attribute]) -> Option<String> {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta
            && let Expr::Lit(expr) = &nv.value
            && let Lit::Str(s) = &expr.lit
        {
            let line = s.value();
            lines.push(
                line.strip_prefix(' ')
                    .unwrap_or(&line)
                    .trim_end()
                    .to_owned(),
            );
        }
    }
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// Whether `name` is a valid tool name, `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A string value with its span.
pub struct Spanned {
    pub value: String,
    pub span: Span,
}

impl From<LitStr> for Spanned {
    fn from(lit: LitStr) -> Self {
        Spanned {
            value: lit.value(),
            span: lit.span(),
        }
    }
}

/// Collects errors so one compile reports every problem.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub fn spanned(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// An error underlining all of `tokens` (a `Span` covers only their first token on
    /// stable).
    pub fn spanned_tokens(
        &mut self,
        tokens: impl quote::ToTokens,
        message: impl std::fmt::Display,
    ) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// If there were errors: `item` followed by them as `compile_error!`s. Keeping the
    /// user's item means nothing else fails because the macro removed it (a call of the
    /// function, an import only it uses).
    pub fn keeping(self, item: impl quote::ToTokens) -> Option<TokenStream> {
        self.0.map(|all| {
            let errors = all.into_compile_error();
            quote::quote!(#item #errors)
        })
    }

    /// `error` with every error collected before it, so none is lost.
    pub fn and(self, error: syn::Error) -> syn::Error {
        match self.0 {
            Some(mut all) => {
                all.combine(error);
                all
            }
            None => error,
        }
    }
}
