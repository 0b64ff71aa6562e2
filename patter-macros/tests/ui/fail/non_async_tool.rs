/// Says hello.
#[patter::tool]
fn greet() -> String {
    "Hello!".to_owned()
}

fn main() {}
