#[derive(Debug)]
struct LookupError;

/// Looks up the caller's account.
#[patter::tool]
async fn lookup_account() -> Result<String, LookupError> {
    Err(LookupError)
}

fn main() {}
