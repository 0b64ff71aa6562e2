/// Arguments of lookup.
#[patter::args]
struct Lookup {
    /// The order ID.
    order_id: String,
}

/// Look up an order.
#[patter::webhook]
async fn lookup(args: Lookup);

#[patter::agent(system_prompt = "You run a store.", tools(lookup))]
struct Store;

fn main() {
    let _ = lookup::tool();
}
