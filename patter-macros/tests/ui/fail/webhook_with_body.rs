#[patter::args]
struct OrderQuery {
    /// The order ID.
    order_id: String,
}

/// Looks up an order.
#[patter::webhook(url = "https://example.com/orders")]
async fn get_order(args: OrderQuery) {
    let _ = args;
}

fn main() {}
