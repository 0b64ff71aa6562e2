/// Looks up an order.
#[patter::webhook(uri = "https://example.com/orders")]
async fn get_order();

fn main() {}
