//! A product specialist with one in-process tool that uses the call's context.

use patter::{CallContext, ToolError};

/// Arguments of `check_inventory`.
#[patter::args]
pub struct CheckInventory {
    /// Product ID, e.g. "SKU-1234".
    pub product_id: String,
}

/// Stock of one product.
#[patter::data]
#[derive(Debug, PartialEq)]
pub struct Stock {
    /// The product asked about.
    pub product_id: String,
    /// Whether any is in stock.
    pub in_stock: bool,
    /// How many are in stock.
    pub quantity: u32,
}

/// Check if a product is in stock.
#[patter::tool]
pub async fn check_inventory(args: CheckInventory, call: &CallContext) -> Result<Stock, ToolError> {
    if !args.product_id.starts_with("SKU-") {
        return Err(ToolError::msg(format!(
            "unknown product id {:?}: product ids look like SKU-1234",
            args.product_id
        )));
    }
    // A stand-in for a stock service: each store (the call's `store` parameter, set when the
    // call was routed) has its own stock, derived from the ids so answers are stable.
    let store = call.parameter("store").unwrap_or("main");
    let quantity = args
        .product_id
        .bytes()
        .chain(store.bytes())
        .fold(0u32, |acc, b| {
            acc.wrapping_mul(31).wrapping_add(u32::from(b))
        })
        % 50;
    Ok(Stock {
        product_id: args.product_id,
        in_stock: quantity > 0,
        quantity,
    })
}

/// The product specialist agent.
#[patter::agent(
    system_prompt = "You are a product specialist. Answer questions about products and check \
                     stock with check_inventory before promising anything. The caller's number \
                     is {caller}.",
    first_message = "Hello! I can check stock for any product. Which one are you after?",
    tools(check_inventory)
)]
pub struct ProductSpecialist;
