//! What a call cost: the engine's usage and the carrier's minutes at a price table that is
//! configurable per model, with dated defaults. Amounts are whole picodollars, so a total is
//! exact to the token.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::engine::Usage;
use crate::tool::Direction;

/// An amount in US dollars, exact: whole picodollars (10⁻¹² USD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(pub u128);

impl Money {
    /// In dollars, for display and metrics.
    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e12
    }

    /// `usd` dollars per million, as a price per unit: "4.00 per 1M tokens" is
    /// `Money::per_million(4.0)` per token.
    pub fn per_million(usd: f64) -> Money {
        // Per million units, in picodollars per unit: usd × 10¹² / 10⁶.
        Money((usd * 1e6).round() as u128)
    }

    /// `usd` dollars.
    pub fn dollars(usd: f64) -> Money {
        Money((usd * 1e12).round() as u128)
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        Money(self.0 + other.0)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${:.6}", self.usd())
    }
}

/// A model's prices per unit (each a price per token, or per minute for time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModelPrices {
    /// Per text token in.
    pub text_in: Money,
    /// Per cached text token in.
    pub cached_text_in: Money,
    /// Per audio token in.
    pub audio_in: Money,
    /// Per cached audio token in.
    pub cached_audio_in: Money,
    /// Per text token out.
    pub text_out: Money,
    /// Per audio token out.
    pub audio_out: Money,
    /// Per minute of billed engine time (engines billed by time).
    pub per_minute: Money,
}

impl ModelPrices {
    /// Token prices, each in dollars per million tokens: text in, cached text in, audio
    /// in, cached audio in, text out, audio out.
    pub fn per_million_tokens(
        text_in: f64,
        cached_text_in: f64,
        audio_in: f64,
        cached_audio_in: f64,
        text_out: f64,
        audio_out: f64,
    ) -> Self {
        ModelPrices {
            text_in: Money::per_million(text_in),
            cached_text_in: Money::per_million(cached_text_in),
            audio_in: Money::per_million(audio_in),
            cached_audio_in: Money::per_million(cached_audio_in),
            text_out: Money::per_million(text_out),
            audio_out: Money::per_million(audio_out),
            per_minute: Money::default(),
        }
    }

    /// A price per minute of engine time, in dollars.
    pub fn per_minute(usd: f64) -> Self {
        ModelPrices {
            per_minute: Money::dollars(usd),
            ..ModelPrices::default()
        }
    }

    /// What `usage` costs.
    pub fn cost(&self, usage: &Usage) -> Money {
        let times = |n: u64, price: Money| Money(u128::from(n) * price.0);
        let fresh_text = usage.text_in.saturating_sub(usage.cached_text_in);
        let fresh_audio = usage.audio_in.saturating_sub(usage.cached_audio_in);
        // Time is billed in milliseconds of a per-minute price.
        let time = Money(u128::from(usage.billed_ms) * self.per_minute.0 / 60_000);
        times(fresh_text, self.text_in)
            + times(usage.cached_text_in, self.cached_text_in)
            + times(fresh_audio, self.audio_in)
            + times(usage.cached_audio_in, self.cached_audio_in)
            + times(usage.text_out, self.text_out)
            + times(usage.audio_out, self.audio_out)
            + time
    }
}

/// The price table: per engine model, and the carrier's price per started minute by
/// direction.
///
/// ```
/// use patter::call::{ModelPrices, Prices};
///
/// let prices = Prices::defaults()
///     .model("gpt-realtime-2.1", ModelPrices::per_million_tokens(4.0, 0.4, 32.0, 0.4, 16.0, 64.0))
///     .carrier_per_minute(0.0085, 0.014);
/// # let _ = prices;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prices {
    models: BTreeMap<String, ModelPrices>,
    inbound_minute: Money,
    outbound_minute: Money,
    as_of: String,
}

/// When the default prices were last checked against the vendors' price lists.
pub const DEFAULT_PRICES_AS_OF: &str = "2025-10-06";

impl Default for Prices {
    fn default() -> Self {
        Prices::defaults()
    }
}

impl Prices {
    /// OpenAI's and Twilio's list prices as of [`DEFAULT_PRICES_AS_OF`]: `gpt-realtime`
    /// ($4 / $0.40 / $32 / $0.40 / $16 / $64 per million text in, cached text, audio in,
    /// cached audio, text out, audio out), `gpt-realtime-mini` ($0.60 / $0.06 / $10 / $0.30
    /// / $2.40 / $20), `gpt-live-1.1` ($0.05 per minute), and Twilio US voice ($0.0085 a
    /// minute inbound, $0.014 outbound). Other models have no price until you give one:
    /// their calls report usage but no cost.
    pub fn defaults() -> Self {
        let realtime = ModelPrices::per_million_tokens(4.0, 0.4, 32.0, 0.4, 16.0, 64.0);
        let mini = ModelPrices::per_million_tokens(0.6, 0.06, 10.0, 0.3, 2.4, 20.0);
        Prices {
            models: BTreeMap::from([
                ("gpt-realtime".to_owned(), realtime),
                ("gpt-realtime-2025-08-28".to_owned(), realtime),
                ("gpt-realtime-mini".to_owned(), mini),
                ("gpt-live-1.1".to_owned(), ModelPrices::per_minute(0.05)),
            ]),
            inbound_minute: Money::dollars(0.0085),
            outbound_minute: Money::dollars(0.014),
            as_of: DEFAULT_PRICES_AS_OF.to_owned(),
        }
    }

    /// No prices at all: calls report usage, never cost.
    pub fn none() -> Self {
        Prices {
            models: BTreeMap::new(),
            inbound_minute: Money::default(),
            outbound_minute: Money::default(),
            as_of: String::new(),
        }
    }

    /// Sets (or replaces) `model`'s prices.
    pub fn model(mut self, model: impl Into<String>, prices: ModelPrices) -> Self {
        self.models.insert(model.into(), prices);
        self
    }

    /// The carrier's price per started minute, in dollars, inbound and outbound.
    pub fn carrier_per_minute(mut self, inbound: f64, outbound: f64) -> Self {
        self.inbound_minute = Money::dollars(inbound);
        self.outbound_minute = Money::dollars(outbound);
        self
    }

    /// Says when these prices were checked (shown with each cost).
    pub fn as_of(mut self, date: impl Into<String>) -> Self {
        self.as_of = date.into();
        self
    }

    /// What a call cost: `None` if `model` has no price.
    pub fn cost(
        &self,
        model: &str,
        usage: &Usage,
        direction: Direction,
        duration: Duration,
    ) -> Option<Cost> {
        let engine = self.models.get(model)?.cost(usage);
        let minutes = carrier_minutes(duration);
        let per_minute = match direction {
            Direction::Inbound => self.inbound_minute,
            Direction::Outbound => self.outbound_minute,
        };
        let carrier = Money(u128::from(minutes) * per_minute.0);
        Some(Cost {
            engine,
            carrier,
            total: engine + carrier,
            prices_as_of: self.as_of.clone(),
        })
    }
}

/// Minutes a carrier bills: every started minute.
pub fn carrier_minutes(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis().div_ceil(60_000)).unwrap_or(u32::MAX)
}

/// What one call cost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cost {
    /// The engine's share, from its reported usage.
    pub engine: Money,
    /// The carrier's share, from the call's started minutes.
    pub carrier: Money,
    /// Both.
    pub total: Money,
    /// When the prices used were checked.
    pub prices_as_of: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_costs_are_exact() {
        let usage = Usage {
            text_in: 1_234,
            cached_text_in: 200,
            audio_in: 5_000,
            cached_audio_in: 1_000,
            text_out: 321,
            audio_out: 4_567,
            billed_ms: 0,
        };
        let prices = ModelPrices::per_million_tokens(4.0, 0.4, 32.0, 0.4, 16.0, 64.0);
        // (1034 × 4 + 200 × 0.4 + 4000 × 32 + 1000 × 0.4 + 321 × 16 + 4567 × 64) µ$.
        let micro = 1034 * 4_000_000
            + 200 * 400_000
            + 4000 * 32_000_000
            + 1000 * 400_000
            + 321 * 16_000_000
            + 4567 * 64_000_000;
        assert_eq!(prices.cost(&usage).0, micro);
    }

    #[test]
    fn carrier_minutes_round_up_and_unknown_models_have_no_cost() {
        assert_eq!(carrier_minutes(Duration::from_secs(0)), 0);
        assert_eq!(carrier_minutes(Duration::from_millis(1)), 1);
        assert_eq!(carrier_minutes(Duration::from_secs(60)), 1);
        assert_eq!(carrier_minutes(Duration::from_secs(61)), 2);
        let prices = Prices::defaults();
        let usage = Usage::default();
        assert!(
            prices
                .cost("my-model", &usage, Direction::Inbound, Duration::ZERO)
                .is_none()
        );
        let cost = prices
            .cost(
                "gpt-realtime",
                &usage,
                Direction::Outbound,
                Duration::from_secs(90),
            )
            .expect("priced");
        assert_eq!(cost.carrier, Money::dollars(0.028));
        assert_eq!(cost.total, cost.carrier);
        let live = Usage {
            billed_ms: 90_000,
            ..Usage::default()
        };
        let cost = prices
            .cost("gpt-live-1.1", &live, Direction::Inbound, Duration::ZERO)
            .expect("priced");
        assert_eq!(cost.engine, Money::dollars(0.075));
    }
}
