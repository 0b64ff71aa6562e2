//! A product specialist with one in-process tool, `check_inventory`.
//!
//! ```sh
//! cargo run --bin product_specialist
//! ```

use std::process::ExitCode;

use patter_examples::product_specialist::ProductSpecialist;

#[tokio::main]
async fn main() -> ExitCode {
    patter_examples::serve(ProductSpecialist).await
}
