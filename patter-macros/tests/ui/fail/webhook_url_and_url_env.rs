/// Looks up an order.
#[patter::webhook(url = "https://example.com/orders", url_env = "ORDERS_URL")]
async fn get_order();

fn main() {}
