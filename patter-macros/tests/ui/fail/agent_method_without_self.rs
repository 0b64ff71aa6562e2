struct Store;

#[patter::agent(system_prompt = "You run a store.")]
impl Store {
    /// Says whether the store is open.
    #[tool]
    async fn is_open() -> String {
        "yes".to_owned()
    }
}

fn main() {}
