struct Store;

#[patter::agent(system_prompt = "You run a store.")]
impl Store {
    /// Looks up an order.
    #[tool(nmae = "lookup")]
    async fn lookup_order(&self) -> String {
        "shipped".to_owned()
    }
}

fn main() {}
