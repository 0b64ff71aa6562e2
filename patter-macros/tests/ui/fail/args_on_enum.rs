#[patter::args]
enum Reason {
    Defective,
    ChangedMind,
}

fn main() {}
