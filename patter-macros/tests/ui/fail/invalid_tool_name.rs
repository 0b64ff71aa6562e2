/// Says hello.
#[patter::tool(name = "bad name!")]
async fn greet() -> String {
    "Hello!".to_owned()
}

fn main() {}
