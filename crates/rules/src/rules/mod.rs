//! The shipped rule pack: one module per rule, each with its fixtures and tests beside it.
//!
//! A rule module exposes `INFO: RuleInfo` and `check(&TenantFacts) -> Vec<Verdict>`. The
//! `pack!` list below is the only place that names them all, so the metadata ([`PACK_INFO`])
//! and the checks ([`PACK_CHECKS`]) cannot drift apart.

mod collector_silent;
mod endpoint;
mod endpoint_reachable;
mod endpoint_tls_trusted;
#[cfg(test)]
pub(crate) mod fixtures;

use crate::{Outcome, RuleInfo, TenantFacts};

/// A rule's outcome for one subject, before the rule's id and title are attached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub subject: String,
    pub outcome: Outcome,
}

pub(crate) type Check = fn(&TenantFacts) -> Vec<Verdict>;

macro_rules! pack {
    ($($rule:ident),+ $(,)?) => {
        /// Metadata of the pack, in evaluation order.
        pub(crate) static PACK_INFO: &[RuleInfo] = &[$($rule::INFO),+];
        /// The checks, in the same order as [`PACK_INFO`].
        pub(crate) static PACK_CHECKS: &[Check] = &[$($rule::check),+];
    };
}

pack![endpoint_reachable, endpoint_tls_trusted, collector_silent];
