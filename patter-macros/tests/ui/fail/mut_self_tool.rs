struct Counter {
    calls: u32,
}

#[patter::agent(system_prompt = "You count calls.")]
impl Counter {
    /// Counts one more call.
    #[tool]
    async fn count(&mut self) -> String {
        self.calls += 1;
        self.calls.to_string()
    }
}

fn main() {}
