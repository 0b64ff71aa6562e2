/// Where to ship.
struct Address {
    /// The street and number.
    street: String,
}

/// Arguments of ship_order.
#[patter::args]
struct ShipOrder {
    /// The order ID.
    order_id: String,
    /// Where to ship it.
    address: Address,
}

/// Ship an order.
#[patter::tool]
async fn ship_order(args: ShipOrder) -> String {
    args.order_id
}

fn main() {}
