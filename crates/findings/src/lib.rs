//! The findings domain: from a tenant's facts to its findings.
//!
//! - [`evaluate`]: one evaluation of a tenant — read its snapshot, run the rule pack and its
//!   custom rules, plan the finding changes, apply them in one optimistic transaction
//!   ([`evaluate::evaluate_tenant`]). Idempotent and coalescing.
//! - [`lifecycle`]: what an evaluation changes — flap damping, stale findings of silent
//!   collectors, undecided rules, suppressions that ran out ([`lifecycle::plan_changes`]);
//!   fingerprints ([`fingerprint`]) and staleness ([`lifecycle::is_stale`]), which the API shows too.
//! - [`rule_config`]: a tenant's rule configuration — its organisation's and its own overrides
//!   of shipped rules and its custom (CEL) rules, merged and compiled ([`rule_config::load_tenant_rules`]).
//!
//! No I/O of its own beyond the [`wbd_store::Store`] it is handed: the queue consumers and
//! sweeps that call it live with the binaries that host them (`wbd_platform::background`).

pub mod evaluate;
pub mod facts;
mod kept;
pub mod lifecycle;
pub mod rule_config;

pub use evaluate::{ChangeCounts, EvaluationOutcome, evaluate_tenant};
pub use lifecycle::{DampingDefaults, fingerprint};
pub use rule_config::{TenantRules, load_tenant_rules, run_rules};
