struct Shop;

impl Shop {
    /// Says when the shop opens.
    #[patter::tool]
    async fn opening_hours() -> String {
        "9 to 5".to_owned()
    }
}

fn main() {}
