/// Arguments of remind.
#[patter::args]
struct Remind {
    /// When.
    at: std::time::Instant,
}

/// Set a reminder.
#[patter::tool]
async fn remind(_args: Remind) -> String {
    "ok".to_owned()
}

fn main() {}
