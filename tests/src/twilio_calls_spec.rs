//! Checks REST request bodies against Twilio's documented Calls API parameters
//! (`data/twilio_api_v2010_calls.json`: twilio/twilio-oai `spec/json/twilio_api_v2010.json`
//! @ d50069b, the provenance is inside the file).

use serde_json::Value;

const SPEC: &str = include_str!("../data/twilio_api_v2010_calls.json");

/// Values the descriptions list ("Can be: `a` or `b`") for parameters whose schema has no
/// `enum`.
const DESCRIBED_VALUES: &[(&str, &[&str])] = &[
    (
        "StatusCallbackEvent",
        &["initiated", "ringing", "answered", "completed"],
    ),
    ("MachineDetection", &["Enable", "DetectMessageEnd"]),
    ("AsyncAmd", &["true", "false"]),
    ("RecordingChannels", &["mono", "dual"]),
    ("RecordingTrack", &["inbound", "outbound", "both"]),
    ("Trim", &["trim-silence", "do-not-trim"]),
];

fn spec() -> Value {
    serde_json::from_str(SPEC).unwrap_or(Value::Null)
}

/// Every way `form` breaks the `operation` (`CreateCall` or `UpdateCall`) request schema:
/// unknown parameters, missing required ones, not exactly one of a conditional group,
/// repeated non-array parameters, values outside an enum, non-integers for integers.
pub fn violations(operation: &str, form: &[(String, String)]) -> Vec<String> {
    let spec = spec();
    let op = &spec["operations"][operation];
    let schema = &op["request_schema"];
    let Some(properties) = schema["properties"].as_object() else {
        return vec![format!("no operation {operation} in the spec")];
    };
    let mut problems = Vec::new();
    for required in schema["required"].as_array().into_iter().flatten() {
        let name = required.as_str().unwrap_or_default();
        if !form.iter().any(|(k, _)| k == name) {
            problems.push(format!("{operation}: required {name} missing"));
        }
    }
    for group in op["x-twilio"]["conditional"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let present: Vec<&str> = group
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter(|snake| {
                form.iter()
                    .any(|(k, _)| k.to_lowercase() == snake.replace('_', ""))
            })
            .collect();
        if present.len() != 1 {
            problems.push(format!(
                "{operation}: exactly one of {group} expected, got {present:?}"
            ));
        }
    }
    for (name, value) in form {
        let Some(property) = properties.get(name) else {
            problems.push(format!("{operation}: unknown parameter {name}"));
            continue;
        };
        let resolved = match property["$ref"].as_str() {
            Some(reference) => {
                let key = reference.rsplit('/').next().unwrap_or_default();
                spec["components"]["schemas"][key].clone()
            }
            None => property.clone(),
        };
        let is_array = resolved["type"] == "array";
        if !is_array && form.iter().filter(|(k, _)| k == name).count() > 1 {
            problems.push(format!("{operation}: {name} repeated but not an array"));
        }
        if let Some(allowed) = resolved["enum"].as_array()
            && !allowed.iter().any(|a| a.as_str() == Some(value))
        {
            problems.push(format!("{operation}: {name}={value} not in {allowed:?}"));
        }
        if let Some((_, allowed)) = DESCRIBED_VALUES.iter().find(|(n, _)| n == name)
            && !allowed.contains(&value.as_str())
        {
            problems.push(format!(
                "{operation}: {name}={value} not one of {allowed:?}"
            ));
        }
        if resolved["type"] == "integer" && value.parse::<i64>().is_err() {
            problems.push(format!("{operation}: {name}={value} is not an integer"));
        }
        if resolved["format"] == "uri" && !value.starts_with("https://") {
            problems.push(format!("{operation}: {name}={value} is not an https URL"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_good_create_passes_and_bad_ones_are_named() {
        let good = form(&[
            ("To", "+15550111"),
            ("From", "+15550100"),
            ("Url", "https://a.example/twilio/voice"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "completed"),
            ("Timeout", "30"),
        ]);
        assert_eq!(violations("CreateCall", &good), Vec::<String>::new());
        let bad = form(&[
            ("To", "+15550111"),
            ("Url", "https://a.example/v"),
            ("Twiml", "<Response/>"),
            ("Method", "PUT"),
            ("Timeout", "soon"),
            ("Timeout", "5"),
            ("MachineDetection", "Yes"),
            ("Colour", "red"),
        ]);
        let problems = violations("CreateCall", &bad).join("\n");
        for expected in [
            "required From",
            "exactly one of",
            "Method=PUT",
            "Timeout=soon",
            "Timeout repeated",
            "MachineDetection=Yes",
            "unknown parameter Colour",
        ] {
            assert!(problems.contains(expected), "{expected}: {problems}");
        }
    }

    #[test]
    fn update_status_values_come_from_the_spec() {
        assert!(violations("UpdateCall", &form(&[("Status", "completed")])).is_empty());
        assert!(!violations("UpdateCall", &form(&[("Status", "ended")])).is_empty());
    }
}
