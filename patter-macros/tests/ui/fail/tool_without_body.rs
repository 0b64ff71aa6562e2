/// Looks up an order.
#[patter::tool]
async fn get_order();

fn main() {}
