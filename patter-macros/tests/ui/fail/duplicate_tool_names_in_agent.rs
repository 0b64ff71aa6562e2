struct Store;

#[patter::agent(system_prompt = "You run a store.")]
impl Store {
    /// Looks up an order.
    #[tool(name = "lookup")]
    async fn lookup_order(&self) -> String {
        "shipped".to_owned()
    }

    /// Looks up a product.
    #[tool(name = "lookup")]
    async fn lookup_product(&self) -> String {
        "in stock".to_owned()
    }
}

fn main() {}
