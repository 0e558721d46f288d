//! Wording and evidence shared by the rules that judge writeback endpoints.

use serde_json::{Map, Value, json};
use wbd_wire::EndpointRole;

use crate::facts::EndpointObservation;
use crate::message::{Message, keys};

/// The seed checklist's misspelling of the relay domain, which firewall rules copied from it
/// still carry.
pub(crate) const RELAY_DOMAIN_TYPO: &str = "servicebus.windows.networks";

/// The relay domain as it really is (public cloud).
pub(crate) const RELAY_DOMAIN: &str = "servicebus.windows.net";

/// What the firewall or proxy must let through for this endpoint: the relay's wildcard (the
/// relay namespace of a tenant can change), otherwise the host itself.
pub(crate) fn allow_list_entry(role: EndpointRole, host: &str) -> String {
    match role {
        EndpointRole::ServiceBusRelay => match host.find(".servicebus.") {
            // `*.servicebus.windows.net`, and likewise the sovereign clouds' relay domains.
            Some(dot) => format!("*{}", &host[dot..]),
            None => host.to_owned(),
        },
        EndpointRole::PasswordReset | EndpointRole::Other => host.to_owned(),
    }
}

/// The sentence that points out the seed checklist's typo, for relay texts (a nested message).
pub(crate) fn relay_typo_hint() -> serde_json::Value {
    Message::new(keys::RELAY_TYPO_HINT).arg("typo", RELAY_DOMAIN_TYPO).arg("domain", RELAY_DOMAIN).nested()
}

pub(crate) fn role_name(role: EndpointRole) -> &'static str {
    match role {
        EndpointRole::PasswordReset => "password_reset",
        EndpointRole::ServiceBusRelay => "service_bus_relay",
        EndpointRole::Other => "other",
    }
}

/// The evidence fields every endpoint finding carries: which site, which endpoint.
pub(crate) fn base_evidence(observation: &EndpointObservation<'_>) -> Map<String, Value> {
    let report = observation.report;
    let mut evidence = Map::new();
    evidence.insert("collector_id".into(), json!(observation.collector.id));
    evidence.insert("collector_name".into(), json!(observation.collector.name));
    evidence.insert("host".into(), json!(report.host));
    evidence.insert("port".into(), json!(report.port));
    evidence.insert("role".into(), json!(role_name(report.role)));
    evidence
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_allow_list_uses_the_wildcard_of_its_cloud() {
        assert_eq!(
            allow_list_entry(EndpointRole::ServiceBusRelay, "ssprdedicatedsbprodscu.servicebus.windows.net"),
            "*.servicebus.windows.net"
        );
        assert_eq!(
            allow_list_entry(EndpointRole::ServiceBusRelay, "ns.servicebus.usgovcloudapi.net"),
            "*.servicebus.usgovcloudapi.net"
        );
        assert_eq!(allow_list_entry(EndpointRole::ServiceBusRelay, "relay.example"), "relay.example");
        assert_eq!(
            allow_list_entry(EndpointRole::PasswordReset, "passwordreset.microsoftonline.com"),
            "passwordreset.microsoftonline.com"
        );
    }

    #[test]
    fn role_names_match_the_wire() {
        for role in [EndpointRole::PasswordReset, EndpointRole::ServiceBusRelay, EndpointRole::Other] {
            assert_eq!(serde_json::to_value(role).ok(), Some(json!(role_name(role))));
        }
    }
}
