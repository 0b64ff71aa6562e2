/// Tells the time.
#[patter::tool]
async fn tokio() -> String {
    "noon".to_owned()
}

#[patter::agent(system_prompt = "You tell the time.", tools(tokio))]
struct Clock;

fn main() {}
