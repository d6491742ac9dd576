//! The marketplace operator: controllers for MarketplaceService, CacheTier and
//! PreviewEnvironment, the scaling engine they share with the simulator, and the simulator.

pub mod crd;
pub mod metrics;
pub mod scaling;
pub mod simulate;
