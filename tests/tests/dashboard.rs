//! The Grafana dashboard (`docs/grafana/patter.json`) rendered from its JSON in headless
//! Chromium, each panel at its grid position with its title, its queries and the values a
//! real scrape gave after a call: the layout is the dashboard's own, the numbers the
//! server's. The screenshot is the README's.
#![cfg(feature = "prometheus")]

mod common;

use base64::Engine as _;
use common::browser::Driver;
use common::{Harness, WAIT, mulaw_b64};
use fantoccini::Locator;
use patter::{AgentSpec, CallContext, ToolSet};
use patter_tests::fake_openai::audio_response_events;
use prometheus_parse::{Scrape, Value};

/// Looks an order up.
#[patter::tool]
async fn lookup(_call: &CallContext) -> String {
    "shipped".to_owned()
}

/// The server's metrics after one call with a tool and an answer.
async fn scrape_after_a_call() -> Scrape {
    let agent = AgentSpec::new("You help.")
        .model("gpt-realtime")
        .first_message("Hi!")
        .tools(
            ToolSet::builder()
                .tool(lookup::tool())
                .build()
                .expect("tools"),
        );
    let mut h = Harness::start(agent).await;
    let call = h.call(1).await;
    let conn = h.engine_conn(0).await;
    conn.send(serde_json::json!({
        "type": "input_audio_buffer.speech_stopped", "event_id": "e1",
        "audio_end_ms": 1000, "item_id": "item_in"
    }));
    conn.send_function_call_response("resp_1", &[("call_1", "lookup", "{}")]);
    conn.wait_for_event("conversation.item.create", WAIT)
        .await
        .expect("tool answered");
    conn.send_all(audio_response_events(
        "resp_2",
        "item_2",
        &[&mulaw_b64(800, 2)],
        "Shipped.",
    ));
    call.stream.wait_for_media(1, WAIT).await.expect("audio");
    call.stream.echo_pending_marks().await.expect("marks");
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    let (status, _, text) =
        patter_tests::fake_twilio::http_request("GET", &format!("{}/metrics", h.base), &[], b"")
            .await;
    assert_eq!(status, 200);
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text")
}

/// Prometheus's `histogram_quantile` over cumulative buckets: linear within the bucket.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = (rank - lower.1) / (count - lower.1).max(f64::MIN_POSITIVE);
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (le, count);
    }
    None
}

/// What the scrape says of `metric`, in a few words.
fn summary(scrape: &Scrape, metric: &str, quantile_of: Option<f64>) -> Option<String> {
    let mut total = 0.0;
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let mut found = false;
    for sample in scrape.samples.iter().filter(|s| s.metric == metric) {
        found = true;
        match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => total += v,
            Value::Histogram(hist) => {
                for (i, b) in hist.iter().enumerate() {
                    match buckets.get_mut(i) {
                        Some(slot) => slot.1 += b.count,
                        None => buckets.push((b.less_than, b.count)),
                    }
                }
            }
            Value::Summary(_) => {}
        }
    }
    if !found {
        return None;
    }
    if !buckets.is_empty() {
        let count = buckets.last().map_or(0.0, |b| b.1);
        let q = quantile_of.unwrap_or(0.95);
        return Some(match quantile(q, &buckets) {
            Some(v) => format!("p{:.0} {:.0} ms ({count} observed)", q * 100.0, v * 1000.0),
            None => "no observations".to_owned(),
        });
    }
    // Counters are shown as their totals so far (a rate needs two scrapes).
    let counter = metric.ends_with("_total");
    let value = if metric.contains("microdollars") {
        format!("${:.6}", total / 1e6)
    } else {
        format!("{total}")
    };
    Some(if counter {
        format!("{value} so far")
    } else {
        value
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The dashboard as a page: a 24-column grid, each panel where `gridPos` puts it.
fn render(dashboard: &serde_json::Value, scrape: &Scrape) -> String {
    let mut html = String::from(
        "<!doctype html><meta charset=utf-8><style>\
         body{margin:0;background:#111217;color:#ccccdc;font:13px sans-serif}\
         h1{font-size:16px;margin:8px 12px}\
         .grid{display:grid;grid-template-columns:repeat(24,1fr);grid-auto-rows:18px;gap:5px;padding:6px}\
         .panel{background:#181b1f;border:1px solid #2a2d35;border-radius:2px;padding:6px 8px;overflow:hidden}\
         .title{font-weight:600;color:#fff;margin-bottom:4px}\
         .stat .value{font-size:26px;color:#73bf69;margin-top:6px}\
         .q{font:11px monospace;color:#8e8e9e;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}\
         .v{color:#73bf69}</style>",
    );
    html.push_str(&format!(
        "<h1>{}</h1><div class=grid>",
        escape(dashboard["title"].as_str().unwrap_or_default())
    ));
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        let pos = &panel["gridPos"];
        let (x, y, w, h) = (
            pos["x"].as_u64().unwrap_or(0),
            pos["y"].as_u64().unwrap_or(0),
            pos["w"].as_u64().unwrap_or(12),
            pos["h"].as_u64().unwrap_or(8),
        );
        let kind = panel["type"].as_str().unwrap_or("timeseries");
        html.push_str(&format!(
            "<div class='panel {kind}' style='grid-column:{} / span {w};grid-row:{} / span {h}'>\
             <div class=title>{}</div>",
            x + 1,
            y + 1,
            escape(panel["title"].as_str().unwrap_or_default())
        ));
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            let q = expr
                .strip_prefix("histogram_quantile(")
                .and_then(|rest| rest.split(',').next())
                .and_then(|q| q.trim().parse::<f64>().ok());
            let values: Vec<String> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("patter_"))
                .map(|w| w.strip_suffix("_bucket").unwrap_or(w))
                .filter_map(|m| summary(scrape, m, q).map(|s| format!("{m}: {s}")))
                .collect();
            if kind == "stat" {
                let value = values
                    .first()
                    .and_then(|v| v.split(": ").nth(1))
                    .unwrap_or("no data");
                html.push_str(&format!("<div class=value>{}</div>", escape(value)));
            } else {
                let legend = target["legendFormat"].as_str().unwrap_or_default();
                html.push_str(&format!(
                    "<div class=q>{}: <span class=v>{}</span></div>",
                    escape(legend),
                    escape(&values.join("; "))
                ));
            }
            html.push_str(&format!("<div class=q>{}</div>", escape(expr)));
        }
        html.push_str("</div>");
    }
    html.push_str("</div>");
    html
}

#[tokio::test]
async fn the_dashboard_renders_from_its_json_with_a_real_scrape() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/grafana/patter.json")).expect("JSON");
    let scrape = scrape_after_a_call().await;
    let page = render(&dashboard, &scrape);
    let panels = dashboard["panels"].as_array().expect("panels");

    let driver = Driver::start().await;
    let browser = driver.browser_with(&[]).await;
    browser
        .set_window_size(1280, 1060)
        .await
        .expect("window size");
    let url = format!(
        "data:text/html;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(page.as_bytes())
    );
    browser.goto(&url).await.expect("the page");
    let shown = browser
        .find_all(Locator::Css(".panel .title"))
        .await
        .expect("panels");
    assert_eq!(shown.len(), panels.len());
    for (element, panel) in shown.iter().zip(panels) {
        let title = element.text().await.expect("title");
        assert_eq!(title, panel["title"].as_str().expect("title"));
    }
    // The stat panels show values from the scrape: one call was in progress at most, and
    // it has ended.
    let stats = browser
        .find_all(Locator::Css(".stat .value"))
        .await
        .expect("stats");
    let first = stats[0].text().await.expect("value");
    assert_eq!(first, "0", "calls in progress after the call");
    let latency = stats[1].text().await.expect("value");
    assert!(
        latency.starts_with("p95 ") && latency.ends_with("observed)"),
        "{latency}"
    );
    let shot = browser.screenshot().await.expect("a screenshot");
    assert_eq!(&shot[1..4], b"PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("grafana-dashboard.png");
    std::fs::write(&path, &shot).expect("saved");
    println!("dashboard rendered: {}", path.display());
    let _ = browser.close().await;
}

#[test]
fn quantiles_interpolate_within_the_bucket_as_prometheus_does() {
    let buckets = [(0.1, 0.0), (0.2, 10.0), (0.5, 20.0), (f64::INFINITY, 20.0)];
    assert_eq!(quantile(0.5, &buckets), Some(0.2));
    let p75 = quantile(0.75, &buckets).expect("some");
    assert!((p75 - 0.35).abs() < 1e-9, "{p75}");
    assert_eq!(quantile(0.5, &[(0.1, 0.0), (f64::INFINITY, 0.0)]), None);
}
