async fn lookup_order() -> String {
    "shipped".to_owned()
}

#[patter::agent(system_prompt = "You run a store.", tools(lookup_order))]
struct Store;

fn main() {}
