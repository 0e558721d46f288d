//! Reading Microsoft Graph for password writeback, app-only: one library, two hosts.
//!
//! The collector's Graph probe reads its own tenant with an app registered there; the central
//! reader of the server reads every tenant that consented to the installation's multi-tenant app.
//! Both get the same [`wbd_wire::GraphReport`] from [`GraphReader::read`], so rules do not care
//! who read it.
//!
//! - [`Cloud`]: the identity platform and Graph host of the global, US Government and China
//!   clouds;
//! - [`ClientCredential`]: a client secret, or a certificate whose RSA key signs a client
//!   assertion (RFC 7523, PS256 or RS256, `x5t#S256`);
//! - [`GraphReader`]: tokens per tenant cached to their expiry, paging on the Graph host only,
//!   429/503 `Retry-After`, a 403 that names the missing application permission
//!   ([`permissions`]);
//! - [`admin_consent_url`]: where a customer's administrator consents to the app.
//!
//! No store, no server: the collector links this crate and must stay small.

mod cloud;
mod credential;
pub mod permissions;
mod reader;

pub use cloud::{Cloud, UnknownCloud};
pub use credential::{
    ASSERTION_LIFETIME_SECS, AssertionAlgorithm, AssertionClaims, CertificateCredential, ClientCredential,
    CredentialError, JWT_BEARER, Secret,
};
pub use reader::{
    ADMIN_ROLES, GraphApp, GraphReader, MAX_RETRY_AFTER, MAX_TOKEN_LIFETIME, TokenRefusal,
    aggregate_service_plans, app_wide, consent_gone_code, error_chain, failure_means_consent_gone,
    parse_retry_after, read_token_answer, token_refusal,
};
pub use reqwest::Url;

/// The admin-consent URL of the v2.0 endpoint:
/// `{authority}/{tenant}/v2.0/adminconsent?client_id=…&scope={graph}/.default&redirect_uri=…&state=…`.
/// `tenant`: the customer's Entra tenant id when known, else `organizations` (the administrator's
/// own tenant). Consent covers the application permissions configured on the app registration.
pub fn admin_consent_url(
    authority: &reqwest::Url,
    tenant: &str,
    client_id: &str,
    graph_base_url: &reqwest::Url,
    redirect_uri: &str,
    state: &str,
) -> reqwest::Url {
    let mut url = authority.clone();
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/{tenant}/v2.0/adminconsent"));
    let scope = format!("{}/.default", graph_base_url.as_str().trim_end_matches('/'));
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("scope", &scope)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", state);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consent_url_names_the_app_the_scope_and_the_way_back() {
        let url = admin_consent_url(
            &reqwest::Url::parse(Cloud::UsGovernment.authority()).unwrap(),
            "organizations",
            "app-1",
            &reqwest::Url::parse(Cloud::UsGovernment.graph_base_url()).unwrap(),
            "https://wbd.example.com/v1/graph/consent/callback",
            "s.t",
        );
        assert_eq!(
            url.as_str(),
            "https://login.microsoftonline.us/organizations/v2.0/adminconsent?client_id=app-1\
             &scope=https%3A%2F%2Fgraph.microsoft.us%2F.default\
             &redirect_uri=https%3A%2F%2Fwbd.example.com%2Fv1%2Fgraph%2Fconsent%2Fcallback&state=s.t"
        );
    }
}
