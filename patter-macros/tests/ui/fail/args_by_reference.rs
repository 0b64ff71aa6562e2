#[patter::args]
struct OrderQuery {
    /// The order ID.
    order_id: String,
}

/// Looks up an order.
#[patter::tool]
async fn get_order(args: &OrderQuery) -> String {
    args.order_id.clone()
}

fn main() {}
