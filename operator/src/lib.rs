//! The marketplace operator: controllers for MarketplaceService, CacheTier and
//! PreviewEnvironment, the scaling engine they share with the simulator, and the simulator.

pub mod cache;
pub mod controllers;
pub mod crd;
pub mod dev;
pub mod metrics;
pub mod output;
pub mod run;
pub mod scaling;
pub mod simulate;
