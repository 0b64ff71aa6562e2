/// Look up an order.
#[patter::tool]
fn lookup() -> String {
    "shipped".to_owned()
}

#[patter::agent(system_prompt = "You run a store.", tools(lookup))]
struct Store;

fn main() {
    let _ = lookup::tool();
}
