use patter::CallContext;

/// Says who is calling.
#[patter::tool]
async fn who_is_calling(call: &CallContext, again: CallContext) -> String {
    format!("{} {}", call.caller(), again.caller())
}

fn main() {}
