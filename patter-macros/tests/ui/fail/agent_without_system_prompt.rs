#[patter::agent(first_message = "Hello!")]
struct Greeter;

#[patter::agent]
struct Silent;

fn main() {}
