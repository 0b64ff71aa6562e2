#![doc = include_str!("../../README.md")]

// The macros name `::patter::…` paths; this makes them resolve inside the crate too.
extern crate self as patter;

pub mod agent;
pub mod audio;
pub mod call;
pub mod carrier;
pub mod config;
pub mod console;
mod deploy;
pub mod engine;
mod error;
pub mod outbound;
mod runtime;
mod secret;
mod server;
pub mod softphone;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tool;
#[doc(hidden)]
pub mod twilio;
mod util;

pub use audio::AudioFormat;
pub use call::{
    CallEnv, CallEvent, CallSetup, CallSummary, EndReason, Hooks, NumberPattern, Recording, Role,
    ToolCallRecord, TranscriptEntry, TransferError, Transfers,
};
pub use config::{Config, ConfigBuilder, Limits, LocalConfig};
pub use error::{ConfigError, Error, Result};
pub use runtime::Patter;
/// Any JSON value (`serde_json::Value`), re-exported so your crate needs no `serde_json`.
pub use serde_json::Value as JsonValue;
/// Builds a [`JsonValue`] from JSON-like syntax, for tool results and tests:
/// `patter::json!({ "in_stock": true })`.
pub use serde_json::json;
pub use server::Server;

pub use agent::{Agent, AgentSpec};
pub use secret::Secret;
pub use tool::{
    CallAction, CallContext, Direction, DispatchOutcome, FnTool, IntoToolResult, Json, NoArgs,
    Tool, ToolArgs, ToolDefinition, ToolError, ToolOutput, ToolSet, ToolSetError, WebhookTool,
};

/// Assembles an agent; see the crate docs.
///
/// `system_prompt = "…"` is required; `first_message`, `voice`, `model`, `audio_format`
/// (`"pcmu"`, `"pcm24k"`), `engine` (`"realtime"`, `"gpt-live"`), `variables(name = "…")`,
/// `transfers(sales = "+15550111", …)` (where `transfer_call` may send a caller, by name) and
/// `transfer_allow = "+1555XXXXXXX, +44*"` (numbers the model may give; see [`Transfers`])
/// and `record = true` (dual-channel call recordings, reported to `on_recording`) are
/// optional. `tools(...)` lists tools by path (`lookup`,
/// `tools::lookup`, `crate::tools::lookup`); a tool named like a crate you depend on (`log`,
/// say) is listed as `crate::log`, or `self::log`, so that the name is not ambiguous.
pub use patter_macros::agent;
/// Marks a struct as a tool's arguments: derives deserialisation and the JSON schema through
/// patter's own paths (no serde or schemars needed in your `Cargo.toml`).
///
/// Field doc comments become the parameter descriptions; `Option` fields are optional.
/// Serde attributes (`#[serde(rename = "…")]`, `#[serde(default)]`) work as usual.
/// `#[patter::args(serialize)]` derives `Serialize` too (to forward the arguments on, say).
///
/// A field's type needs deserialisation and a schema: `#[patter::data]` on your own types,
/// or `#[schemars(with = "…")]` on the field to give a schema by hand.
pub use patter_macros::args;
/// Marks a type used inside tool arguments (an enum, a nested struct) or returned by a tool:
/// derives serialisation and the JSON schema through patter's own paths.
pub use patter_macros::data;
/// Turns an `async fn` into a tool the model can call; see the crate docs.
pub use patter_macros::tool;
/// Declares a webhook tool on a bodiless `async fn`; see the crate docs.
pub use patter_macros::webhook;

/// The names most agents need: `use patter::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Agent, AgentSpec, CallContext, CallSetup, CallSummary, FnTool, Json, NoArgs, Patter,
        ToolError, ToolOutput, ToolSet, WebhookTool,
    };
}

/// Paths the macros' generated code uses. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
    pub use serde_json;

    /// Named after the version of patter: every macro expansion names the module of the
    /// version its `patter-macros` was built for, so macros of another version are a compile
    /// error (as serde does with its private module).
    pub mod v0_1_0 {
        /// What the macros name.
        pub struct MacrosMatch;
    }
    const _: () = ::core::assert!(
        str_eq(env!("CARGO_PKG_VERSION"), "0.1.0"),
        "rename `__private::v0_1_0` after the new version"
    );

    /// A tool `#[patter::agent(tools(...))]` can list: what `#[patter::tool]` and
    /// `#[patter::webhook]` make. The agent macro names each listed path through this trait,
    /// with a stand-in that lacks it for paths that are not tools, so that a plain function
    /// listed by mistake gets this one error instead of a name-resolution error.
    #[diagnostic::on_unimplemented(
        message = "this function is not a tool",
        label = "listed in `tools(...)`, but not marked as a tool",
        note = "a tool is an `async fn` marked `#[patter::tool]`, or a bodiless `async fn` marked `#[patter::webhook(url = \"…\")]`"
    )]
    pub trait ListedTool {
        /// The tool's name.
        const NAME: &'static str;
        /// The tool.
        fn tool() -> impl crate::Tool;
    }

    /// A field type of `#[patter::args]`: deserialisable, with a JSON schema. The macro asks
    /// for it with a lifetime, so that a field type without it is one error (this one, where
    /// the arguments are used) rather than one per derive.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be part of a tool's arguments",
        label = "a field of this type has no JSON schema for the model",
        note = "mark `{Self}` with `#[patter::data]` (it derives both), or use a type that implements `serde::Deserialize` and `schemars::JsonSchema`"
    )]
    pub trait ArgField<'de>: serde::Deserialize<'de> {
        /// The field's schema.
        fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
        /// Whether the field is an `Option` (then it is not required).
        fn is_option() -> bool;
        /// The schema of a required `Option` field.
        fn non_optional_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
    }

    #[diagnostic::do_not_recommend]
    impl<'de, T: serde::Deserialize<'de> + schemars::JsonSchema> ArgField<'de> for T {
        fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
            generator.subschema_for::<T>()
        }
        fn is_option() -> bool {
            T::_schemars_private_is_option()
        }
        fn non_optional_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
            T::_schemars_private_non_optional_json_schema(generator)
        }
    }

    /// The schema of a field deserialised by other means (`#[serde(with = …)]`): only the
    /// schema is asked of its type.
    pub struct SchemaOnly<'de, T>(::core::marker::PhantomData<Field<'de, T>>);

    impl<'de, T: schemars::JsonSchema> schemars::JsonSchema for SchemaOnly<'de, T> {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> ::std::borrow::Cow<'static, str> {
            ::std::borrow::Cow::Borrowed("patter_argument")
        }
        fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
            generator.subschema_for::<T>()
        }
        fn _schemars_private_non_optional_json_schema(
            generator: &mut schemars::SchemaGenerator,
        ) -> schemars::Schema {
            T::_schemars_private_non_optional_json_schema(generator)
        }
        fn _schemars_private_is_option() -> bool {
            T::_schemars_private_is_option()
        }
    }

    /// The schema of a field of type `T`, as `#[patter::args]` describes it (through
    /// [`ArgField`]).
    pub struct SchemaOf<'de, T>(::core::marker::PhantomData<Field<'de, T>>);

    /// A field of type `T` as seen from a deserialiser borrowing for `'de`.
    type Field<'de, T> = (&'de (), fn() -> T);

    impl<'de, T: ArgField<'de>> schemars::JsonSchema for SchemaOf<'de, T> {
        fn inline_schema() -> bool {
            true
        }
        fn schema_name() -> ::std::borrow::Cow<'static, str> {
            ::std::borrow::Cow::Borrowed("patter_argument")
        }
        fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
            T::schema(generator)
        }
        fn _schemars_private_non_optional_json_schema(
            generator: &mut schemars::SchemaGenerator,
        ) -> schemars::Schema {
            T::non_optional_schema(generator)
        }
        fn _schemars_private_is_option() -> bool {
            T::is_option()
        }
    }

    pub use crate::tool::webhook::WebhookTool;

    /// Compares two names in a `const` context, for the agent macro's duplicate check.
    pub const fn str_eq(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Turning whatever a `#[patter::tool]` fn returns into the model's result.
    ///
    /// The macro cannot see through type aliases, so it asks the type checker: method
    /// resolution picks the first of these "kinds" that applies to the concrete type
    /// (autoref specialisation). Step one splits any `Result` into `Ok`/`Err`; step two sends
    /// text types through as they are and serialises everything else as JSON.
    pub mod ret {
        use crate::tool::{IntoToolResult, ToolError, ToolErrorText, ToolOutput};

        /// The value was a `Result`.
        pub struct ResultTag;
        /// The value was not a `Result`.
        pub struct PlainTag;
        /// Step one for `Result`s.
        pub trait ResultKind {
            /// Tags the value.
            fn __patter_result_kind(&self) -> ResultTag {
                ResultTag
            }
        }
        impl<T, E> ResultKind for Result<T, E> {}
        /// Step one for everything else.
        pub trait PlainKind {
            /// Tags the value.
            fn __patter_result_kind(&self) -> PlainTag {
                PlainTag
            }
        }
        impl<T: ?Sized> PlainKind for &T {}

        impl ResultTag {
            /// `Err` becomes the model-visible tool error.
            pub fn split<T, E: ToolErrorText>(self, value: Result<T, E>) -> Result<T, ToolError> {
                value.map_err(ToolErrorText::into_tool_error)
            }
        }
        impl PlainTag {
            /// Always `Ok`.
            pub fn split<T>(self, value: T) -> Result<T, ToolError> {
                Ok(value)
            }
        }

        /// The value is already a tool result (`String`, `&str`, `ToolOutput`, …).
        pub struct TextTag;
        /// The value is serialised as JSON.
        pub struct JsonTag;
        /// Step two for tool results.
        pub trait TextKind {
            /// Tags the value.
            fn __patter_value_kind(&self) -> TextTag {
                TextTag
            }
        }
        impl<T: IntoToolResult> TextKind for T {}
        /// Step two for everything else.
        pub trait JsonKind {
            /// Tags the value.
            fn __patter_value_kind(&self) -> JsonTag {
                JsonTag
            }
        }
        impl<T> JsonKind for &T {}

        impl TextTag {
            /// Passes the result through.
            pub fn output<T: IntoToolResult>(self, value: T) -> Result<ToolOutput, ToolError> {
                value.into_tool_result()
            }
        }
        impl JsonTag {
            /// Serialises the value as compact JSON.
            pub fn output<T: ToolResultValue>(self, value: T) -> Result<ToolOutput, ToolError> {
                value.to_output()
            }
        }

        /// A value a tool can return as JSON.
        #[diagnostic::on_unimplemented(
            message = "`{Self}` cannot be returned from a tool",
            label = "a tool returns `String`, `ToolOutput`, a `#[patter::data]` type, or a `Result` of these",
            note = "mark `{Self}` with `#[patter::data]` (or derive `serde::Serialize` for it), or return a `String`"
        )]
        pub trait ToolResultValue {
            /// Serialises.
            fn to_output(self) -> Result<ToolOutput, ToolError>;
        }
        // Not recommended: an error then names this trait (and its advice) instead of
        // listing every `Serialize` type.
        #[diagnostic::do_not_recommend]
        impl<T: serde::Serialize> ToolResultValue for T {
            fn to_output(self) -> Result<ToolOutput, ToolError> {
                ToolOutput::json(&self)
            }
        }
    }
}
