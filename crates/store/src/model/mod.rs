//! Domain types shared by the API, the worker and both storage backends: the ids and scopes
//! here, the rest by area (re-exported, so every type is `wbd_store::model::X` and
//! `wbd_store::X`).

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod findings;
mod graph;
mod ingest;
mod retention;
mod rule_config;
mod tenancy;

pub use findings::*;
pub use graph::*;
pub use ingest::*;
pub use retention::*;
pub use rule_config::*;
pub use tenancy::*;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUID v7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

id_type!(/// An organisation: an MSP, our customer.
    OrgId);
id_type!(/// A tenant: one of the MSP's customers (one Entra tenant).
    TenantId);
id_type!(/// A collector installed at a tenant's site.
    CollectorId);
id_type!(/// An API key of an organisation.
    ApiKeyId);
id_type!(/// A finding.
    FindingId);

/// Every query on an organisation's data is scoped by this. Obtained only from an authenticated
/// principal, so a query across organisations is hard to write by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrgScope {
    pub org_id: OrgId,
}

/// Every query on a tenant's data is scoped by this: the tenant and the organisation owning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantScope {
    pub org_id: OrgId,
    pub tenant_id: TenantId,
}

impl TenantScope {
    pub fn org(&self) -> OrgScope {
        OrgScope { org_id: self.org_id }
    }
}

/// A stored text that is not one of the known values of an enum.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);
