//! The page, its script, its audio worklet and its style, built into the binary.

pub(super) const PAGE: &str = include_str!("page.html");
pub(super) const APP: &str = include_str!("app.js");
pub(super) const WORKLET: &str = include_str!("worklet.js");
pub(super) const STYLE: &str = include_str!("style.css");
