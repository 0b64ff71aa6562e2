struct OrderQuery {
    order_id: String,
}

/// Looks up an order.
#[patter::webhook(url = "https://example.com/orders")]
async fn get_order(args: OrderQuery);

fn main() {}
