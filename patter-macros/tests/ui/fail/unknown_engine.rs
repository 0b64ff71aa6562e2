#[patter::agent(system_prompt = "You answer the phone.", engine = "gemini")]
struct Receptionist;

fn main() {}
