/// Looks up an order.
#[patter::tool(name = "lookup")]
async fn lookup_order() -> String {
    "shipped".to_owned()
}

/// Looks up a product.
#[patter::tool(name = "lookup")]
async fn lookup_product() -> String {
    "in stock".to_owned()
}

#[patter::agent(
    system_prompt = "You run a store.",
    tools(lookup_order, lookup_product)
)]
struct Store;

fn main() {}
