// An allow-pattern is `+` then digits or X, optionally ending in `*`.
#[patter::agent(system_prompt = "You route callers.", transfer_allow = "1555*")]
struct Router;

fn main() {}
