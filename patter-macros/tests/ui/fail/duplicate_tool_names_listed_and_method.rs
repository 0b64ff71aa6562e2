/// Looks up an order.
#[patter::tool(name = "lookup")]
async fn lookup_order() -> String {
    "shipped".to_owned()
}

struct Store;

#[patter::agent(system_prompt = "You run a store.", tools(lookup_order))]
impl Store {
    /// Looks up a product.
    #[tool(name = "lookup")]
    async fn lookup_product(&self) -> String {
        "in stock".to_owned()
    }
}

fn main() {}
