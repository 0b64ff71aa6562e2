#[patter::agent(system_promt = "You answer the phone.")]
fn receptionist() {}

fn main() {}
