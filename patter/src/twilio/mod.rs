//! The Twilio carrier: voice webhooks and TwiML, X-Twilio-Signature, Media Streams messages,
//! per-call stream tokens, and the REST calls that end or transfer a call.

pub mod media;
pub mod rest;
pub mod signature;
pub mod stream_token;
pub mod twiml;
