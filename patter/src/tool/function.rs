//! In-process tools: a Rust closure or function with a typed argument struct.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{
    CallContext, DEFAULT_TOOL_TIMEOUT, IntoToolResult, Invocation, Tool, ToolArgs, ToolDefinition,
    ToolError, ToolOutput,
};

type Handler =
    dyn Fn(String, CallContext) -> BoxFuture<'static, Result<ToolOutput, ToolError>> + Send + Sync;

/// A tool whose body is a Rust closure taking typed arguments and the [`CallContext`].
///
/// ```
/// use patter::{CallContext, FnTool, Json, ToolSet};
///
/// #[patter::args]
/// struct Lookup {
///     /// The order ID.
///     order_id: String,
/// }
///
/// let tool = FnTool::new("lookup_order", "Look up an order.", |args: Lookup, _ctx: CallContext| async move {
///     Json(serde_json::json!({ "order_id": args.order_id, "status": "shipped" }))
/// });
/// let tools = ToolSet::builder().tool(tool).build().unwrap();
/// assert_eq!(tools.definitions().next().unwrap().name, "lookup_order");
/// ```
#[derive(Clone)]
pub struct FnTool {
    definition: ToolDefinition,
    timeout: Duration,
    check_arguments: fn(&str) -> Result<(), ToolError>,
    handler: Arc<Handler>,
}

impl FnTool {
    /// A tool named `name` that runs `handler` with the model's arguments as `A`.
    ///
    /// The argument schema comes from `A`; the handler's return value becomes the result
    /// through [`IntoToolResult`].
    pub fn new<A, F, Fut, R>(
        name: impl Into<String>,
        description: impl Into<String>,
        handler: F,
    ) -> Self
    where
        A: ToolArgs,
        F: Fn(A, CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoToolResult,
    {
        Self::with_result_fn::<A, _, _>(name, description, move |args, ctx| {
            let fut = handler(args, ctx);
            async move { fut.await.into_tool_result() }
        })
    }

    /// Like [`FnTool::new`] for a handler that already produces the model's result.
    /// `#[patter::tool]` builds its tools with this.
    pub fn with_result_fn<A, F, Fut>(
        name: impl Into<String>,
        description: impl Into<String>,
        handler: F,
    ) -> Self
    where
        A: ToolArgs,
        F: Fn(A, CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ToolOutput, ToolError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let raw: Arc<Handler> = Arc::new(move |arguments: String, ctx: CallContext| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let args = parse_arguments::<A>(&arguments)?;
                handler(args, ctx).await
            })
        });
        FnTool {
            definition: ToolDefinition {
                name: name.into(),
                description: description.into(),
                parameters: A::parameters_schema(),
            },
            timeout: DEFAULT_TOOL_TIMEOUT,
            check_arguments: |raw| parse_arguments::<A>(raw).map(drop),
            handler: raw,
        }
    }

    /// Sets how long one call may run (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Deserialises the model's arguments, naming the offending field in the error.
///
/// An empty string counts as `{}`: models send it for tools without parameters.
pub(crate) fn parse_arguments<A: ToolArgs>(arguments: &str) -> Result<A, ToolError> {
    let text = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let detail = strip_position(&inner);
        if path.is_empty() || path == "." {
            ToolError::InvalidArguments(detail)
        } else {
            ToolError::InvalidArguments(format!("{path}: {detail}"))
        }
    })?;
    de.end()
        .map_err(|e| ToolError::InvalidArguments(strip_position(&e)))?;
    Ok(parsed)
}

/// serde_json appends " at line L column C", which means nothing to the model.
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(at) if err.line() > 0 => text[..at].to_string(),
        _ => text,
    }
}

impl Tool for FnTool {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn check_arguments(&self, arguments: &str) -> Result<(), ToolError> {
        (self.check_arguments)(arguments)
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        (self.handler)(invocation.arguments.to_owned(), invocation.context.clone())
    }
}

impl fmt::Debug for FnTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTool")
            .field("name", &self.definition.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
