#[patter::agent(system_promt = "You run a store.")]
struct Store;

fn main() {}
