//! Rules over the Graph reader itself rather than the tenant it reads: whether the tenant still
//! lets the app in, and whether the app's credential is about to expire. Subject: each source of
//! Graph reports (`graph:<tenant>@<collector id>`: the central reader, or a collector's Graph
//! probe), judged on its newest report, so that the fix named is the one for that source.
//!
//! | id | fails when |
//! |---|---|
//! | `graph-access` | the identity platform refused the app for the tenant for good (`access_refused`: consent revoked, app or service principal deleted, credential refused); every other Graph rule is then undecided, never failed |
//! | `graph-app-credential-expiry` | the certificate or secret the app reads with expires within `warn_days` (or has expired); not applicable when its expiry is not known (a secret without `graph.client_secret_expires_at`) |
//!
//! A tenant the central reader reads with its own app (`own_app` in the report) is told about
//! that app: its fix is the app in the customer's tenant and `PUT /v1/tenants/{id}/graph/app`,
//! not a consent to the installation's app.
//!
//! The credential of the central reader is the installation's, shared by every tenant it reads:
//! findings are kept per tenant in this model (tickets, notifications and resolution all hang
//! off a tenant), so each connected tenant gets its own finding. That is also where the harm
//! lands — each tenant's cloud checks stop when the credential expires — and one rotation
//! resolves them all at their next read.

use chrono::Duration;
use serde_json::json;
use wbd_wire::{CENTRAL_GRAPH_READER, GraphReport, ProbeKind, ProbeOutput};

use super::{RuleDef, Verdict, observed};
use crate::facts::Observation;
use crate::{Message, Outcome, Params, Severity, TenantFacts};

pub(crate) const ACCESS: &str = "graph-access";
pub(crate) const CREDENTIAL_EXPIRY: &str = "graph-app-credential-expiry";

macro_rules! rule {
    ($id:expr, $check:ident, $fixtures:ident) => {
        RuleDef {
            id: $id,
            check: $check,
            #[cfg(test)]
            fixtures: tests::$fixtures,
        }
    };
}

pub(crate) const RULES: &[RuleDef] = &[
    rule!(ACCESS, check_access, access_fixtures),
    rule!(CREDENTIAL_EXPIRY, check_credential_expiry, credential_expiry_fixtures),
];

/// Judges the newest Graph report of each source.
fn per_source(
    facts: &TenantFacts,
    judge: impl Fn(&Observation<'_, GraphReport>, bool) -> Outcome,
) -> Vec<Verdict> {
    let observations = match observed(facts, ProbeKind::Graph, |output| match output {
        ProbeOutput::Graph(report) => Some(report),
        _ => None,
    }) {
        Ok(observations) => observations,
        Err(no_data) => return no_data,
    };
    observations
        .iter()
        .map(|o| Verdict {
            subject: o.subject(),
            outcome: judge(o, o.collector.name == CENTRAL_GRAPH_READER),
        })
        .collect()
}

/// Evidence naming where the report came from.
fn source(o: &Observation<'_, GraphReport>) -> serde_json::Value {
    json!({
        "collector_id": o.collector.id,
        "collector_name": o.collector.name,
        "tenant": o.report.tenant,
    })
}

fn check_access(facts: &TenantFacts, _params: &Params) -> Vec<Verdict> {
    per_source(facts, |o, central| {
        let Some(code) = &o.report.access_refused else { return Outcome::Pass };
        let key = match (central, o.report.own_app) {
            (true, true) => "graph-access.own-app-refused",
            (true, false) => "graph-access.central-refused",
            (false, _) => "graph-access.collector-refused",
        };
        Outcome::fail(
            Severity::High,
            Message::new(key)
                .arg("tenant", o.report.tenant.as_str())
                .arg("code", code.as_str())
                .arg("collector", o.collector.name.as_str()),
            json!({
                "source": source(o),
                "access_refused": code,
                "failure": o.report.failure,
            }),
        )
    })
}

fn check_credential_expiry(facts: &TenantFacts, params: &Params) -> Vec<Verdict> {
    let warn_days = params.int("warn_days");
    let now = facts.now;
    per_source(facts, |o, central| {
        // A client secret does not say when it expires: with no expiry configured there is
        // nothing to judge, which is not a fault of the tenant (nor undecided about it).
        let Some(expires_at) = o.report.app_credential_expires_at else {
            return Outcome::not_applicable(
                Message::new("graph-app-credential-expiry.unknown")
                    .arg("collector", o.collector.name.as_str()),
            );
        };
        if expires_at > now + Duration::days(warn_days) {
            return Outcome::Pass;
        }
        let days_left = (expires_at - now).num_days();
        let key = match (central, o.report.own_app, expires_at <= now) {
            (true, true, true) => "graph-app-credential-expiry.own-app-expired",
            (true, true, false) => "graph-app-credential-expiry.own-app-soon",
            (true, false, true) => "graph-app-credential-expiry.central-expired",
            (true, false, false) => "graph-app-credential-expiry.central-soon",
            (false, _, true) => "graph-app-credential-expiry.collector-expired",
            (false, _, false) => "graph-app-credential-expiry.collector-soon",
        };
        Outcome::fail(
            if expires_at <= now { Severity::High } else { Severity::Medium },
            Message::new(key)
                .arg("expires", expires_at.format("%Y-%m-%d %H:%M UTC").to_string())
                .arg("days", days_left.max(0))
                .arg("collector", o.collector.name.as_str()),
            json!({ "source": source(o), "expires_at": expires_at, "warn_days": warn_days }),
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rules::fixtures::*;
    use crate::rules::graph::tests::{healthy, with};
    use crate::{CollectorState, FactInput};

    /// A tenant read by the central reader only, with this report.
    fn central(output: ProbeOutput) -> TenantFacts {
        let reader = CollectorState { name: CENTRAL_GRAPH_READER.to_owned(), ..collector("central") };
        let fact = FactInput {
            collector_id: reader.id,
            subject: "graph:84b7c5e1".to_owned(),
            observed_at: now() - Duration::seconds(30),
            output,
        };
        tenant(vec![reader], vec![fact])
    }

    fn site(output: ProbeOutput) -> TenantFacts {
        site_with(vec![("graph:contoso.onmicrosoft.com", output)])
    }

    fn refused() -> ProbeOutput {
        with(|r| {
            *r = wbd_wire::GraphReport {
                tenant: r.tenant.clone(),
                graph_base_url: r.graph_base_url.clone(),
                service_plans: None,
                organization: None,
                allowed_to_use_sspr: None,
                test_user: None,
                admin_roles: None,
                admin_registrations: None,
                admin_domains: None,
                errors: vec![],
                failure: Some(
                    "the token endpoint refused the app (graph.client_id): 400 unauthorized_client: \
                     AADSTS700016: Application with identifier 'x' was not found in the directory 'y'."
                        .to_owned(),
                ),
                access_refused: Some("AADSTS700016".to_owned()),
                app_credential_expires_at: None,
                own_app: false,
            }
        })
    }

    fn expiring_in(days: i64) -> ProbeOutput {
        with(|r| r.app_credential_expires_at = Some(now() + Duration::days(days)))
    }

    /// The central reader's report, read with the tenant's own app.
    fn own_app(output: ProbeOutput) -> ProbeOutput {
        match output {
            ProbeOutput::Graph(mut report) => {
                report.own_app = true;
                ProbeOutput::Graph(report)
            }
            other => other,
        }
    }

    pub(crate) fn access_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new("consent revoked (central)", central(refused()), Expect::Fail(Severity::High)),
            Fixture::new(
                "own app refused (central)",
                central(own_app(refused())),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("app refused (collector)", site(refused()), Expect::Fail(Severity::High)),
            Fixture::new("reads fine", central(healthy()), Expect::Pass),
            Fixture::new(
                "a passing token fault",
                central(with(|r| r.failure = Some("token request failed: connection reset".to_owned()))),
                Expect::Pass,
            ),
            Fixture::new("no Graph report", site_with(vec![]), Expect::Unknown),
        ]
    }

    pub(crate) fn credential_expiry_fixtures() -> Vec<Fixture> {
        vec![
            Fixture::new("expires in 10 days", central(expiring_in(10)), Expect::Fail(Severity::Medium)),
            Fixture::new(
                "the tenant's own app expires in 10 days",
                central(own_app(expiring_in(10))),
                Expect::Fail(Severity::Medium),
            ),
            Fixture::new(
                "the tenant's own app expired",
                central(own_app(expiring_in(-2))),
                Expect::Fail(Severity::High),
            ),
            Fixture::new("expired yesterday", central(expiring_in(-1)), Expect::Fail(Severity::High)),
            Fixture::new(
                "collector's app expires soon",
                site(expiring_in(3)),
                Expect::Fail(Severity::Medium),
            ),
            Fixture::new("expires in 90 days", central(expiring_in(90)), Expect::Pass),
            Fixture::new(
                "expires in 40 days, warned at 60",
                central(expiring_in(40)),
                Expect::Fail(Severity::Medium),
            )
            .with_param("warn_days", json!(60)),
            Fixture::new("collector's app expired", site(expiring_in(-3)), Expect::Fail(Severity::High)),
            Fixture::new("expiry not known", central(healthy()), Expect::NotApplicable),
        ]
    }

    #[test]
    fn a_revoked_consent_is_one_finding_and_fails_no_other_graph_rule() {
        let facts = central(refused());
        let failing: Vec<&str> = crate::rules()
            .iter()
            .filter(|info| info.reads.contains(&ProbeKind::Graph))
            .filter(|info| run_rule(info.id, &facts).iter().any(|v| v.outcome.is_fail()))
            .map(|info| info.id)
            .collect();
        assert_eq!(failing, vec![ACCESS]);
        let verdicts = run_rule(ACCESS, &facts);
        assert_eq!(verdicts.len(), 1);
        let text = verdicts[0].outcome.message().unwrap().english();
        assert!(text.contains("reconnect") || text.contains("Reconnect"), "{text}");
    }

    #[test]
    fn the_fix_named_depends_on_who_read() {
        let central_text = run_rule(ACCESS, &central(refused()))[0].outcome.message().unwrap().english();
        let site_text = run_rule(ACCESS, &site(refused()))[0].outcome.message().unwrap().english();
        let own_text = run_rule(ACCESS, &central(own_app(refused())))[0].outcome.message().unwrap().english();
        assert!(own_text.contains("/graph/app") && !own_text.contains("/graph/consent"), "{own_text}");
        let expiry = run_rule(CREDENTIAL_EXPIRY, &central(own_app(expiring_in(3))))[0]
            .outcome
            .message()
            .unwrap()
            .english();
        assert!(expiry.contains("own Graph app") && !expiry.contains("Writeback Doctor's"), "{expiry}");
        assert!(central_text.contains("/graph/consent"), "{central_text}");
        assert!(site_text.contains("site-a") && site_text.contains("[probes.graph]"), "{site_text}");
    }
}
