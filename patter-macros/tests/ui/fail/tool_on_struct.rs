/// Says hello.
#[patter::tool]
struct Greet;

fn main() {}
