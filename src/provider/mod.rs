//! Native probes of the cloud providers that speak their own API (the provider catalog
//! lives beside them).
//!
//! * [`aws`]: AWS Bedrock, SigV4-signed Converse / InvokeModel requests (feature `bedrock`).
//! * [`vertex`]: Vertex AI, `generateContent` / `predict` with service-account OAuth
//!   tokens (feature `vertex`).

// Until the catalog and the prober call them (the lead wires them in), the functions
// below are used by their own tests only.
#![allow(dead_code)]

#[cfg(feature = "bedrock")]
pub(crate) mod aws;
#[cfg(any(feature = "bedrock", feature = "vertex"))]
pub(crate) mod cloud;
#[cfg(all(test, any(feature = "bedrock", feature = "vertex")))]
mod test_support;
#[cfg(feature = "vertex")]
pub(crate) mod vertex;
