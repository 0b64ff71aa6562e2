//! A customer-service agent whose tools are webhooks on the store's own API.

/// Arguments of `get_order_status`.
#[patter::args]
pub struct OrderQuery {
    /// The order ID, e.g. "ORD-123456".
    pub order_id: String,
}

/// Why the caller is returning an item.
#[patter::data]
#[serde(rename_all = "snake_case")]
pub enum ReturnReason {
    /// The item arrived broken or does not work.
    Defective,
    /// A different item was delivered.
    WrongItem,
    /// The caller no longer wants it.
    ChangedMind,
    /// Any other reason.
    Other,
}

/// Arguments of `initiate_return`.
#[patter::args]
pub struct ReturnRequest {
    /// The order ID, e.g. "ORD-123456".
    pub order_id: String,
    /// The ID of the item to return, as listed in the order.
    pub item_id: String,
    /// Why the item is being returned.
    pub reason: ReturnReason,
}

/// Look up an order by its ID. Returns the status, the items and tracking information.
#[patter::webhook(url_env = "ORDER_STATUS_URL", secret_env = "WEBHOOK_SECRET")]
pub async fn get_order_status(args: OrderQuery);

/// Start a return for one item of an order.
#[patter::webhook(url_env = "RETURNS_URL", secret_env = "WEBHOOK_SECRET")]
pub async fn initiate_return(args: ReturnRequest);

/// The customer-service agent.
#[patter::agent(
    system_prompt = "You are a friendly customer service agent for an online store. Help callers \
                     check on their orders and start returns. Always confirm the order ID before \
                     acting, and keep answers short: this is a phone call.",
    first_message = "Hi! I'm here to help with your order. Do you have an order ID I can look up?",
    tools(get_order_status, initiate_return),
    transfers(human_agent = "+15550142")
)]
pub struct CustomerService;
