struct OrderQuery {
    order_id: String,
}

struct Store;

#[patter::agent(system_prompt = "You run a store.")]
impl Store {
    /// Looks up an order.
    #[tool]
    async fn get_order(&self, args: OrderQuery) -> String {
        args.order_id
    }
}

fn main() {}
