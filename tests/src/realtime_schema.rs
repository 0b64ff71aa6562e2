//! Strict validation of OpenAI Realtime (GA) events against the official schemas.
//!
//! The schemas are the OpenAPI-flavoured extracts in `tests/data/`
//! (`openai_realtime_ga_client_events.schema.json`,
//! `openai_realtime_ga_server_events.schema.json`): a `components.schemas` map whose entries
//! refer to each other with `$ref: "#/components/schemas/<Name>"`, and an `x-roots` list
//! naming the root schema of the file.
//!
//! Supported keywords: `$ref`, `type` (string or list; `string`, `object`, `array`,
//! `number`, `integer`, `boolean`, `null`), `nullable: true`, `enum`, `const`, `properties`,
//! `required`, `additionalProperties` (boolean or schema), `items`, `minItems`, `maxItems`,
//! `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (numeric form), `minLength`,
//! `maxLength`, `allOf`, `anyOf`, `oneOf`. Annotations (`description`, `default`, `format`,
//! `title`, `example`, `discriminator`, `x-*`) are ignored, and so is `pattern` (it only
//! appears on MCP fields that patter never sends).
//!
//! Strictness, matching the Realtime server's behaviour of rejecting unknown parameters:
//!
//! * An object schema that lists `properties` rejects every key it does not list, unless
//!   `additionalProperties` is `true` or a schema (then the extra keys must match it).
//! * An object schema without `properties` is free-form (for example a tool's `parameters`),
//!   unless `additionalProperties` says otherwise.
//! * `integer` accepts only JSON numbers written without a fraction or exponent that fit
//!   `i64`/`u64` (`5`, not `5.0`, not `"5"`).
//! * `oneOf` is treated like `anyOf`: at least one branch must validate.
//!
//! Error strings name the JSON path (`$.session.audio.input.format`) and the reason. When no
//! branch of an `anyOf`/`oneOf` matches, only the errors of the branches that fit the value's
//! discriminating fields (`type`, `role`, … given by a `const` or one-value `enum`) are shown.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The raw client-events schema file (`tests/data/openai_realtime_ga_client_events.schema.json`).
pub const CLIENT_SCHEMA_JSON: &str =
    include_str!("../data/openai_realtime_ga_client_events.schema.json");

/// The raw server-events schema file (`tests/data/openai_realtime_ga_server_events.schema.json`).
pub const SERVER_SCHEMA_JSON: &str =
    include_str!("../data/openai_realtime_ga_server_events.schema.json");

/// The GPT-Live client-events schema file
/// (`tests/data/openai_live_client_events.schema.json`, written from the documented shapes).
pub const LIVE_CLIENT_SCHEMA_JSON: &str =
    include_str!("../data/openai_live_client_events.schema.json");

/// Which of the schema files to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Client → OpenAI events (`RealtimeClientEvent` and its components).
    Client,
    /// OpenAI → client events (`RealtimeServerEvent` and its components).
    Server,
    /// Client → OpenAI GPT-Live events (`LiveClientEvent` and its components).
    LiveClient,
}

/// Nesting guard against reference cycles that do not consume the value.
const MAX_DEPTH: usize = 96;
/// How many branch errors an `anyOf`/`oneOf` failure lists at most.
const MAX_BRANCH_ERRORS: usize = 4;

struct SchemaDoc {
    schemas: Map<String, Value>,
    root: String,
}

fn load(raw: &str, what: &str) -> SchemaDoc {
    let doc: Value = serde_json::from_str(raw)
        .unwrap_or_else(|e| panic!("tests/data {what} schema file is not JSON: {e}"));
    let schemas = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_else(|| panic!("tests/data {what} schema file has no components.schemas"));
    let root = doc
        .get("x-roots")
        .and_then(Value::as_array)
        .and_then(|roots| roots.first())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("tests/data {what} schema file has no x-roots"))
        .to_owned();
    assert!(
        schemas.contains_key(&root),
        "tests/data {what} schema file: root {root} is not in components.schemas"
    );
    SchemaDoc { schemas, root }
}

fn doc(side: Side) -> &'static SchemaDoc {
    static CLIENT: OnceLock<SchemaDoc> = OnceLock::new();
    static SERVER: OnceLock<SchemaDoc> = OnceLock::new();
    static LIVE_CLIENT: OnceLock<SchemaDoc> = OnceLock::new();
    match side {
        Side::Client => CLIENT.get_or_init(|| load(CLIENT_SCHEMA_JSON, "client")),
        Side::Server => SERVER.get_or_init(|| load(SERVER_SCHEMA_JSON, "server")),
        Side::LiveClient => {
            LIVE_CLIENT.get_or_init(|| load(LIVE_CLIENT_SCHEMA_JSON, "GPT-Live client"))
        }
    }
}

/// Validates one client → OpenAI GPT-Live event against the root `LiveClientEvent`.
pub fn validate_live_client_event(event: &Value) -> Result<(), String> {
    validate_root(Side::LiveClient, event)
}

/// Validates one client → OpenAI event against the GA root `RealtimeClientEvent`.
///
/// `Err` holds a readable reason starting with the JSON path of the offending value.
pub fn validate_client_event(event: &Value) -> Result<(), String> {
    validate_root(Side::Client, event)
}

/// Validates one OpenAI → client event against the GA root `RealtimeServerEvent`.
pub fn validate_server_event(event: &Value) -> Result<(), String> {
    validate_root(Side::Server, event)
}

/// Validates `value` against the root schema of `side` (its `x-roots` entry).
pub fn validate_root(side: Side, value: &Value) -> Result<(), String> {
    let d = doc(side);
    validate_component(side, &d.root, value)
}

/// Validates `value` against the named component schema of `side`
/// (for example `Side::Client`, `"RealtimeSessionCreateRequestGA"`).
pub fn validate_component(side: Side, name: &str, value: &Value) -> Result<(), String> {
    let d = doc(side);
    let schema = d
        .schemas
        .get(name)
        .ok_or_else(|| format!("no schema named {name} in the {side:?} schema file"))?;
    Validator { doc: d }.check(schema, value, "$", 0)
}

/// The name of the root schema of `side` (from the file's `x-roots`).
pub fn root_name(side: Side) -> &'static str {
    &doc(side).root
}

/// The property names a component schema lists at its top level, or `None` if there is no
/// such component or it lists no `properties`.
pub fn component_property_names(side: Side, name: &str) -> Option<Vec<String>> {
    doc(side)
        .schemas
        .get(name)?
        .get("properties")?
        .as_object()
        .map(|props| props.keys().cloned().collect())
}

struct Validator<'a> {
    doc: &'a SchemaDoc,
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn kind_matches(kind: &str, v: &Value) -> bool {
    match kind {
        "string" => v.is_string(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        _ => false,
    }
}

/// A short rendering of a value for error messages.
fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_owned()))
    }
}

fn ref_name(r: &str) -> Option<&str> {
    r.strip_prefix("#/components/schemas/")
}

impl Validator<'_> {
    fn resolve<'s>(&'s self, r: &str) -> Result<&'s Value, String> {
        ref_name(r)
            .and_then(|name| self.doc.schemas.get(name))
            .ok_or_else(|| format!("unresolvable $ref {r}"))
    }

    /// Follows `$ref` chains to the schema that has the actual keywords.
    fn deref<'s>(&'s self, mut schema: &'s Value) -> &'s Value {
        for _ in 0..MAX_DEPTH {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(r) => match self.resolve(r) {
                    Ok(next) => schema = next,
                    Err(_) => return schema,
                },
                None => return schema,
            }
        }
        schema
    }

    fn check(&self, schema: &Value, value: &Value, path: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "{path}: schema nesting too deep (reference cycle?)"
            ));
        }
        let obj = match schema {
            Value::Bool(true) => return Ok(()),
            Value::Bool(false) => return Err(format!("{path}: no value is allowed here")),
            Value::Object(obj) => obj,
            _ => return Err(format!("{path}: malformed schema {}", show(schema))),
        };

        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            let target = self.resolve(r).map_err(|e| format!("{path}: {e}"))?;
            self.check(target, value, path, depth + 1)?;
        }

        if value.is_null() && obj.get("nullable").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }

        if let Some(t) = obj.get("type") {
            let kinds: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !kinds.is_empty() && !kinds.iter().any(|k| kind_matches(k, value)) {
                let got = if value.is_null() {
                    "null".to_owned()
                } else {
                    format!("{} {}", kind_of(value), show(value))
                };
                return Err(format!(
                    "{path}: expected {}, got {got}",
                    kinds.join(" or ")
                ));
            }
        }

        if let Some(allowed) = obj.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            let list: Vec<String> = allowed.iter().map(show).collect();
            return Err(format!(
                "{path}: {} is not one of [{}]",
                show(value),
                list.join(", ")
            ));
        }
        if let Some(c) = obj.get("const")
            && c != value
        {
            return Err(format!("{path}: expected {}, got {}", show(c), show(value)));
        }

        if let Value::Number(n) = value
            && let Some(x) = n.as_f64()
        {
            self.check_number(obj, x, value, path)?;
        }

        if let Value::String(s) = value {
            let len = s.chars().count();
            if let Some(max) = obj.get("maxLength").and_then(Value::as_u64)
                && len as u64 > max
            {
                return Err(format!(
                    "{path}: string of {len} characters is longer than maxLength {max}"
                ));
            }
            if let Some(min) = obj.get("minLength").and_then(Value::as_u64)
                && (len as u64) < min
            {
                return Err(format!(
                    "{path}: string of {len} characters is shorter than minLength {min}"
                ));
            }
        }

        if let Value::Array(items) = value {
            self.check_array(obj, items, path, depth)?;
        }

        if let Value::Object(map) = value {
            self.check_object(obj, map, path, depth)?;
        }

        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for branch in all {
                self.check(branch, value, path, depth + 1)?;
            }
        }
        if let Some(any) = obj.get("anyOf").and_then(Value::as_array) {
            self.check_any(any, value, path, depth, "anyOf")?;
        }
        if let Some(one) = obj.get("oneOf").and_then(Value::as_array) {
            self.check_any(one, value, path, depth, "oneOf")?;
        }
        Ok(())
    }

    fn check_number(
        &self,
        obj: &Map<String, Value>,
        x: f64,
        value: &Value,
        path: &str,
    ) -> Result<(), String> {
        if let Some(min) = obj.get("minimum").and_then(Value::as_f64)
            && x < min
        {
            return Err(format!(
                "{path}: {} is less than minimum {min}",
                show(value)
            ));
        }
        if let Some(max) = obj.get("maximum").and_then(Value::as_f64)
            && x > max
        {
            return Err(format!(
                "{path}: {} is greater than maximum {max}",
                show(value)
            ));
        }
        if let Some(min) = obj.get("exclusiveMinimum").and_then(Value::as_f64)
            && x <= min
        {
            return Err(format!("{path}: {} is not greater than {min}", show(value)));
        }
        if let Some(max) = obj.get("exclusiveMaximum").and_then(Value::as_f64)
            && x >= max
        {
            return Err(format!("{path}: {} is not less than {max}", show(value)));
        }
        Ok(())
    }

    fn check_array(
        &self,
        obj: &Map<String, Value>,
        items: &[Value],
        path: &str,
        depth: usize,
    ) -> Result<(), String> {
        let n = items.len() as u64;
        if let Some(min) = obj.get("minItems").and_then(Value::as_u64)
            && n < min
        {
            return Err(format!(
                "{path}: array has {n} items, fewer than minItems {min}"
            ));
        }
        if let Some(max) = obj.get("maxItems").and_then(Value::as_u64)
            && n > max
        {
            return Err(format!(
                "{path}: array has {n} items, more than maxItems {max}"
            ));
        }
        if let Some(item_schema) = obj.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(item_schema, item, &format!("{path}[{i}]"), depth + 1)?;
            }
        }
        Ok(())
    }

    fn check_object(
        &self,
        obj: &Map<String, Value>,
        map: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<(), String> {
        if let Some(required) = obj.get("required").and_then(Value::as_array) {
            for key in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(key) {
                    return Err(format!("{path}: missing required property \"{key}\""));
                }
            }
        }
        let props = obj.get("properties").and_then(Value::as_object);
        let additional = obj.get("additionalProperties");
        for (key, v) in map {
            let here = child_path(path, key);
            if let Some(prop_schema) = props.and_then(|p| p.get(key)) {
                self.check(prop_schema, v, &here, depth + 1)?;
                continue;
            }
            match additional {
                Some(Value::Bool(true)) => {}
                Some(Value::Bool(false)) => {
                    return Err(unknown_property(path, key, props));
                }
                Some(extra @ Value::Object(_)) => self.check(extra, v, &here, depth + 1)?,
                // Strict: a schema that lists properties rejects keys it does not list;
                // a schema without `properties` is free-form.
                _ if props.is_some() => return Err(unknown_property(path, key, props)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether a branch could be the one meant for `value`: its type fits, and every
    /// discriminating property (a `const` or one-value `enum`) present in `value` matches.
    fn applicable(&self, branch: &Value, value: &Value) -> bool {
        let b = self.deref(branch);
        if let Some(t) = b.get("type") {
            let fits = match t {
                Value::String(s) => kind_matches(s, value),
                Value::Array(list) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|k| kind_matches(k, value)),
                _ => true,
            };
            let null_allowed =
                value.is_null() && b.get("nullable").and_then(Value::as_bool) == Some(true);
            if !(fits || null_allowed) {
                return false;
            }
        }
        if let (Some(props), Some(map)) = (
            b.get("properties").and_then(Value::as_object),
            value.as_object(),
        ) {
            for (key, prop) in props {
                let Some(actual) = map.get(key) else { continue };
                if let Some(expected) = discriminator_value(self.deref(prop))
                    && expected != actual
                {
                    return false;
                }
            }
        }
        true
    }

    fn branch_label(&self, branch: &Value, i: usize) -> String {
        match branch
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(ref_name)
        {
            Some(name) => name.to_owned(),
            None => format!("branch {i}"),
        }
    }

    fn check_any(
        &self,
        branches: &[Value],
        value: &Value,
        path: &str,
        depth: usize,
        keyword: &str,
    ) -> Result<(), String> {
        let mut errors = Vec::with_capacity(branches.len());
        for (i, branch) in branches.iter().enumerate() {
            match self.check(branch, value, path, depth + 1) {
                Ok(()) => return Ok(()),
                Err(e) => errors.push((i, e)),
            }
        }
        let applicable: Vec<usize> = branches
            .iter()
            .enumerate()
            .filter(|(_, b)| self.applicable(b, value))
            .map(|(i, _)| i)
            .collect();

        if applicable.is_empty()
            && let Some(t) = value.get("type")
        {
            // The value names a variant (`type`) that no branch has.
            let known: Vec<String> = branches
                .iter()
                .filter_map(|b| {
                    self.deref(b)
                        .get("properties")
                        .and_then(|p| p.get("type"))
                        .and_then(|p| discriminator_value(self.deref(p)))
                        .map(show)
                })
                .collect();
            if !known.is_empty() {
                return Err(format!(
                    "{path}: \"type\" {} matches no variant; expected one of [{}]",
                    show(t),
                    known.join(", ")
                ));
            }
        }

        let shown: Vec<&(usize, String)> = if applicable.is_empty() {
            errors.iter().collect()
        } else {
            errors
                .iter()
                .filter(|(i, _)| applicable.contains(i))
                .collect()
        };
        if shown.len() == 1 {
            let (i, e) = shown[0];
            return Err(format!(
                "{e} (in {} of {keyword} at {path})",
                self.branch_label(&branches[*i], *i)
            ));
        }
        let mut parts: Vec<String> = shown
            .iter()
            .take(MAX_BRANCH_ERRORS)
            .map(|(i, e)| format!("{}: {e}", self.branch_label(&branches[*i], *i)))
            .collect();
        if shown.len() > MAX_BRANCH_ERRORS {
            parts.push(format!("… {} more", shown.len() - MAX_BRANCH_ERRORS));
        }
        Err(format!(
            "{path}: matches no branch of {keyword}: [{}]",
            parts.join(" | ")
        ))
    }
}

/// The single value a property schema pins (`const`, or an `enum` of one value).
fn discriminator_value(prop: &Value) -> Option<&Value> {
    if let Some(c) = prop.get("const") {
        return Some(c);
    }
    match prop.get("enum").and_then(Value::as_array) {
        Some(list) if list.len() == 1 => list.first(),
        _ => None,
    }
}

fn unknown_property(path: &str, key: &str, props: Option<&Map<String, Value>>) -> String {
    match props {
        Some(p) => {
            let known: Vec<&str> = p.keys().map(String::as_str).collect();
            format!(
                "{path}: unknown property \"{key}\" (allowed: {})",
                known.join(", ")
            )
        }
        None => format!("{path}: unknown property \"{key}\" (no properties allowed)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ga_session_update() -> Value {
        json!({"type":"session.update","session":{
            "type":"realtime","model":"gpt-realtime","output_modalities":["audio"],
            "instructions":"You are a helpful agent.",
            "audio":{"input":{"format":{"type":"audio/pcmu"},
                              "turn_detection":{"type":"server_vad","threshold":0.5,"prefix_padding_ms":300,
                                                "silence_duration_ms":500,"create_response":true,"interrupt_response":true}},
                     "output":{"format":{"type":"audio/pcmu"},"voice":"marin"}},
            "tools":[{"type":"function","name":"transfer_call","description":"Transfer the call.",
                      "parameters":{"type":"object","properties":{"to":{"type":"string"}},"required":["to"]}}],
            "tool_choice":"auto"}})
    }

    #[test]
    fn ga_session_update_passes() {
        validate_client_event(&ga_session_update()).expect("GA session.update is valid");
    }

    #[test]
    fn pcm_24k_session_update_passes() {
        let mut ev = ga_session_update();
        ev["session"]["audio"]["input"]["format"] = json!({"type":"audio/pcm","rate":24000});
        ev["session"]["audio"]["output"]["format"] = json!({"type":"audio/pcm","rate":24000});
        validate_client_event(&ev).expect("PCM 24 kHz session.update is valid");
        ev["session"]["audio"]["output"]["format"] = json!({"type":"audio/pcm","rate":16000});
        let err = validate_client_event(&ev).expect_err("rate 16000 is invalid");
        assert!(err.contains("$.session.audio.output.format"), "{err}");
    }

    #[test]
    fn beta_voice_field_fails() {
        let mut ev = ga_session_update();
        ev["session"]["voice"] = json!("marin");
        let err = validate_client_event(&ev).expect_err("beta session.voice must fail");
        assert!(err.contains("$.session"), "{err}");
        assert!(err.contains("unknown property \"voice\""), "{err}");
    }

    #[test]
    fn beta_audio_format_fails() {
        let mut ev = ga_session_update();
        ev["session"]["input_audio_format"] = json!("g711_ulaw");
        let err = validate_client_event(&ev).expect_err("beta input_audio_format must fail");
        assert!(err.contains("input_audio_format"), "{err}");

        let mut ev = ga_session_update();
        ev["session"]["audio"]["input"]["format"] = json!("g711_ulaw");
        let err = validate_client_event(&ev).expect_err("string format must fail");
        assert!(err.contains("$.session.audio.input.format"), "{err}");
    }

    #[test]
    fn missing_session_type_fails() {
        let mut ev = ga_session_update();
        ev["session"]
            .as_object_mut()
            .expect("session object")
            .remove("type");
        let err = validate_client_event(&ev).expect_err("session.type is required");
        assert!(err.contains("\"type\""), "{err}");
    }

    #[test]
    fn beta_temperature_and_modalities_fail() {
        let mut ev = ga_session_update();
        ev["session"]["temperature"] = json!(0.8);
        assert!(validate_client_event(&ev).is_err());
        let mut ev = ga_session_update();
        ev["session"]["modalities"] = json!(["text", "audio"]);
        assert!(validate_client_event(&ev).is_err());
    }

    #[test]
    fn common_client_events_pass() {
        let events = [
            json!({"type":"input_audio_buffer.append","audio":"//8A/w=="}),
            json!({"type":"conversation.item.create","item":{"type":"function_call_output","call_id":"call_1","output":"{\"ok\":true}"}}),
            json!({"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":1500}),
            json!({"type":"response.create"}),
            json!({"type":"response.create","response":{"instructions":"Greet the caller."}}),
            json!({"type":"response.cancel"}),
            json!({"type":"conversation.item.create","item":{"type":"message","role":"user",
                   "content":[{"type":"input_text","text":"Greet the user"}]}}),
            json!({"type":"conversation.item.create","item":{"type":"message","role":"system",
                   "content":[{"type":"input_text","text":"Be brief"}]}}),
        ];
        for ev in &events {
            if let Err(e) = validate_client_event(ev) {
                panic!("{ev} should be valid: {e}");
            }
        }
    }

    #[test]
    fn truncate_with_string_audio_end_ms_fails() {
        let ev = json!({"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":"5"});
        let err = validate_client_event(&ev).expect_err("string audio_end_ms must fail");
        assert!(err.contains("$.audio_end_ms"), "{err}");
        assert!(err.contains("expected integer"), "{err}");
        let ev = json!({"type":"conversation.item.truncate","item_id":"item_1","content_index":0,"audio_end_ms":5.0});
        assert!(validate_client_event(&ev).is_err(), "5.0 is not an integer");
    }

    #[test]
    fn function_call_output_must_be_string() {
        let ev = json!({"type":"conversation.item.create","item":{"type":"function_call_output","call_id":"call_1","output":{"ok":true}}});
        let err = validate_client_event(&ev).expect_err("object output must fail");
        assert!(err.contains("$.item.output"), "{err}");
        assert!(
            err.contains("RealtimeConversationItemFunctionCallOutput"),
            "{err}"
        );
    }

    #[test]
    fn wrong_role_content_is_reported_for_its_branch() {
        let ev = json!({"type":"conversation.item.create","item":{"type":"message","role":"user",
                        "content":[{"type":"input_text","text":"hi","extra":1}]}});
        let err = validate_client_event(&ev).expect_err("extra key must fail");
        assert!(err.contains("RealtimeConversationItemMessageUser"), "{err}");
        assert!(
            !err.contains("RealtimeConversationItemMessageSystem"),
            "{err}"
        );
    }

    #[test]
    fn unknown_event_type_is_named() {
        let err = validate_client_event(&json!({"type":"session.updatee","session":{}}))
            .expect_err("unknown type");
        assert!(err.contains("session.updatee"), "{err}");
        assert!(err.contains("matches no variant"), "{err}");
    }

    #[test]
    fn beta_server_event_fails_and_ga_passes() {
        let ga = json!({"type":"response.output_audio.delta","event_id":"event_1","response_id":"resp_1",
                        "item_id":"item_1","output_index":0,"content_index":0,"delta":"//8A"});
        validate_server_event(&ga).expect("GA audio delta is valid");
        let mut beta = ga.clone();
        beta["type"] = json!("response.audio.delta");
        assert!(validate_server_event(&beta).is_err());
    }

    #[test]
    fn roots_and_components() {
        assert_eq!(root_name(Side::Client), "RealtimeClientEvent");
        assert_eq!(root_name(Side::Server), "RealtimeServerEvent");
        let names = component_property_names(Side::Server, "RealtimeSessionCreateResponseGA")
            .expect("session response schema");
        assert!(names.iter().any(|n| n == "audio"));
        assert!(validate_component(Side::Client, "NoSuchSchema", &json!({})).is_err());
    }
}
