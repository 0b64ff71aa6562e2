/// Looks up an order.
#[patter::tool]
async fn lookup_order() -> String {
    "shipped".to_owned()
}

#[patter::agent(system_prompt = "You run a store.", tools(lookup_order, lookup_order))]
struct Store;

fn main() {}
