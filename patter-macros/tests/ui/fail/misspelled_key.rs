#[patter::tool(descripton = "Says hello.")]
async fn greet() -> String {
    "Hello!".to_owned()
}

fn main() {}
