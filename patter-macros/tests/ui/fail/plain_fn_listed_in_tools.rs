fn ping() -> String {
    "pong".to_owned()
}

/// Checks the line.
#[patter::tool]
async fn echo() -> String {
    "echo".to_owned()
}

#[patter::agent(system_prompt = "You answer the phone.", tools(echo, ping))]
struct Receptionist;

fn main() {}
