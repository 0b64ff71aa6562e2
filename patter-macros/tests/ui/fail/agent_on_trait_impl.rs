struct Store;

trait Lookup {
    async fn lookup(&self) -> String;
}

#[patter::agent(system_prompt = "You run a store.")]
impl Lookup for Store {
    /// Looks up an order.
    #[tool]
    async fn lookup(&self) -> String {
        "shipped".to_owned()
    }
}

fn main() {}
