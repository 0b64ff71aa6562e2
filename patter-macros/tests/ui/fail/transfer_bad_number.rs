// A transfer destination's number must be E.164: the error points at the number.
#[patter::agent(system_prompt = "You route callers.", transfers(sales = "555-0111"))]
struct Router;

fn main() {}
