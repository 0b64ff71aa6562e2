//! Tools listed by paths of any shape, and agents declared inside functions.

mod tools {
    pub mod store {
        /// Says when the store opens.
        #[patter::tool]
        pub async fn opening_hours() -> String {
            "9 to 5".to_owned()
        }
    }

    /// Says where the store is.
    #[patter::tool]
    pub async fn address() -> String {
        "1 Main St".to_owned()
    }
}

/// Checks the line.
#[patter::tool]
async fn ping() -> String {
    "pong".to_owned()
}

mod agents {
    #[patter::agent(
        system_prompt = "You answer for the store.",
        tools(super::tools::address, crate::tools::store::opening_hours, super::ping)
    )]
    pub struct Store;
}

#[tokio::main]
async fn main() {
    use patter::Agent;
    use std::sync::Arc;

    let spec = Arc::new(agents::Store).spec().unwrap();
    let names: Vec<&str> = spec.tools.definitions().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["address", "opening_hours", "ping"]);

    /// Says hello.
    #[patter::tool]
    async fn hello() -> String {
        "hello".to_owned()
    }

    #[patter::agent(system_prompt = "You greet.", tools(hello, self::tools::address))]
    struct Local;

    let local = Arc::new(Local).spec().unwrap();
    assert_eq!(local.tools.len(), 2);
}
