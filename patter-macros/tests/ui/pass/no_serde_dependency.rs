//! Every macro, used by a crate that depends on patter alone: no serde, no schemars.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use patter::{Agent, CallContext};

/// Why the caller is returning an item.
#[patter::data]
#[serde(rename_all = "snake_case")]
enum ReturnReason {
    /// The item arrived broken.
    Defective,
    /// The caller no longer wants it.
    ChangedMind,
}

/// Where to collect a return from.
#[patter::data]
struct Address {
    /// Street and number.
    street: String,
    /// Postal code.
    postcode: String,
}

#[patter::args]
struct ReturnRequest {
    /// The order ID.
    order_id: String,
    /// Why the item is being returned.
    reason: ReturnReason,
    /// Where to collect the item.
    pickup: Address,
}

#[patter::data]
struct ReturnLabel {
    order_id: String,
    reason: ReturnReason,
    postcode: String,
}

/// Starts a return.
#[patter::tool]
async fn start_return(args: ReturnRequest) -> ReturnLabel {
    let _ = args.pickup.street;
    ReturnLabel {
        order_id: args.order_id,
        reason: args.reason,
        postcode: args.pickup.postcode,
    }
}

#[patter::args]
struct OrderQuery {
    /// The order ID.
    order_id: String,
}

/// Looks up an order on the store's API.
#[patter::webhook(url = "https://example.com/orders", timeout_secs = 3)]
async fn get_order(args: OrderQuery);

/// A store agent whose tools are free functions.
#[patter::agent(
    system_prompt = "You help with returns for {store}.",
    first_message = "Hello!",
    voice = "cedar",
    variables(store = "Acme"),
    tools(start_return, get_order)
)]
struct Returns;

/// A store agent with state.
struct Counter {
    calls: AtomicU32,
}

#[patter::agent(system_prompt = "You count calls.")]
impl Counter {
    /// Counts one more call.
    #[tool]
    async fn count(&self, call: &CallContext) -> String {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        format!("call {n} from {}", call.caller())
    }

    /// Looks up an order for the counter.
    #[tool(name = "lookup")]
    async fn lookup_order(&self, args: OrderQuery) -> Result<String, String> {
        if args.order_id.is_empty() {
            return Err("the order ID is empty".to_owned());
        }
        Ok(args.order_id)
    }

    /// Not a tool: an ordinary method stays as it is.
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::main]
async fn main() {
    let ctx = CallContext::builder("CA1").caller("+15550100").build();

    let spec = Arc::new(Returns).spec().unwrap();
    assert_eq!(spec.system_prompt, "You help with returns for {store}.");
    assert_eq!(spec.first_message.as_deref(), Some("Hello!"));
    assert_eq!(spec.voice, "cedar");
    assert_eq!(
        spec.variables.get("store").map(String::as_str),
        Some("Acme")
    );
    let names: Vec<&str> = spec.tools.definitions().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["start_return", "get_order"]);
    let out = spec
        .tools
        .dispatch(
            "start_return",
            r#"{"order_id":"A1","reason":"changed_mind","pickup":{"street":"1 Main St","postcode":"12345"}}"#,
            &ctx,
        )
        .await;
    assert_eq!(
        out.output,
        r#"{"order_id":"A1","reason":"changed_mind","postcode":"12345"}"#
    );
    assert_eq!(get_order::NAME, "get_order");
    let webhook = get_order::tool();
    let def = patter::Tool::definition(&webhook);
    assert_eq!(def.description, "Looks up an order on the store's API.");
    assert_eq!(def.parameters["required"][0], "order_id");

    let counter = Arc::new(Counter {
        calls: AtomicU32::new(0),
    });
    let spec = Arc::clone(&counter).spec().unwrap();
    let names: Vec<&str> = spec.tools.definitions().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["count", "lookup"]);
    assert_eq!(
        spec.tools.dispatch("count", "{}", &ctx).await.output,
        "call 1 from +15550100"
    );
    assert_eq!(
        spec.tools.dispatch("count", "", &ctx).await.output,
        "call 2 from +15550100"
    );
    assert_eq!(counter.calls(), 2);
    let out = spec
        .tools
        .dispatch("lookup", r#"{"order_id":"B2"}"#, &ctx)
        .await;
    assert_eq!(out.output, "B2");
    let out = spec
        .tools
        .dispatch("lookup", r#"{"order_id":""}"#, &ctx)
        .await;
    assert_eq!(
        out.output,
        r#"{"error":{"message":"the order ID is empty","type":"tool_error"}}"#
    );
}
