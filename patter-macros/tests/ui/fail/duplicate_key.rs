/// Says hello.
#[patter::tool(name = "greet", name = "say_hello")]
async fn greet() -> String {
    "Hello!".to_owned()
}

fn main() {}
