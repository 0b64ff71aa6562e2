//! The Twilio carrier: voice webhooks and TwiML, X-Twilio-Signature, the Media Streams leg,
//! per-call stream tokens, and the REST calls that end or transfer a call.
//!
//! The messages and checks here are patter's internals (public for the benchmarks, fuzz
//! targets and wire tests), not API to build on.

pub mod leg;
pub mod media;
pub mod rest;
pub mod signature;
pub mod stream_token;
pub mod twiml;
