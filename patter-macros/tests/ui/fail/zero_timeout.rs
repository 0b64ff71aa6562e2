/// Says hello.
#[patter::tool(timeout_secs = 0)]
async fn greet() -> String {
    "Hello!".to_owned()
}

fn main() {}
