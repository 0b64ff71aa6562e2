#[patter::tool]
async fn greet() -> String {
    "Hello!".to_owned()
}

fn main() {}
