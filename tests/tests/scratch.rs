#[test]
fn show() {
    use patter::Tool;
    let t = patter_examples::customer_service::initiate_return::tool();
    println!(
        "{}",
        serde_json::to_string_pretty(&t.definition().to_openai_json()).unwrap()
    );
    let t = patter_examples::customer_service::get_order_status::tool();
    println!(
        "{}",
        serde_json::to_string_pretty(&t.definition().to_openai_json()).unwrap()
    );
    let t = patter_examples::product_specialist::check_inventory::tool();
    println!(
        "{}",
        serde_json::to_string_pretty(&t.definition().to_openai_json()).unwrap()
    );
}
