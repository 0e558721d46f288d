//! `wbd-api bootstrap`: creates an organisation and its first org-admin API key.

use chrono::Utc;
use wbd_store::{ApiKey, OrgScope, Organization, Role, Store};

use crate::credentials::new_api_key;

pub struct Bootstrapped {
    pub organization: Organization,
    pub api_key: ApiKey,
    /// The secret key, shown once.
    pub secret: String,
}

pub async fn bootstrap(store: &dyn Store, org_name: &str) -> anyhow::Result<Bootstrapped> {
    let name = org_name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.chars().count() <= 200,
        "the organisation name must be 1 to 200 characters"
    );
    let now = Utc::now();
    let organization = store.create_organization(name, now).await?;
    let minted = new_api_key();
    let api_key = store
        .create_api_key(
            OrgScope { org_id: organization.id },
            "bootstrap admin",
            Role::OrgAdmin,
            &minted.prefix,
            &minted.hash,
            now,
        )
        .await?;
    Ok(Bootstrapped { organization, api_key, secret: minted.secret })
}
