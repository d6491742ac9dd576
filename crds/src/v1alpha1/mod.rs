//! Version `v1alpha1` of the `marketplace.dev` API.

mod cache_tier;
mod marketplace_service;
mod preview_environment;

pub use cache_tier::*;
pub use marketplace_service::*;
pub use preview_environment::*;
