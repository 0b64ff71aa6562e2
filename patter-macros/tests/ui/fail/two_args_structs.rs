#[patter::args]
struct OrderQuery {
    /// The order ID.
    order_id: String,
}

#[patter::args]
struct ItemQuery {
    /// The item ID.
    item_id: String,
}

/// Looks up an item of an order.
#[patter::tool]
async fn get_item(order: OrderQuery, item: ItemQuery) -> String {
    format!("{} {}", order.order_id, item.item_id)
}

fn main() {}
