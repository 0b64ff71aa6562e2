struct Shop {
    open: bool,
}

impl Shop {
    /// Says whether the shop is open.
    #[patter::tool]
    async fn is_open(&self) -> String {
        self.open.to_string()
    }
}

fn main() {}
