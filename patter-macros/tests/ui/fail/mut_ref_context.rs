use patter::CallContext;

/// Says who is calling.
#[patter::tool]
async fn who_is_calling(call: &mut CallContext) -> String {
    call.caller().to_owned()
}

fn main() {}
