//! The exact JSON schema the model is shown for every example tool, and for nested and enum
//! arguments.

use patter::Tool;
use patter::engine::openai_realtime::wire::tool_json;
use patter_examples::{customer_service, product_specialist};
use serde_json::{Value, json};

fn definition_json(tool: &dyn Tool) -> Value {
    tool_json(tool.definition())
}

#[test]
fn get_order_status_schema() {
    assert_eq!(
        definition_json(&customer_service::get_order_status::tool()),
        json!({
            "type": "function",
            "name": "get_order_status",
            "description": "Look up an order by its ID. Returns the status, the items and tracking information.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": { "type": "string", "description": "The order ID, e.g. \"ORD-123456\"." }
                },
                "required": ["order_id"]
            }
        })
    );
}

#[test]
fn initiate_return_schema_inlines_the_reason_enum() {
    assert_eq!(
        definition_json(&customer_service::initiate_return::tool()),
        json!({
            "type": "function",
            "name": "initiate_return",
            "description": "Start a return for one item of an order.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": { "type": "string", "description": "The order ID, e.g. \"ORD-123456\"." },
                    "item_id": { "type": "string", "description": "The ID of the item to return, as listed in the order." },
                    "reason": {
                        "type": "string",
                        "enum": ["defective", "wrong_item", "changed_mind", "other"],
                        "description": "Why the item is being returned. (defective: The item arrived broken or does not work; wrong_item: A different item was delivered; changed_mind: The caller no longer wants it; other: Any other reason)"
                    }
                },
                "required": ["order_id", "item_id", "reason"]
            }
        })
    );
}

#[test]
fn check_inventory_schema() {
    assert_eq!(
        definition_json(&product_specialist::check_inventory::tool()),
        json!({
            "type": "function",
            "name": "check_inventory",
            "description": "Check if a product is in stock.",
            "parameters": {
                "type": "object",
                "properties": {
                    "product_id": { "type": "string", "description": "Product ID, e.g. \"SKU-1234\"." }
                },
                "required": ["product_id"]
            }
        })
    );
}

/// Where to send the parcel.
#[patter::data]
struct Address {
    /// Street and number.
    street: String,
    /// Postal code.
    postcode: Option<String>,
}

#[patter::data]
#[serde(rename_all = "lowercase")]
enum Speed {
    Standard,
    Express,
}

/// Arguments with a nested struct, a unit enum, a list and optional fields.
#[patter::args]
struct Shipment {
    /// Destination.
    to: Address,
    /// How fast.
    speed: Speed,
    /// Parcel weights in kilograms.
    weights: Vec<f64>,
    /// Gift message, if any.
    note: Option<String>,
    /// Insured value in cents.
    insured_cents: Option<u64>,
}

/// Ship a parcel.
#[patter::tool]
async fn ship(args: Shipment) -> String {
    args.to.street
}

#[test]
fn nested_struct_and_enum_are_inlined_and_options_are_optional() {
    let schema = definition_json(&ship::tool());
    assert_eq!(
        schema["parameters"],
        json!({
            "type": "object",
            "properties": {
                "to": {
                    "type": "object",
                    "description": "Destination.",
                    "properties": {
                        "street": { "type": "string", "description": "Street and number." },
                        "postcode": { "type": "string", "description": "Postal code." }
                    },
                    "required": ["street"]
                },
                "speed": { "type": "string", "enum": ["standard", "express"], "description": "How fast." },
                "weights": {
                    "type": "array",
                    "description": "Parcel weights in kilograms.",
                    "items": { "type": "number", "format": "double" }
                },
                "note": { "type": "string", "description": "Gift message, if any." },
                "insured_cents": {
                    "type": "integer",
                    "description": "Insured value in cents.",
                    "format": "uint64",
                    "minimum": 0
                }
            },
            "required": ["to", "speed", "weights"]
        })
    );
    let text = schema.to_string();
    for banned in [
        "$schema",
        "$ref",
        "$defs",
        "definitions",
        "\"title\"",
        "null",
    ] {
        assert!(!text.contains(banned), "schema contains {banned}: {text}");
    }
}

/// Check the time.
#[patter::tool]
async fn what_time() -> &'static str {
    "noon"
}

#[test]
fn a_tool_without_arguments_has_an_empty_object_schema() {
    assert_eq!(
        definition_json(&what_time::tool())["parameters"],
        json!({ "type": "object", "properties": {}, "required": [] })
    );
}

/// How the parcel travels: some variants documented, some not.
#[patter::data]
#[serde(rename_all = "snake_case")]
enum Route {
    /// By road, two to three days.
    Road,
    Rail,
    /// By air, next day.
    Air,
    Sea,
}

/// The same variants, none documented.
#[patter::data]
enum Plain {
    Zulu,
    Alpha,
    Mike,
}

/// Arguments with enums.
#[patter::args]
struct Routing {
    /// The route.
    route: Route,
    /// A code word.
    word: Plain,
}

/// Route a parcel.
#[patter::tool]
async fn route(_args: Routing) -> String {
    String::new()
}

#[test]
fn enum_schemas_keep_declaration_order_in_one_flat_list() {
    let schema = definition_json(&route::tool());
    assert_eq!(
        schema["parameters"]["properties"]["route"],
        json!({
            "type": "string",
            "enum": ["road", "rail", "air", "sea"],
            "description": "The route. (road: By road, two to three days; air: By air, next day)"
        })
    );
    assert_eq!(
        schema["parameters"]["properties"]["word"],
        json!({ "type": "string", "enum": ["Zulu", "Alpha", "Mike"], "description": "A code word." })
    );
}
