#[patter::args]
struct Nothing;

fn main() {}
