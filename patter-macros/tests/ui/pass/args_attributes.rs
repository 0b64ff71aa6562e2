//! Serde and schemars attributes on argument structs work as with plain derives: the schema
//! and the deserialisation agree, and fields that bring their own schema or are skipped ask
//! nothing more of their types.

use patter::{CallContext, Tool, ToolOutput, ToolSet};

/// A type with its own deserialisation but no schema.
#[derive(Debug, Default)]
struct Date(String);

impl<'de> patter::__private::serde::Deserialize<'de> for Date {
    fn deserialize<D: patter::__private::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as patter::__private::serde::Deserialize>::deserialize(d).map(Date)
    }
}

/// Not deserialisable at all.
#[derive(Debug, Default)]
struct Cache;

mod parse {
    use patter::__private::serde::{Deserialize, Deserializer};

    /// Reads "a,b" as a list.
    pub fn csv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(String::deserialize(d)?.split(',').map(str::to_owned).collect())
    }
}

/// Arguments of book.
#[patter::args(serialize)]
#[serde(rename_all = "camelCase", default)]
#[derive(Default)]
struct Book {
    /// Who is coming.
    guest_name: String,
    /// How many.
    party_size: u8,
    /// When, as a date.
    #[schemars(with = "String")]
    #[serde(skip_serializing)]
    date: Date,
    /// Tables, comma-separated.
    #[serde(deserialize_with = "parse::csv", skip_serializing)]
    tables: Vec<String>,
    #[serde(skip)]
    cache: Cache,
}

/// Book a table.
#[patter::tool]
async fn book(args: Book) -> ToolOutput {
    let _ = (&args.date.0, &args.cache);
    ToolOutput::json(&args).unwrap_or_else(|_| ToolOutput::text("unserialisable"))
}

#[tokio::main]
async fn main() {
    let tool = book::tool();
    let params = &tool.definition().parameters;
    let properties = params["properties"].as_object().unwrap();
    let names: Vec<&str> = properties.keys().map(String::as_str).collect();
    assert_eq!(names, ["date", "guestName", "partySize", "tables"]);
    assert_eq!(properties["date"]["type"], "string");
    assert_eq!(properties["tables"]["type"], "array");
    assert_eq!(params["required"].as_array().unwrap().len(), 0, "the struct has a default");

    let tools = ToolSet::builder().tool(tool).build().unwrap();
    let ctx = CallContext::builder("CA1").build();
    let out = tools
        .dispatch(
            "book",
            r#"{"guestName":"Ada","date":"2026-12-24","tables":"4,5"}"#,
            &ctx,
        )
        .await;
    assert_eq!(out.output, r#"{"guestName":"Ada","partySize":0}"#);
}
