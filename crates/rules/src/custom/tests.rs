//! Conformance of custom rules: what compiles, what is refused (with where), what each
//! expression gives on the sample tenant and on real facts. Upgrading `cel` must keep these.

use chrono::Duration;
use serde_json::json;
use wbd_wire::{
    AdFailure, AdQueryError, AdStep, CloudSyncAgent, ConnectStateSource, EndpointRole, EventEntry,
    EventLevel, EventLogSource, GraphCallError, ProbeOutput, ProbeStep, ProtectedAccounts, RegistryString,
    SampledCount, ScriptReport, ServiceState,
};

use super::schema::{ORIGIN_FIELDS, SAMPLE, fact_document, schema_paths};
use super::*;
use crate::rules::fixtures::*;
use crate::rules::{active_directory, connect_server, event_log, graph, idle_connection, proxy};
use crate::{FactInput, Lang, render};

/// The sample tenant: two sites. Site A is healthy and reports every probe; site B reports the
/// failure shapes (so every optional part of every report appears at least once).
fn build_sample() -> TenantFacts {
    let a = collector("Contoso HQ");
    let b = collector("Contoso Branch");
    let fact = |c: &crate::CollectorState, subject: &str, output: ProbeOutput| FactInput {
        collector_id: c.id,
        subject: subject.to_owned(),
        observed_at: now() - Duration::seconds(30),
        output,
    };
    let connect_b = connect_server::tests::with(|r| {
        r.source = ConnectStateSource::Export { path: "C:\\wbd\\connect-state.json".to_owned() };
        r.restrict_remote_sam = Some(RegistryString::Set("O:BAG:BAD:(A;;RC;;;BA)".to_owned()));
        r.cloud_sync_agent = Some(CloudSyncAgent {
            installed: true,
            version: Some("1.1.1107.0".to_owned()),
            service: Some(ServiceState {
                status: "Running".to_owned(),
                start_type: Some("Automatic".to_owned()),
            }),
        });
        r.errors = vec!["Get-ADSyncAutoUpgrade: the term is not recognised".to_owned()];
        r.staging_mode = Some(true);
    });
    let mut events_b =
        event_log::tests::log(&[("PasswordResetService", 31015, 120), ("PasswordResetService", 32002, 5)]);
    events_b.source = EventLogSource::ExportFile { path: "C:\\wbd\\events.xml".to_owned() };
    events_b.counts = events_b.last_seen.clone();
    events_b.entries = vec![EventEntry {
        provider: "PasswordResetService".to_owned(),
        event_id: 32002,
        level: EventLevel::Error,
        time_created: now() - Duration::minutes(5),
        record_id: Some(48_213),
        message: Some(
            "ServiceBusError: the token provider was unable to provide a security token".to_owned(),
        ),
    }];
    let ad_b = active_directory::tests::with(|r| {
        r.protected_accounts = Some(ProtectedAccounts {
            scope: vec!["OU=Staff,DC=corp,DC=example".to_owned()],
            accounts: SampledCount {
                count: 2,
                sample: vec!["adm-jan".to_owned(), "adm-ola".to_owned()],
                truncated: false,
            },
        });
        r.errors =
            vec![AdQueryError { query: "pdc_emulator".to_owned(), error: "insufficient access".to_owned() }];
        r.failure = Some(AdFailure { step: AdStep::Tls, error: "certificate not trusted".to_owned() });
    });
    let graph_b = graph::tests::with(|r| {
        r.errors = vec![GraphCallError {
            call: "subscribedSkus".to_owned(),
            status: Some(403),
            code: Some("Authorization_RequestDenied".to_owned()),
            message: "Insufficient privileges to complete the operation.".to_owned(),
        }];
        r.failure = Some("AADSTS7000215: invalid client secret".to_owned());
    });
    let script = ProbeOutput::Script(ScriptReport {
        name: "ntp-offset".to_owned(),
        program: "C:\\wbd\\scripts\\ntp-offset.ps1".to_owned(),
        exit_code: Some(0),
        timed_out: false,
        duration_ms: 840,
        value: Some(json!({"offset_ms": 212, "source": "time.windows.com"})),
        error: None,
        stderr_tail: Some(String::new()),
    });
    let mut proxy_b = proxy::tests::proxy_report(vec![]);
    if let (ProbeOutput::Proxy(report), ProbeOutput::Proxy(inspecting)) =
        (&mut proxy_b, proxy::tests::inspecting())
    {
        report.offered_auth_schemes = vec!["ntlm".to_owned()];
        report.integrated_auth_required = Some(true);
        report.targets = inspecting.targets;
        if let Some(target) = report.targets.get_mut(1) {
            target.failure = Some(wbd_wire::ProxyFailure {
                step: wbd_wire::ProxyStep::ProxyAuth,
                error: "407".to_owned(),
            });
        }
    }
    tenant(
        vec![a.clone(), b.clone()],
        vec![
            fact(
                &a,
                "ssprdedicatedsbprodscu.servicebus.windows.net:443",
                ProbeOutput::Endpoint(through_proxy(healthy_relay(), None)),
            ),
            fact(
                &a,
                "passwordreset.microsoftonline.com:443",
                ProbeOutput::Endpoint(healthy_password_reset()),
            ),
            fact(
                &a,
                "ssprdedicatedsbprodscu.servicebus.windows.net:443#idle",
                idle_connection::tests::healthy(),
            ),
            fact(&a, "proxy", proxy::tests::healthy()),
            fact(&a, "connect", connect_server::tests::healthy()),
            fact(&a, "Application", event_log::tests::healthy()),
            fact(&a, "corp.example", active_directory::tests::healthy()),
            fact(&a, "contoso.onmicrosoft.com", graph::tests::healthy()),
            fact(&a, "ntp-offset", script),
            fact(
                &b,
                "ssprdedicatedsbprodscu.servicebus.windows.net:443",
                ProbeOutput::Endpoint(failed_at(
                    RELAY_HOST,
                    EndpointRole::ServiceBusRelay,
                    ProbeStep::Tcp,
                    "timed out",
                )),
            ),
            fact(
                &b,
                "ssprdedicatedsbprodscu.servicebus.windows.net:443#idle",
                idle_connection::tests::cut_at_90(),
            ),
            fact(&b, "proxy", proxy_b),
            fact(&b, "connect", connect_b),
            fact(&b, "Application", ProbeOutput::EventLog(events_b)),
            fact(&b, "corp.example", ad_b),
            fact(&b, "contoso.onmicrosoft.com", graph_b),
        ],
    )
}

/// Keeps `packs/cel/sample-tenant.json` equal to [`build_sample`]; run with `WBD_BLESS=1` to
/// rewrite it after a wire change.
#[test]
fn the_sample_tenant_file_is_current() {
    let built = build_sample();
    let text = serde_json::to_string_pretty(&built).expect("serialises") + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packs/cel/sample-tenant.json");
    if std::env::var_os("WBD_BLESS").is_some() {
        std::fs::write(path, &text).expect("write the sample");
        return;
    }
    let stored = SAMPLE.as_ref().expect("the embedded sample parses into the wire types");
    assert_eq!(stored, &built, "packs/cel/sample-tenant.json is stale: run the tests with WBD_BLESS=1");
}

/// The committed sample read as data, as a reviewer would, not compared with its builder (the
/// test above proves only that it is current): it must be a tenant real collectors could report.
#[test]
fn the_sample_tenant_file_is_a_tenant_real_sites_could_report() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/packs/cel/sample-tenant.json");
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the sample")).expect("JSON");
    let sample = SAMPLE.as_ref().expect("the sample parses into the wire types");

    let ids: Vec<_> = sample.collectors.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 2, "two sites");
    assert_ne!(ids[0], ids[1], "each site has its own collector id");
    for c in &sample.collectors {
        assert!(c.active, "{}: an active collector", c.name);
        let (seen, silent) =
            (c.last_seen_at.expect("heard from"), c.silent_after.expect("a silence deadline"));
        assert!(seen <= sample.now && sample.now < silent, "{}: heard from, not silent", c.name);
    }
    let mut seen = std::collections::HashSet::new();
    for (fact, raw) in sample.facts.iter().zip(raw["facts"].as_array().expect("facts")) {
        assert!(ids.contains(&fact.collector_id), "{}: from a collector of the tenant", fact.subject);
        assert!(fact.observed_at <= sample.now, "{}: observed before the evaluation", fact.subject);
        let probe = raw["output"]["probe"].as_str().expect("each output names its probe");
        assert_eq!(probe, fact.output.kind().as_str());
        assert!(seen.insert((fact.collector_id, probe, &fact.subject)), "one latest fact per subject");
    }
    for (site, id) in ["Contoso HQ", "Contoso Branch"].iter().zip(&ids) {
        // Scripts are the MSP's own checks, configured per site: not every site has one.
        for kind in wbd_wire::ProbeKind::ALL.into_iter().filter(|k| *k != wbd_wire::ProbeKind::Script) {
            assert!(
                sample.facts.iter().any(|f| f.collector_id == *id && f.output.kind() == kind),
                "{site} reports no {} fact",
                kind.as_str()
            );
        }
    }

    assert!(sample.facts.iter().any(|f| f.output.kind() == wbd_wire::ProbeKind::Script), "a script fact");

    // The healthy site alone passes the built-in pack; the branch's failure shapes fail some of it.
    let failing = |facts: &TenantFacts| -> Vec<String> {
        crate::evaluate(facts)
            .into_iter()
            .filter(|e| matches!(e.outcome, crate::Outcome::Fail { .. }))
            .map(|e| e.rule_id.to_string())
            .collect()
    };
    let hq = TenantFacts {
        collectors: sample.collectors[..1].to_vec(),
        facts: sample.facts.iter().filter(|f| f.collector_id == ids[0]).cloned().collect(),
        ..sample.clone()
    };
    assert_eq!(failing(&hq), Vec::<String>::new(), "the healthy site fails nothing");
    assert!(!failing(sample).is_empty(), "the branch's failure shapes fail rules");
}

#[test]
fn the_schema_reaches_deep_into_every_probe() {
    let paths = schema_paths();
    for expected in [
        "now",
        "collectors[].last_seen_at",
        "facts.endpoint[].host",
        "facts.endpoint[].tls.chain_top_issuer",
        "facts.endpoint[].failure.step",
        "facts.idle_connection[].holds[].outcome",
        "facts.proxy[].targets[].tls_inspection",
        "facts.proxy[].targets[].failure.error",
        "facts.connect_server[].connect_version",
        "facts.connect_server[].connectors[].last_full_sync.result",
        "facts.connect_server[].tls12.schannel_client_enabled.value",
        "facts.connect_server[].restrict_remote_sam.value",
        "facts.connect_server[].cloud_sync_agent.service.status",
        "facts.event_log[].entries[].message",
        "facts.event_log[].last_seen[].newest",
        "facts.active_directory[].connector_account.inheritance_blocked.without_rights.sample",
        "facts.active_directory[].protected_accounts.accounts.count",
        "facts.active_directory[].failure.step",
        "facts.graph[].service_plans[].assigned_units",
        "facts.graph[].admin_roles[].members[].on_premises_sync_enabled",
        "facts.graph[].errors[].code",
        "facts.script[].value.*",
        "facts.script[].collector_name",
    ] {
        assert!(paths.iter().any(|p| p == expected), "schema lacks {expected}");
    }
}

#[test]
fn origin_fields_do_not_collide_with_report_fields() {
    let sample = SAMPLE.as_ref().expect("sample");
    for fact in &sample.facts {
        let Ok(serde_json::Value::Object(tagged)) = serde_json::to_value(&fact.output) else {
            panic!("tagged")
        };
        let Some(serde_json::Value::Object(data)) = tagged.get("data") else { panic!("data") };
        for origin in ORIGIN_FIELDS {
            assert!(
                !data.contains_key(origin),
                "{} reports a field named {origin}",
                fact.output.kind().as_str()
            );
        }
    }
}

#[test]
fn every_instant_in_the_document_is_a_timestamp_key() {
    fn walk(value: &serde_json::Value, key: Option<&str>) {
        match value {
            serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| walk(v, Some(k))),
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, key)),
            serde_json::Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => {
                let key = key.unwrap_or_default();
                assert!(schema::is_timestamp_key(key), "{key} holds an instant but is not a timestamp key");
            }
            _ => {}
        }
    }
    walk(&fact_document(SAMPLE.as_ref().expect("sample")), None);
}

fn rule(condition: &str) -> CustomRule {
    CustomRule {
        id: "my-rule".to_owned(),
        title: "My rule".to_owned(),
        severity: Severity::Medium,
        condition: condition.to_owned(),
        subject_expr: None,
    }
}

fn run_on_sample(condition: &str) -> Outcome {
    let compiled = compile(&rule(condition)).unwrap_or_else(|e| panic!("{condition}:\n{e}"));
    let mut evaluations = evaluate_custom(&[compiled], SAMPLE.as_ref().expect("sample"));
    evaluations.remove(0).outcome
}

/// Expressions and what they give on the sample tenant (true = a finding).
#[test]
fn conformance_on_the_sample_tenant() {
    for (condition, fails) in [
        ("true", true),
        ("false", false),
        ("size(collectors) == 2", true),
        ("collectors.all(c, c.active)", true),
        ("facts.endpoint.exists(e, e.failure != null && e.failure.step == 'tcp')", true),
        (
            "facts.endpoint.exists(e, has(e.tls.protocol) && e.tls != null && e.tls.protocol == 'TLSv1_0')",
            false,
        ),
        ("facts.endpoint.filter(e, e.failure == null).size() == 2", true),
        (
            "facts.idle_connection.exists(i, i.holds.exists(h, h.outcome == 'cut_on_use' && h.hold_secs <= 180))",
            true,
        ),
        ("facts.connect_server.exists(c, !version_at_least(c.connect_version, '2.5.79.0'))", false),
        ("facts.connect_server.exists(c, !version_at_least(c.connect_version, '2.6.0.0'))", true),
        ("facts.connect_server.exists(c, c.staging_mode == true)", true),
        (
            "facts.connect_server.exists(c, c.tls12.schannel_client_enabled.state == 'set' && c.tls12.schannel_client_enabled.value != 1)",
            false,
        ),
        (
            "facts.event_log.exists(l, l.last_seen.exists(e, e.event_id == 32002 && e.newest > now - duration('1h')))",
            true,
        ),
        ("facts.event_log.exists(l, l.entries.exists(e, e.message.contains('security token')))", true),
        (
            "facts.active_directory.exists(a, a.failure == null && a.password_policy.min_pwd_age_secs > 0)",
            false,
        ),
        (
            "facts.graph.exists(g, g.service_plans.exists(p, p.service_plan_name == 'AAD_PREMIUM' && p.assigned_units < 20))",
            true,
        ),
        (
            "facts.script.exists(s, s.name == 'ntp-offset' && has(s.value.offset_ms) && s.value.offset_ms > 100)",
            true,
        ),
        ("collectors.exists(c, c.last_seen_at < now - duration('30m'))", false),
        (
            "'ssprdedicatedsbprodscu.servicebus.windows.net:443' in facts.endpoint.map(e, e.probe_subject)",
            true,
        ),
        ("facts['graph'].size() > 0", true),
    ] {
        let outcome = run_on_sample(condition);
        assert_eq!(outcome.is_fail(), fails, "{condition}: {outcome:?}");
        assert!(!matches!(outcome, Outcome::Unknown { .. }), "{condition}: {outcome:?}");
    }
}

fn refused(condition: &str) -> RuleError {
    match compile(&rule(condition)) {
        Ok(_) => panic!("{condition} was accepted"),
        Err(error) => error,
    }
}

#[test]
fn a_syntax_error_points_at_its_position_with_a_caret() {
    let error = refused("facts.endpoint.exists(e, e.host == 'a'");
    let RuleError::Syntax { position: Some(position), .. } = &error else { panic!("{error:?}") };
    assert_eq!(position.line, 1);
    let text = error.to_string();
    assert!(text.starts_with("condition:1:"), "{text}");
    assert!(text.contains("\n | facts.endpoint.exists(e, e.host == 'a'\n | "), "{text}");
    assert!(text.ends_with('^'), "{text}");
}

#[test]
fn an_unknown_field_is_named_with_its_path_and_position() {
    let error = refused("facts.endpoint.exists(e,\n  e.hostt == 'x')");
    let RuleError::UnknownField { path, name, known, position: Some(position), .. } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(name, "hostt");
    assert_eq!(path, "e");
    assert!(known.contains(&"host".to_owned()));
    assert_eq!((position.line, position.column), (2, 4), "{error}");
    assert_eq!(position.source_line, "  e.hostt == 'x')");
    let text = error.to_string();
    assert!(text.starts_with("condition:2:4: unknown field 'hostt' of e (known: "), "{text}");
    assert!(text.ends_with(" |   e.hostt == 'x')\n | ...^"), "{text}");

    let nested = refused("facts.connect_server.exists(c, c.tls12.schannel_enabled == 1)");
    assert!(
        matches!(&nested, RuleError::UnknownField { path, name, .. } if path == "c.tls12" && name == "schannel_enabled"),
        "{nested:?}"
    );
    let in_has = refused("facts.graph.exists(g, has(g.licences))");
    assert!(matches!(&in_has, RuleError::UnknownField { name, .. } if name == "licences"), "{in_has:?}");
    let top = refused("facts.endpoints.size() > 0");
    assert!(
        matches!(&top, RuleError::UnknownField { path, name, .. } if path == "facts" && name == "endpoints"),
        "{top:?}"
    );
}

#[test]
fn unknown_variables_functions_and_list_fields_are_refused() {
    assert!(
        matches!(refused("fact.endpoint.size() > 0"), RuleError::UnknownVariable { name, .. } if name == "fact")
    );
    assert!(
        matches!(refused("semver_lt('1', '2')"), RuleError::UnknownFunction { name, .. } if name == "semver_lt")
    );
    let list = refused("facts.endpoint.host == 'x'");
    assert!(
        matches!(&list, RuleError::FieldOfList { path, name, .. } if path == "facts.endpoint" && name == "host"),
        "{list:?}"
    );
    assert!(list.to_string().contains("facts.endpoint.exists(x, x.host ...)"), "{list}");
}

#[test]
fn run_time_errors_and_wrong_types_are_refused_on_the_sample() {
    let dry = refused("facts.script.exists(s, s.value.no_such_output > 1)");
    assert!(
        matches!(&dry, RuleError::DryRun { field: RuleField::Condition, error } if error.contains("no_such_output")),
        "{dry:?}"
    );
    assert!(matches!(refused("size(collectors)"), RuleError::WrongType { expected: "bool", .. }));
    let bad_version =
        refused("facts.connect_server.exists(c, version_at_least(c.connect_version, 'latest'))");
    assert!(
        matches!(&bad_version, RuleError::DryRun { error, .. } if error.contains("'latest' is not a version")),
        "{bad_version:?}"
    );
    let subject = CustomRule { subject_expr: Some("size(collectors)".to_owned()), ..rule("true") };
    assert!(matches!(
        compile(&subject),
        Err(RuleError::WrongType { field: RuleField::SubjectExpr, expected: "string", .. })
    ));
}

#[test]
fn limits_and_ids_are_enforced() {
    let long = format!("{} == true", "true && ".repeat(MAX_EXPRESSION_LEN / 8));
    assert!(matches!(refused(&long), RuleError::TooLong { max: MAX_EXPRESSION_LEN, .. }));
    for id in ["", "Has-Caps", "-lead", "trail-", "endpoint-reachable", &"x".repeat(MAX_ID_LEN + 1)] {
        let error = compile(&CustomRule { id: id.to_owned(), ..rule("true") }).expect_err(id);
        assert_eq!(error.field(), RuleField::Id, "{id}");
    }
    assert!(matches!(
        compile(&CustomRule { title: " ".to_owned(), ..rule("true") }),
        Err(RuleError::InvalidTitle { .. })
    ));
    let many: Vec<CustomRule> =
        (0..=MAX_RULES_PER_TENANT).map(|i| CustomRule { id: format!("r{i}"), ..rule("true") }).collect();
    assert!(compile_all(&many).is_err());
    let twice = vec![rule("true"), rule("false")];
    assert!(matches!(compile_all(&twice), Err((1, RuleError::InvalidId { .. }))));
    assert_eq!(compile_all(&many[..3]).map(|c| c.len()).ok(), Some(3));
}

#[test]
fn evaluation_on_real_facts_fails_passes_and_reports_run_time_errors() {
    let stale = graph::tests::with(|r| {
        if let Some(org) = r.organization.as_mut() {
            org.on_premises_last_sync = Some(now() - Duration::hours(9));
        }
    });
    let facts = site_with(vec![("contoso.onmicrosoft.com", stale)]);
    let rules = [
        CustomRule {
            id: "sync-older-than-8h".to_owned(),
            subject_expr: Some("facts.graph[0].tenant".to_owned()),
            ..rule("facts.graph.exists(g, g.organization.on_premises_last_sync < now - duration('8h'))")
        },
        CustomRule { id: "no-connect".to_owned(), ..rule("facts.connect_server.exists(c, c.staging_mode)") },
        CustomRule { id: "first-connect".to_owned(), ..rule("facts.connect_server[0].staging_mode == true") },
    ];
    let compiled: Vec<CompiledRule> = rules.iter().map(|r| compile(r).expect("valid")).collect();
    let evaluations = evaluate_custom(&compiled, &facts);
    assert_eq!(evaluations.len(), 3);

    assert_eq!(evaluations[0].subject, "contoso.onmicrosoft.com");
    let Outcome::Fail { severity, summary, message, .. } = &evaluations[0].outcome else {
        panic!("{evaluations:?}")
    };
    assert_eq!(*severity, Severity::Medium);
    assert_eq!(summary, "Custom rule 'My rule' found a problem (contoso.onmicrosoft.com).");
    assert!(render(message, Lang::Pl).contains("Reguła własna 'My rule'"));

    assert_eq!(evaluations[1].outcome, Outcome::Pass);

    // No Connect report: indexing an empty list is an error, reported, never a silent false.
    let Outcome::Unknown { reason, .. } = &evaluations[2].outcome else { panic!("{evaluations:?}") };
    assert!(reason.starts_with("Not evaluated: custom rule 'My rule' failed while running:"), "{reason}");
}

#[test]
fn rules_beyond_the_limit_are_unknown() {
    let one = compile(&rule("false")).expect("valid");
    let compiled: Vec<CompiledRule> = (0..=MAX_RULES_PER_TENANT)
        .map(|_| CompiledRule {
            rule: one.rule.clone(),
            condition: compile(&rule("false")).expect("valid").condition,
            subject: None,
        })
        .collect();
    let evaluations = evaluate_custom(&compiled, &site_with(vec![]));
    assert!(evaluations[..MAX_RULES_PER_TENANT].iter().all(|e| e.outcome.is_pass()));
    let last = &evaluations[MAX_RULES_PER_TENANT].outcome;
    assert!(last.text(Lang::En).is_some_and(|t| t.contains("beyond the limit of 50")), "{last:?}");
}

#[test]
fn compiled_rules_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<CompiledRule>();
}

/// Keeps `packs/cel/schema-paths.txt` (the published field list, for people writing rules) equal
/// to the schema; run with `WBD_BLESS=1` to rewrite it.
#[test]
fn the_published_schema_file_is_current() {
    let mut text = String::from(
        "# Fields custom rules can read (generated from the sample tenant by the wbd-rules tests).\n\
         # `[]` marks a list (use exists/all/filter/map on it); `.*` marks free-form content.\n",
    );
    for path in schema_paths() {
        text.push_str(&path);
        text.push('\n');
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/packs/cel/schema-paths.txt");
    if std::env::var_os("WBD_BLESS").is_some() {
        std::fs::write(file, &text).expect("write the schema list");
        return;
    }
    let stored = std::fs::read_to_string(file).unwrap_or_default();
    assert_eq!(stored, text, "packs/cel/schema-paths.txt is stale: run the tests with WBD_BLESS=1");
}

/// Runs `work` on a thread with the stack an API or worker thread has (2 MiB).
fn on_small_stack<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::Builder::new().stack_size(2 * 1024 * 1024).spawn(work).expect("a thread");
    thread.join().expect("no panic")
}

#[test]
fn deep_nesting_is_refused_before_it_overflows_the_stack() {
    // Before the bounds, twelve nested brackets overflowed a 2 MiB stack in the parser (a debug
    // build), a hundred `[0]` in a row in checking and running; a stack overflow aborts the
    // whole process, API or worker.
    let nested = |open: &str, close: &str, n: usize| format!("{}true{}", open.repeat(n), close.repeat(n));
    let too_deep = [
        nested("(", ")", MAX_NESTING + 1),
        nested("[", "][0]", 200),
        nested("int(", ")", 100),
        nested("[1].exists(x, ", ")", 100),
        format!("[1]{} == 1", "[0]".repeat(1_300)),
        format!("has(facts{})", ".a".repeat(1_990)),
        format!("1{} ", " < 2".repeat(900)),
        format!("1{} == 0", "+1".repeat(1_990)),
    ];
    for condition in too_deep {
        let error = on_small_stack(move || compile(&rule(&condition)).expect_err("refused"));
        assert!(matches!(error, RuleError::TooDeep { .. }), "{error}");
        assert!(error.to_string().contains("nested too deeply"), "{error}");
    }
    let error = on_small_stack(|| {
        compile(&rule("((((((((((((((((((((((((((true))))))))))))))))))))))))))")).unwrap_err()
    });
    let position = error.position().expect("where");
    assert_eq!((position.line, position.column), (1, MAX_NESTING as u32 + 1), "{error}");

    // Up to the limits, a rule compiles and runs, on the same stack.
    let deepest = [
        nested("(", ")", MAX_NESTING),
        nested("[1].exists(x, ", ")", MAX_NESTING - 1),
        nested("[", "][0]", MAX_NESTING),
        format!("{} == 'true'", nested("string(", ")", MAX_NESTING)),
        format!("1{} == {}", "+1".repeat(MAX_DEPTH - 2), MAX_DEPTH - 1),
    ];
    for condition in deepest {
        let outcome = on_small_stack(move || {
            let compiled = compile(&rule(&condition)).unwrap_or_else(|e| panic!("{condition}: {e}"));
            let facts = SAMPLE.as_ref().expect("sample").clone();
            evaluate_custom(&[compiled], &facts).remove(0).outcome
        });
        assert!(!matches!(outcome, Outcome::Unknown { .. }), "{outcome:?}");
    }
}
