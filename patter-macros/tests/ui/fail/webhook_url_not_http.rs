/// Looks up an order.
#[patter::webhook(url = "example.com/orders")]
async fn get_order();

fn main() {}
