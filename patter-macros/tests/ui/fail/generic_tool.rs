/// Echoes its arguments.
#[patter::tool]
async fn echo<A: patter::ToolArgs>(args: A) -> String {
    let _ = args;
    String::new()
}

fn main() {}
