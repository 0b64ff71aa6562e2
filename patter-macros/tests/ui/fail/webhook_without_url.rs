#[patter::args]
struct OrderQuery {
    /// The order ID.
    order_id: String,
}

/// Looks up an order.
#[patter::webhook]
async fn get_order(args: OrderQuery);

fn main() {}
