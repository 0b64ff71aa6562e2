//! Tool argument types and the flat JSON schema the model is shown for them.

use schemars::{JsonSchema, generate::SchemaSettings};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// A type the model's tool arguments deserialise into.
///
/// Put `#[patter::args]` on a struct with named fields to implement it; the struct's field
/// doc comments become the parameter descriptions, and `Option` fields are optional.
/// A type that already derives `serde::Deserialize` and `schemars::JsonSchema` can opt in with
/// an empty `impl patter::ToolArgs for MyArgs {}`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tool argument type",
    label = "tool arguments must be a struct marked `#[patter::args]`",
    note = "add `#[patter::args]` above `struct {Self}`; a tool without arguments takes no argument at all"
)]
pub trait ToolArgs: ArgsShape + Send + 'static {
    /// The JSON schema of the arguments as the model is shown it: a flat object with
    /// `properties` and `required`, and no `$schema`, `title`, `$ref` or `$defs`.
    fn parameters_schema() -> Value {
        flat_schema::<Self>()
    }
}

/// What a tool's argument type must be: deserialisable and with a JSON schema. Every type
/// that is both has it; it exists so that a missing half is reported about the arguments'
/// fields, not about serde's traits.
#[doc(hidden)]
pub trait ArgsShape: DeserializeOwned + JsonSchema {}

impl<T: DeserializeOwned + JsonSchema> ArgsShape for T {}

/// The arguments of a tool that takes none: any JSON object (or nothing) is accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoArgs;

impl<'de> serde::Deserialize<'de> for NoArgs {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| NoArgs)
    }
}

impl JsonSchema for NoArgs {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NoArgs".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "object", "properties": {}, "required": [] })
    }
}

impl ToolArgs for NoArgs {}

/// The flat, OpenAI-compatible schema of `T` (see [`ToolArgs::parameters_schema`]).
pub fn flat_schema<T: JsonSchema + ?Sized>() -> Value {
    let generator = SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    clean(&mut schema, true);
    // The struct's own doc comment is for developers; the tool's description speaks to the model.
    if let Value::Object(map) = &mut schema {
        map.remove("description");
    }
    schema
}

/// Removes what OpenAI's function schema does not want and fills in what it does.
fn clean(value: &mut Value, root: bool) {
    match value {
        Value::Object(map) => {
            for key in ["$schema", "title", "$defs", "definitions", "$id"] {
                map.remove(key);
            }
            if let Some(Value::Object(props)) = map.get_mut("properties") {
                for prop in props.values_mut() {
                    clean(prop, false);
                }
            }
            for key in ["items", "additionalProperties"] {
                if let Some(sub) = map.get_mut(key) {
                    clean(sub, false);
                }
            }
            for key in ["oneOf", "anyOf", "allOf"] {
                if let Some(Value::Array(subs)) = map.get_mut(key) {
                    for sub in subs.iter_mut() {
                        clean(sub, false);
                    }
                }
            }
            drop_null_type(map);
            collapse_unit_enum(map);
            let is_object = map.get("type").and_then(Value::as_str) == Some("object");
            if is_object || root {
                map.entry("properties")
                    .or_insert_with(|| Value::Object(Map::new()));
                map.entry("required")
                    .or_insert_with(|| Value::Array(Vec::new()));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| clean(v, false)),
        _ => {}
    }
}

/// `Option<T>` fields are simply not required: `"type": ["string", "null"]` (or an
/// `anyOf` with a null branch) only confuses models, so the null alternative goes.
fn drop_null_type(map: &mut Map<String, Value>) {
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            map.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(branches)) = map.get_mut("anyOf") {
        branches.retain(|b| b.get("type").and_then(Value::as_str) != Some("null"));
        if branches.len() == 1
            && let Some(Value::Object(only)) = branches.pop()
        {
            map.remove("anyOf");
            for (k, v) in only {
                map.entry(k).or_insert(v);
            }
        }
    }
    if let Some(Value::Array(values)) = map.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
}

/// A unit enum whose variants carry doc comments comes out as `oneOf` of `const`s;
/// models read a plain `enum` list better.
fn collapse_unit_enum(map: &mut Map<String, Value>) {
    let Some(Value::Array(variants)) = map.get("oneOf") else {
        return;
    };
    let mut values = Vec::with_capacity(variants.len());
    let mut notes = Vec::new();
    for variant in variants {
        let Some(obj) = variant.as_object() else {
            return;
        };
        let Some(constant) = obj.get("const").or_else(|| {
            obj.get("enum")
                .and_then(Value::as_array)
                .filter(|a| a.len() == 1)
                .and_then(|a| a.first())
        }) else {
            return;
        };
        if let (Some(text), Some(desc)) = (
            constant.as_str(),
            obj.get("description").and_then(Value::as_str),
        ) {
            notes.push(format!("{text}: {}", desc.trim_end_matches('.')));
        }
        values.push(constant.clone());
    }
    map.remove("oneOf");
    if values.iter().all(Value::is_string) {
        map.insert("type".into(), Value::String("string".into()));
    }
    map.insert("enum".into(), Value::Array(values));
    if !notes.is_empty() {
        let notes = notes.join("; ");
        let text = match map.get("description").and_then(Value::as_str) {
            Some(own) => format!("{own} ({notes})"),
            None => notes,
        };
        map.insert("description".into(), Value::String(text));
    }
}
