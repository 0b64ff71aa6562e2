//! A customer-service agent whose tools are webhooks on the store's API.
//!
//! ```sh
//! ORDER_STATUS_URL=https://api.example.com/orders/status \
//! RETURNS_URL=https://api.example.com/returns \
//! WEBHOOK_SECRET=whsec_… cargo run --bin customer_service
//! ```

use std::process::ExitCode;

use patter_examples::customer_service::CustomerService;

#[tokio::main]
async fn main() -> ExitCode {
    patter_examples::serve(CustomerService).await
}
