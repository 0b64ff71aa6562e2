#[patter::args]
struct OrderId(String);

fn main() {}
