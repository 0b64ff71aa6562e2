//! Configuration from the environment's variables: every problem named at once, never a panic.

use patter::{ConfigBuilder, Patter};

fn complete() -> ConfigBuilder {
    Patter::builder()
        .twilio_account_sid(format!("AC{}", "0123456789abcdef".repeat(2)))
        .twilio_auth_token("token")
        .openai_api_key("sk-key")
        .phone_number("+15550100")
        .webhook_url("https://agent.example.com")
}

#[test]
fn a_complete_configuration_has_the_documented_defaults() {
    let config = complete().build().expect("valid");
    assert_eq!(config.port(), 8000);
    assert_eq!(config.bind_address().to_string(), "0.0.0.0");
    assert_eq!(
        config.openai_realtime_url(),
        "wss://api.openai.com/v1/realtime"
    );
    assert_eq!(config.twilio_api_url(), "https://api.twilio.com");
    assert_eq!(
        config.public_url().ws("/twilio/stream"),
        "wss://agent.example.com/twilio/stream"
    );
}

#[test]
fn a_bare_host_means_https_and_a_path_prefix_is_kept() {
    let config = complete()
        .webhook_url("abc.ngrok.app")
        .build()
        .expect("valid");
    assert_eq!(
        config.public_url().http("/twilio/voice"),
        "https://abc.ngrok.app/twilio/voice"
    );
    let config = complete()
        .webhook_url("https://proxy.example.com:8443/agent/")
        .build()
        .expect("valid");
    assert_eq!(
        config.public_url().ws("/twilio/stream"),
        "wss://proxy.example.com:8443/agent/twilio/stream"
    );
}

#[test]
fn every_missing_variable_is_named_in_one_error() {
    let err = Patter::builder().build().expect_err("nothing set");
    let missing: Vec<&str> = err.missing().collect();
    assert_eq!(
        missing,
        [
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "OPENAI_API_KEY",
            "PHONE_NUMBER",
            "WEBHOOK_URL"
        ]
    );
    let text = err.to_string();
    for var in missing {
        assert!(text.contains(var), "{text}");
    }
}

#[test]
fn malformed_values_are_named_with_what_is_wrong() {
    let err = complete()
        .twilio_account_sid("ACnothex")
        .phone_number("555-0100")
        .webhook_url("ftp://agent.example.com?x=1")
        .openai_realtime_url("https://api.openai.com/v1/realtime")
        .twilio_api_url("not a url")
        .build()
        .expect_err("malformed");
    let vars: Vec<&str> = err.variables().collect();
    assert_eq!(
        vars,
        [
            "TWILIO_ACCOUNT_SID",
            "PHONE_NUMBER",
            "WEBHOOK_URL",
            "OPENAI_REALTIME_URL",
            "TWILIO_API_URL"
        ]
    );
    assert_eq!(err.missing().count(), 0);
    let text = err.to_string();
    assert!(
        text.contains("PHONE_NUMBER must be an E.164 number"),
        "{text}"
    );
    assert!(
        text.contains("OPENAI_REALTIME_URL must be a wss:// URL"),
        "{text}"
    );
}

#[test]
fn webhook_urls_with_queries_or_credentials_are_refused() {
    for url in [
        "https://a.example.com/?x=1",
        "https://u:p@a.example.com",
        "https://",
    ] {
        let err = complete().webhook_url(url).build().expect_err(url);
        assert_eq!(
            err.variables().collect::<Vec<_>>(),
            ["WEBHOOK_URL"],
            "{url}"
        );
    }
}

#[test]
fn e164_numbers() {
    for ok in ["+15550100", "+442071838750", "+123456789012345"] {
        assert!(patter::config::is_e164(ok), "{ok}");
    }
    for bad in [
        "15550100",
        "+1555",
        "+0155501000",
        "+1555010a",
        "+1234567890123456",
        "",
    ] {
        assert!(!patter::config::is_e164(bad), "{bad}");
    }
}

#[test]
fn deployment_settings_override_the_limits_and_the_agent() {
    let mut limits = patter::Limits::default();
    limits.max_concurrent_calls = 7;
    let config = complete()
        .limits(limits)
        .max_concurrent_calls(250)
        .max_call_duration_secs(600)
        .drain_timeout_secs(0)
        .audio_format(patter::AudioFormat::Pcm24k)
        .model("gpt-realtime-mini")
        .voice("cedar")
        .build()
        .expect("valid");
    assert_eq!(
        config.limits().max_concurrent_calls,
        250,
        "the setting wins"
    );
    assert_eq!(
        config.limits().max_call_duration,
        std::time::Duration::from_secs(600)
    );
    assert_eq!(config.limits().drain_timeout, std::time::Duration::ZERO);
    assert_eq!(config.audio_format(), Some(patter::AudioFormat::Pcm24k));
    assert_eq!(config.model(), Some("gpt-realtime-mini"));
    assert_eq!(config.voice(), Some("cedar"));

    let defaults = complete().build().expect("valid");
    assert_eq!(defaults.limits(), &patter::Limits::default());
    assert_eq!(defaults.audio_format(), None);
    assert_eq!(defaults.model(), None);
}

#[test]
fn bad_deployment_settings_are_each_named_with_the_rest() {
    let err = Patter::builder()
        .phone_number("+15550100")
        .max_concurrent_calls(0)
        .max_call_duration_secs(0)
        .build()
        .expect_err("invalid");
    let text = err.to_string();
    for problem in [
        "PATTER_MAX_CONCURRENT_CALLS must be a whole number of at least 1",
        "PATTER_MAX_CALL_DURATION_SECS must be a whole number of at least 1",
        "TWILIO_ACCOUNT_SID is not set",
    ] {
        assert!(text.contains(problem), "{text}");
    }
}

#[test]
fn the_engine_and_its_endpoints_are_settings() {
    use patter::engine::EngineKind;
    let defaults = complete().build().expect("valid");
    assert_eq!(defaults.engine(), None, "each agent's own engine");
    assert_eq!(
        defaults.openai_live_url(),
        "wss://api.openai.com/v1/live/sessions"
    );
    assert_eq!(defaults.delegation_model(), None);
    let live = complete()
        .engine(EngineKind::GptLive)
        .openai_live_url("wss://gateway.example.com/v1/live/sessions/")
        .delegation_model("gpt-5.5")
        .build()
        .expect("valid");
    assert_eq!(live.engine(), Some(EngineKind::GptLive));
    assert_eq!(
        live.openai_live_url(),
        "wss://gateway.example.com/v1/live/sessions"
    );
    assert_eq!(live.delegation_model(), Some("gpt-5.5"));
    let bad = complete()
        .openai_live_url("https://not-a-websocket.example.com")
        .build()
        .expect_err("not wss");
    assert!(
        bad.to_string()
            .contains("OPENAI_LIVE_URL must be a wss:// URL"),
        "{bad}"
    );
}

#[test]
fn the_softphone_needs_only_the_openai_key_and_a_dev_token_must_be_url_safe_and_long() {
    let local = patter::ConfigBuilder::default()
        .openai_api_key("sk-local")
        .build_local()
        .expect("only the key");
    assert_eq!(local.port(), patter::config::DEFAULT_PORT);
    assert_eq!(local.bind_address(), None);
    for bad in [
        "short-token",
        "sixteen+chars/with=base64",
        "has spaces in it, sure",
    ] {
        let err = patter::ConfigBuilder::default()
            .openai_api_key("sk-local")
            .dev_token(bad)
            .build_local()
            .expect_err(bad);
        assert!(
            err.to_string()
                .contains("PATTER_DEV_TOKEN must be at least 16 characters"),
            "{err}"
        );
    }
    let err = patter::ConfigBuilder::default()
        .build_local()
        .expect_err("no key");
    assert_eq!(err.missing().collect::<Vec<_>>(), ["OPENAI_API_KEY"]);
    let secret = "a-dev-token_0123456789";
    let local = patter::ConfigBuilder::default()
        .openai_api_key("sk-local")
        .dev_token(secret)
        .build_local()
        .expect("a good token");
    assert!(
        !format!("{local:?}").contains(secret),
        "the token is not in Debug output"
    );
}
