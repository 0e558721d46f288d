//! The human-readable report of `wbd-collector probe --once`: one block per probe result (for
//! an endpoint, each step with its outcome and time, then what the TLS handshake showed), then
//! the verdicts of the rule pack over those results, as the server would give them.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use wbd_rules::{Evaluation, Lang, Outcome};
use wbd_wire::{
    AccessState, ActiveDirectoryReport, ConnectServerReport, EndpointReport, EventLogReport, GraphReport,
    IdleConnectionReport, IdleOutcome, ProbeKind, ProbeOutput, ProbeResult, ProbeStep, ProxyReport,
    ProxyStep, RegistryDword, RegistryString, ScriptReport, TlsReport,
};

/// Whether a result shows a problem the probe itself can tell (a failed step, an untrusted
/// chain, a cut connection, a failed read); the rules judge the rest.
pub fn has_problem(result: &ProbeResult) -> bool {
    match &result.output {
        // Judged on the path writeback takes: through the proxy when there is one.
        ProbeOutput::Endpoint(r) => match &r.via_proxy {
            Some(p) => p.failure.is_some() || p.tls.as_ref().is_some_and(|t| !t.chain_trusted),
            None => r.failure.is_some() || r.tls.as_ref().is_some_and(|t| !t.chain_trusted),
        },
        ProbeOutput::IdleConnection(r) => r.holds.iter().any(|h| h.outcome != IdleOutcome::Survived),
        ProbeOutput::Proxy(r) => {
            r.targets.iter().any(|t| t.failure.is_some() || t.tls_inspection == Some(true))
        }
        ProbeOutput::ActiveDirectory(r) => r.failure.is_some() || !r.errors.is_empty(),
        ProbeOutput::ConnectServer(r) => r.connect_version.is_none() && !r.errors.is_empty(),
        ProbeOutput::EventLog(r) => r.failure.is_some(),
        ProbeOutput::Graph(r) => r.failure.is_some() || !r.errors.is_empty(),
        ProbeOutput::Script(r) => r.error.is_some(),
    }
}

/// Renders the results as text blocks, `now` being the time expiry is measured from.
pub fn render(results: &[ProbeResult], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    for result in results {
        match &result.output {
            ProbeOutput::Endpoint(report) => render_endpoint(&mut out, result, report, now),
            ProbeOutput::IdleConnection(report) => render_idle(&mut out, result, report),
            ProbeOutput::Proxy(report) => render_proxy(&mut out, result, report),
            ProbeOutput::ActiveDirectory(report) => render_ad(&mut out, result, report),
            ProbeOutput::ConnectServer(report) => render_connect(&mut out, result, report),
            ProbeOutput::EventLog(report) => render_event_log(&mut out, result, report),
            ProbeOutput::Graph(report) => render_graph(&mut out, result, report),
            ProbeOutput::Script(report) => render_script(&mut out, result, report),
        }
        out.push('\n');
    }
    let endpoints: Vec<&ProbeResult> =
        results.iter().filter(|r| matches!(r.output, ProbeOutput::Endpoint(_))).collect();
    if !endpoints.is_empty() {
        let problems = endpoints.iter().filter(|r| has_problem(r)).count();
        if problems == 0 {
            let _ = writeln!(out, "All {} endpoints reachable with a trusted certificate.", endpoints.len());
        } else {
            let _ = writeln!(out, "{problems} of {} endpoints have a problem.", endpoints.len());
        }
    }
    out
}

/// The collector id of a one-off run (`probe --once` evaluates its results as a one-collector
/// tenant with this id); it is not shown in subjects.
const ON_SITE_SUFFIX: &str = "@00000000-0000-0000-0000-000000000000";

/// A verdict's subject as the person at the site reads it: without the collector id.
fn on_site_subject(subject: &str) -> &str {
    subject.strip_suffix(ON_SITE_SUFFIX).unwrap_or(subject)
}

/// A verdict's text for the person at the site: "no data from probe X" becomes "not checked
/// here", since there is no other collector to enable it on.
fn on_site_text(e: &Evaluation, lang: Lang) -> String {
    match e.outcome.message() {
        Some(m) if m.key == wbd_rules::keys::NO_DATA => {
            let probe = m.args.get("probe").and_then(|p| p.as_str()).unwrap_or("?");
            texts::not_run_here(lang, probe)
        }
        _ => e.outcome.text(lang).unwrap_or_default(),
    }
}

/// A rule's name in `lang`: the problem for a failure, else the check.
fn on_site_title(e: &Evaluation, lang: Lang) -> String {
    match wbd_rules::rule_info(&e.rule_id, lang) {
        Some(info) if e.outcome.is_fail() => info.problem.to_owned(),
        Some(info) => info.title.to_owned(),
        None => e.title.to_string(),
    }
}

/// Renders the rule pack's verdicts in `lang`: failures first (worst first), then what could
/// not be decided, then how many checks passed or do not apply here.
pub fn render_verdicts(evaluations: &[Evaluation], lang: Lang) -> String {
    let mut out = String::new();
    let mut fails: Vec<&Evaluation> = evaluations.iter().filter(|e| e.outcome.is_fail()).collect();
    fails.sort_by_key(|e| match &e.outcome {
        Outcome::Fail { severity, .. } => std::cmp::Reverse(*severity),
        _ => std::cmp::Reverse(wbd_rules::Severity::Info),
    });
    let passes = evaluations.iter().filter(|e| e.outcome.is_pass()).count();
    let not_applicable = evaluations.iter().filter(|e| e.outcome.is_not_applicable()).count();
    let unknown: Vec<&Evaluation> = evaluations.iter().filter(|e| e.outcome.is_unknown()).collect();
    let _ = writeln!(out, "{}", texts::verdicts_heading(lang));
    for e in &fails {
        if let Outcome::Fail { severity, .. } = &e.outcome {
            let _ = writeln!(
                out,
                "  {} {:<8} {}  [{}]  {}",
                texts::fail(lang),
                texts::severity(lang, *severity),
                on_site_title(e, lang),
                e.rule_id,
                on_site_subject(&e.subject)
            );
            for line in on_site_text(e, lang).lines() {
                let _ = writeln!(out, "           {line}");
            }
        }
    }
    if !unknown.is_empty() {
        let _ = writeln!(out, "  {}", texts::not_decided(lang, unknown.len()));
        for e in &unknown {
            let text = on_site_text(e, lang);
            let _ = writeln!(
                out,
                "    {}  [{}]: {}",
                on_site_title(e, lang),
                e.rule_id,
                text.lines().next().unwrap_or("")
            );
        }
    }
    let _ = writeln!(out, "  {}", texts::summary(lang, passes, fails.len(), unknown.len(), not_applicable));
    out
}

/// Probes that could not read what they check at all (no connection, refused credentials, an
/// unreadable export, a script that did not run): `(probe, subject, why)`. Their checks are then
/// undecided, which `probe --once` must not report as success.
pub fn could_not_read(results: &[ProbeResult]) -> Vec<(ProbeKind, String, String)> {
    results
        .iter()
        .filter_map(|r| {
            let why = match &r.output {
                ProbeOutput::ActiveDirectory(ad) => {
                    ad.failure.as_ref().map(|f| format!("{:?}: {}", f.step, f.error))
                }
                ProbeOutput::Graph(g) => g.failure.clone(),
                ProbeOutput::EventLog(e) => e.failure.clone(),
                ProbeOutput::ConnectServer(c) => {
                    let nothing = c.connect_version.is_none()
                        && c.connectors.is_empty()
                        && c.adsync_service.is_none()
                        && c.os_build.is_none();
                    (nothing && !c.errors.is_empty()).then(|| c.errors.join("; "))
                }
                ProbeOutput::Script(s) if s.value.is_none() => s.error.clone(),
                _ => None,
            }?;
            Some((r.output.kind(), on_site_subject(&r.subject).to_owned(), why))
        })
        .collect()
}

/// Renders [`could_not_read`] for the person at the site.
pub fn render_could_not_read(unread: &[(ProbeKind, String, String)], lang: Lang) -> String {
    let mut out = String::new();
    if unread.is_empty() {
        return out;
    }
    let _ = writeln!(out, "{}", texts::could_not_read(lang));
    for (kind, subject, why) in unread {
        let _ = writeln!(out, "  {kind} {subject}: {why}");
    }
    out
}

/// The on-site texts of `probe --once` around the verdicts, in each shipped language.
pub mod texts {
    use wbd_rules::{Lang, Severity};

    pub fn verdicts_heading(lang: Lang) -> &'static str {
        match lang {
            Lang::En => "Verdicts (the rules the server applies):",
            Lang::Pl => "Werdykty (reguły, które stosuje serwer):",
            Lang::Uk => "Вердикти (правила, які застосовує сервер):",
        }
    }

    pub fn fail(lang: Lang) -> &'static str {
        match lang {
            Lang::En => "FAIL",
            Lang::Pl => "PROBLEM",
            Lang::Uk => "ПРОБЛЕМА",
        }
    }

    pub fn severity(lang: Lang, severity: Severity) -> &'static str {
        match (lang, severity) {
            (Lang::En, Severity::Critical) => "CRITICAL",
            (Lang::En, Severity::High) => "HIGH",
            (Lang::En, Severity::Medium) => "MEDIUM",
            (Lang::En, Severity::Low) => "LOW",
            (Lang::En, Severity::Info) => "INFO",
            (Lang::Pl, Severity::Critical) => "KRYTYCZNY",
            (Lang::Pl, Severity::High) => "WYSOKI",
            (Lang::Pl, Severity::Medium) => "ŚREDNI",
            (Lang::Pl, Severity::Low) => "NISKI",
            (Lang::Pl, Severity::Info) => "INFO",
            (Lang::Uk, Severity::Critical) => "КРИТИЧНИЙ",
            (Lang::Uk, Severity::High) => "ВИСОКИЙ",
            (Lang::Uk, Severity::Medium) => "СЕРЕДНІЙ",
            (Lang::Uk, Severity::Low) => "НИЗЬКИЙ",
            (Lang::Uk, Severity::Info) => "ІНФО",
        }
    }

    pub fn not_decided(lang: Lang, count: usize) -> String {
        match lang {
            Lang::En => format!("not decided ({count}):"),
            Lang::Pl => format!("nierozstrzygnięte ({count}):"),
            Lang::Uk => format!("не вирішено ({count}):"),
        }
    }

    pub fn summary(
        lang: Lang,
        passed: usize,
        failed: usize,
        undecided: usize,
        not_applicable: usize,
    ) -> String {
        match lang {
            Lang::En => format!(
                "{passed} check(s) passed, {failed} failed, {undecided} not decided, {not_applicable} not applicable here."
            ),
            Lang::Pl => format!(
                "Sprawdzenia: zaliczone {passed}, niezaliczone {failed}, nierozstrzygnięte {undecided}, niedotyczące tej lokalizacji {not_applicable}."
            ),
            Lang::Uk => format!(
                "Перевірки: пройдено {passed}, не пройдено {failed}, не вирішено {undecided}, не стосуються цього місця {not_applicable}."
            ),
        }
    }

    /// What a rule whose probe did not run here says to the person at the site.
    pub fn not_run_here(lang: Lang, probe: &str) -> String {
        let section =
            if probe == "script" { "[[probes.script]]".to_owned() } else { format!("[probes.{probe}]") };
        match lang {
            Lang::En => format!(
                "Not checked here: the {probe} probe did not run on this machine. To check it, configure {section} in the collector's configuration file and run the probe again."
            ),
            Lang::Pl => format!(
                "Nie sprawdzono tutaj: sonda {probe} nie działała na tej maszynie. Aby to sprawdzić, skonfiguruj {section} w pliku konfiguracyjnym kolektora i uruchom sondę ponownie."
            ),
            Lang::Uk => format!(
                "Тут не перевірено: зонд {probe} не запускався на цій машині. Щоб це перевірити, налаштуйте {section} у файлі конфігурації колектора і запустіть зонд знову."
            ),
        }
    }

    pub fn holding_idle(lang: Lang, secs: u64) -> String {
        match lang {
            Lang::En => {
                format!("Holding idle connections for up to {secs} s (skip with --skip idle_connection)…")
            }
            Lang::Pl => {
                format!("Utrzymuję bezczynne połączenia do {secs} s (pomiń: --skip idle_connection)…")
            }
            Lang::Uk => {
                format!("Утримую неактивні з’єднання до {secs} с (пропустити: --skip idle_connection)…")
            }
        }
    }

    pub fn could_not_read(lang: Lang) -> &'static str {
        match lang {
            Lang::En => "Could not check: these probes could not read what they check here.",
            Lang::Pl => "Nie udało się sprawdzić: te sondy nie mogły tutaj odczytać tego, co sprawdzają.",
            Lang::Uk => "Не вдалося перевірити: ці зонди не змогли тут прочитати те, що перевіряють.",
        }
    }
}

fn known<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".to_owned(), |v| v.to_string())
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

fn access(v: Option<AccessState>) -> &'static str {
    match v {
        Some(AccessState::Allowed) => "allowed",
        Some(AccessState::Denied) => "DENIED",
        Some(AccessState::NotGranted) => "NOT GRANTED",
        None => "unknown",
    }
}

fn dword(v: Option<RegistryDword>) -> String {
    match v {
        Some(RegistryDword::Set(n)) => n.to_string(),
        Some(RegistryDword::Absent) => "absent".to_owned(),
        None => "unknown".to_owned(),
    }
}

fn role_name(role: wbd_wire::EndpointRole) -> String {
    serde_json::to_value(role).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn render_idle(out: &mut String, result: &ProbeResult, r: &IdleConnectionReport) {
    let via = r.via_proxy.as_deref().map(|p| format!(" via proxy {p}")).unwrap_or_default();
    let _ = writeln!(
        out,
        "{}  idle connection ({}){via}  [{} ms]",
        result.subject,
        role_name(r.role),
        result.duration_ms
    );
    for h in &r.holds {
        let outcome = match h.outcome {
            IdleOutcome::Survived => "survived".to_owned(),
            IdleOutcome::CutWhileIdle => {
                format!("CUT while idle after {:.1} s", h.cut_after_ms.unwrap_or(0) as f64 / 1000.0)
            }
            IdleOutcome::CutOnUse => "CUT (found dead when used)".to_owned(),
            IdleOutcome::ConnectFailed => "could not connect".to_owned(),
        };
        let error = h.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        let _ = writeln!(out, "  hold {:>5} s  {outcome}{error}", h.hold_secs);
    }
}

fn render_proxy(out: &mut String, result: &ProbeResult, r: &ProxyReport) {
    let Some(proxy) = &r.proxy else {
        let _ = writeln!(out, "{}  no proxy configured or found: direct connections", result.subject);
        return;
    };
    let _ = writeln!(
        out,
        "{}  {proxy} (from {:?}, auth {:?})  [{} ms]",
        result.subject, r.source, r.auth_used, result.duration_ms
    );
    if !r.offered_auth_schemes.is_empty() {
        let _ = writeln!(out, "  asks for  {}", r.offered_auth_schemes.join(", "));
    }
    if r.integrated_auth_required == Some(true) {
        let _ = writeln!(
            out,
            "  NTLM/Negotiate only: the collector does not do Windows integrated proxy authentication"
        );
    }
    for t in &r.targets {
        let state = match (&t.failure, t.tls_inspection) {
            (Some(f), _) => format!("FAILED at {:?}: {}", f.step, f.error),
            (None, Some(true)) => format!(
                "TLS INSPECTED: certificate issued by {}",
                t.tls.as_ref().and_then(|tls| tls.chain_top_issuer.clone()).unwrap_or_default()
            ),
            (None, _) => "tunnel ok, real certificate".to_owned(),
        };
        let _ = writeln!(out, "  {}:{}  {state}", t.host, t.port);
    }
}

fn render_ad(out: &mut String, result: &ProbeResult, r: &ActiveDirectoryReport) {
    let _ = writeln!(out, "{}  Active Directory  [{} ms]", result.subject, result.duration_ms);
    if let Some(f) = &r.failure {
        let _ = writeln!(out, "  FAILED at {:?}: {}", f.step, f.error);
        return;
    }
    let _ = writeln!(
        out,
        "  domain        {} ({})",
        known(r.domain_dns_name.as_ref()),
        known(r.domain_dn.as_ref())
    );
    let _ = writeln!(out, "  PDC emulator  {}", known(r.pdc_emulator.as_ref()));
    let _ = writeln!(
        out,
        "  levels        domain {}, forest {}",
        known(r.domain_functional_level),
        known(r.forest_functional_level)
    );
    let _ = writeln!(out, "  policy hints  {}", yes_no(r.policy_hints_control));
    for dc in &r.domain_controllers {
        let _ = writeln!(
            out,
            "  DC            {}  {} {}{}{}",
            known(dc.dns_host_name.as_ref()),
            known(dc.operating_system.as_ref()),
            dc.operating_system_version.as_deref().unwrap_or(""),
            if dc.read_only == Some(true) { "  READ-ONLY" } else { "" },
            if dc.is_pdc_emulator { "  (PDC)" } else { "" }
        );
    }
    if let Some(p) = &r.password_policy {
        let _ = writeln!(out, "  minPwdAge     {} s", known(p.min_pwd_age_secs));
    }
    for pso in r.fine_grained_policies.iter().flatten() {
        let age = pso.min_pwd_age_secs.map_or_else(|| "not readable".to_owned(), |s| format!("{s} s"));
        let users = pso.synced_users.map_or_else(|| "unknown".to_owned(), |n| n.to_string());
        let _ = writeln!(out, "  PSO           {}: minimum age {age}, synced users {users}", pso.name);
    }
    match &r.sync_scope {
        Some(scope) => {
            let _ = writeln!(out, "  synced        {}", scope.included.join("; "));
            if !scope.excluded.is_empty() {
                let _ = writeln!(out, "  not synced    {}", scope.excluded.join("; "));
            }
        }
        None => {
            let _ = writeln!(out, "  synced        unknown (set probes.active_directory.synced_ous)");
        }
    }
    if let Some(c) = &r.connector_account {
        let _ = writeln!(out, "  connector     {} → {}", c.configured, known(c.dn.as_ref()));
        if let Some(state) = &c.state {
            let flags: Vec<&str> = [
                (state.not_found, "NOT FOUND"),
                (state.disabled, "DISABLED"),
                (state.account_expired, "EXPIRED"),
                (state.locked_out, "LOCKED OUT"),
                (state.password_expired, "PASSWORD EXPIRED"),
                (state.must_change_password, "MUST CHANGE PASSWORD"),
                (state.logon_restricted, "LOGON RESTRICTED"),
                (state.wrong_password, "WRONG BIND PASSWORD"),
            ]
            .iter()
            .filter(|(v, _)| *v == Some(true))
            .map(|(_, name)| *name)
            .collect();
            let code = state
                .bind_refusal_code
                .as_deref()
                .map(|c| format!(" (bind refused: data {c})"))
                .unwrap_or_default();
            let shown = if flags.is_empty() { "can sign in".to_owned() } else { flags.join(", ") };
            let _ = writeln!(out, "    state       {shown}{code}");
        }
        for ou in &c.containers {
            if let Some(e) = &ou.error {
                let _ = writeln!(out, "    {}: unknown ({e})", ou.dn);
                continue;
            }
            let _ = writeln!(
                out,
                "    {}: reset {}, change {}, write lockoutTime {}, write pwdLastSet {}, inheritance blocked {}",
                ou.dn,
                access(ou.reset_password),
                access(ou.change_password),
                access(ou.write_lockout_time),
                access(ou.write_pwd_last_set),
                yes_no(ou.inheritance_blocked)
            );
        }
        if let Some(blocked) = &c.inheritance_blocked {
            let _ = writeln!(
                out,
                "    inheritance blocked on {} object(s) below; without the rights there: {}{}",
                blocked.blocked,
                blocked.without_rights.count,
                if blocked.without_rights.sample.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", blocked.without_rights.sample.join("; "))
                }
            );
        }
    }
    if let Some(p) = &r.protected_accounts {
        let _ = writeln!(
            out,
            "  adminCount=1  {} account(s): {}",
            p.accounts.count,
            p.accounts.sample.join(", ")
        );
    }
    for e in &r.errors {
        let _ = writeln!(out, "  could not read {}: {}", e.query, e.error);
    }
}

fn render_connect(out: &mut String, result: &ProbeResult, r: &ConnectServerReport) {
    let _ = writeln!(out, "{}  Entra Connect server  [{} ms]", result.subject, result.duration_ms);
    let _ = writeln!(out, "  version       {}", known(r.connect_version.as_ref()));
    let _ = writeln!(out, "  writeback     {}", yes_no(r.writeback_enabled));
    let _ = writeln!(out, "  staging mode  {}", yes_no(r.staging_mode));
    if let Some(s) = &r.adsync_service {
        let _ = writeln!(out, "  ADSync        {}", s.status);
    }
    if let Some(s) = &r.scheduler {
        let _ = writeln!(
            out,
            "  scheduler     cycle enabled {}, suspended {}",
            yes_no(s.sync_cycle_enabled),
            yes_no(s.scheduler_suspended)
        );
    }
    let _ = writeln!(out, "  .NET release  {}", dword(r.dotnet_release));
    let sam = match &r.restrict_remote_sam {
        Some(RegistryString::Set(v)) => v.clone(),
        Some(RegistryString::Absent) => "absent".to_owned(),
        None => "unknown".to_owned(),
    };
    let _ = writeln!(out, "  RestrictRemoteSam  {sam}");
    for c in &r.connectors {
        let run = |label: &str, run: &Option<wbd_wire::RunSummary>| match run {
            Some(run) => format!(
                "{label} {} {}",
                run.result,
                run.ended_at.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
            ),
            None => format!("{label} none seen"),
        };
        let _ = writeln!(
            out,
            "  connector     {} ({:?}){}  {}; {}",
            c.name,
            c.kind,
            if c.preferred_dcs.is_empty() {
                String::new()
            } else {
                format!(" preferred DCs {}", c.preferred_dcs.join(", "))
            },
            run("full import", &c.last_full_import),
            run("full sync", &c.last_full_sync)
        );
    }
    for e in &r.errors {
        let _ = writeln!(out, "  could not read: {e}");
    }
}

fn render_event_log(out: &mut String, result: &ProbeResult, r: &EventLogReport) {
    let since = r.since.map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M:%S UTC"))).unwrap_or_default();
    let _ = writeln!(out, "{}  event log{since}  [{} ms]", result.subject, result.duration_ms);
    if let Some(f) = &r.failure {
        let _ = writeln!(out, "  FAILED: {f}");
        return;
    }
    if r.counts.is_empty() {
        let _ = writeln!(out, "  no matching events");
    }
    for c in &r.counts {
        let _ = writeln!(
            out,
            "  {} {:>6}  ×{:<4} newest {}",
            c.provider,
            c.event_id,
            c.count,
            c.newest.format("%Y-%m-%d %H:%M:%S")
        );
    }
}

fn render_graph(out: &mut String, result: &ProbeResult, r: &GraphReport) {
    let _ = writeln!(
        out,
        "{}  Microsoft Graph ({})  [{} ms]",
        result.subject, r.graph_base_url, result.duration_ms
    );
    if let Some(f) = &r.failure {
        let _ = writeln!(out, "  FAILED: {f}");
        return;
    }
    if let Some(org) = &r.organization {
        let _ = writeln!(
            out,
            "  sync enabled  {}, last sync {}",
            yes_no(org.on_premises_sync_enabled),
            known(org.on_premises_last_sync)
        );
    }
    for p in r.service_plans.iter().flatten().filter(|p| p.service_plan_name.starts_with("AAD_")) {
        let _ = writeln!(
            out,
            "  licence       {} ({}): {} of {} assigned",
            p.service_plan_name,
            p.skus.join(", "),
            p.assigned_units,
            p.enabled_units
        );
    }
    let _ = writeln!(out, "  SSPR for admins  {}", yes_no(r.allowed_to_use_sspr));
    if let Some(u) = &r.test_user {
        let _ = writeln!(
            out,
            "  test user     {}: found {}, SSPR enabled {}, registered {}, capable {}",
            u.user_principal_name,
            u.found,
            yes_no(u.is_sspr_enabled),
            yes_no(u.is_sspr_registered),
            yes_no(u.is_sspr_capable)
        );
    }
    for role in r.admin_roles.iter().flatten().filter(|r| !r.members.is_empty()) {
        let _ = writeln!(
            out,
            "  {}  {} synced, {} cloud-only",
            role.role_name,
            role.synced_count(),
            role.cloud_only_count()
        );
    }
    for e in &r.errors {
        let _ = writeln!(out, "  could not read {}: {} {}", e.call, known(e.status), e.message);
    }
}

fn render_script(out: &mut String, result: &ProbeResult, r: &ScriptReport) {
    let state = match (&r.error, &r.value) {
        (Some(e), _) => format!("FAILED: {e}"),
        (None, Some(v)) => format!("ok: {}", v.to_string().chars().take(200).collect::<String>()),
        (None, None) => "no value".to_owned(),
    };
    let _ = writeln!(out, "{}  exit {}  [{} ms]  {state}", result.subject, known(r.exit_code), r.duration_ms);
}

fn render_endpoint(out: &mut String, result: &ProbeResult, r: &EndpointReport, now: DateTime<Utc>) {
    let direct_verdict = match (&r.failure, &r.tls) {
        (Some(f), _) => format!("FAILED at {}", f.step.as_str()),
        (None, Some(tls)) if !tls.chain_trusted => "REACHABLE, CERTIFICATE NOT TRUSTED".to_owned(),
        _ => "OK".to_owned(),
    };
    // With a proxy, the path writeback takes is the proxied one: lead with it.
    let verdict = match &r.via_proxy {
        None => direct_verdict,
        Some(p) => {
            let proxied = match (&p.failure, &p.tls) {
                (Some(f), _) => format!("FAILED through the proxy at {}", proxy_step_name(f.step)),
                (None, Some(tls)) if !tls.chain_trusted => {
                    "REACHABLE THROUGH THE PROXY, CERTIFICATE NOT TRUSTED".to_owned()
                }
                _ => "OK through the proxy".to_owned(),
            };
            format!("{proxied}  (direct: {direct_verdict})")
        }
    };
    let role =
        serde_json::to_value(r.role).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let _ = writeln!(out, "{}  ({role})  {verdict}  [{} ms]", result.subject, result.duration_ms);

    let failed_step = r.failure.as_ref().map(|f| f.step);
    let step_line = |out: &mut String, step: ProbeStep, ms: Option<u64>, ok_text: String| {
        let name = step.as_str();
        if let Some(ms) = ms {
            let _ = writeln!(out, "  {name:<4} ok      {ms:>5} ms  {ok_text}");
        } else if failed_step == Some(step) {
            let error = r.failure.as_ref().map(|f| f.error.as_str()).unwrap_or_default();
            let _ = writeln!(out, "  {name:<4} FAILED            {error}");
        } else {
            let _ = writeln!(out, "  {name:<4} not run");
        }
    };

    if r.via_proxy.is_some() {
        let _ = writeln!(out, "  direct, without the proxy:");
    }
    let resolved = r.resolved.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    step_line(out, ProbeStep::Dns, r.dns_ms, format!("→ {resolved}"));
    let connected = r.connected_to.map(|ip| format!("→ {ip}")).unwrap_or_default();
    step_line(out, ProbeStep::Tcp, r.tcp_connect_ms, connected);
    let tls_text = r.tls.as_ref().map(|t| format!("{} {}", t.protocol, t.cipher_suite)).unwrap_or_default();
    step_line(out, ProbeStep::Tls, r.tls.as_ref().map(|t| t.handshake_ms), tls_text);

    let judged = match &r.via_proxy {
        Some(p) => {
            let source = serde_json::to_value(p.source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(out, "  through the proxy {} ({source}):", p.proxy);
            let failed = p.failure.as_ref();
            let line = |out: &mut String, step: ProxyStep, ok_text: &str| {
                let name = proxy_step_name(step);
                match failed {
                    Some(f) if f.step == step => {
                        let _ = writeln!(out, "  {name:<7} FAILED  {}", f.error);
                    }
                    Some(f) if proxy_step_order(f.step) < proxy_step_order(step) => {
                        let _ = writeln!(out, "  {name:<7} not run");
                    }
                    _ => {
                        let _ = writeln!(out, "  {name:<7} ok      {ok_text}");
                    }
                }
            };
            let status = p.connect_status.map(|s| format!("HTTP {s}")).unwrap_or_default();
            line(out, ProxyStep::ProxyConnect, "");
            line(out, ProxyStep::ProxyAuth, "");
            line(out, ProxyStep::Tunnel, &status);
            let tls_text =
                p.tls.as_ref().map(|t| format!("{} {}", t.protocol, t.cipher_suite)).unwrap_or_default();
            line(out, ProxyStep::Tls, &tls_text);
            p.tls.as_ref()
        }
        None => r.tls.as_ref(),
    };
    if let Some(tls) = judged {
        render_chain(out, tls, now);
    }
}

fn proxy_step_order(step: ProxyStep) -> u8 {
    match step {
        ProxyStep::ProxyConnect => 0,
        ProxyStep::ProxyAuth => 1,
        ProxyStep::Tunnel => 2,
        ProxyStep::Tls => 3,
    }
}

fn proxy_step_name(step: ProxyStep) -> &'static str {
    match step {
        ProxyStep::ProxyConnect => "proxy",
        ProxyStep::ProxyAuth => "auth",
        ProxyStep::Tunnel => "tunnel",
        ProxyStep::Tls => "tls",
    }
}

fn render_chain(out: &mut String, tls: &TlsReport, now: DateTime<Utc>) {
    if tls.chain_trusted {
        let _ = writeln!(out, "  chain    trusted (public roots or a configured CA)");
    } else {
        let reason = tls.trust_error.as_deref().unwrap_or("no reason given");
        let _ = writeln!(out, "  chain    NOT TRUSTED: {reason}");
    }
    if let Some(subject) = &tls.subject {
        let _ = writeln!(out, "  leaf     {subject}");
    }
    if let Some(issuer) = &tls.issuer {
        let _ = writeln!(out, "  issuer   {issuer}");
    }
    if let Some(top) = &tls.chain_top_issuer {
        let _ = writeln!(out, "  top      {top}  ({} certificate(s) presented)", tls.chain_len);
    }
    if let Some(not_after) = tls.not_after {
        let days = (not_after - now).num_days();
        let when = if not_after < now {
            format!("EXPIRED {} day(s) ago", -days)
        } else {
            format!("expires in {days} day(s)")
        };
        let _ = writeln!(out, "  expiry   {}  ({when})", not_after.format("%Y-%m-%d %H:%M UTC"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wbd_wire::{EndpointRole, StepFailure, TlsReport};

    fn result(report: EndpointReport) -> ProbeResult {
        ProbeResult {
            subject: format!("{}:{}", report.host, report.port),
            observed_at: Utc::now(),
            duration_ms: 42,
            output: ProbeOutput::Endpoint(report),
        }
    }

    #[test]
    fn failed_tcp_step_is_shown_with_later_steps_not_run() {
        let r = result(EndpointReport {
            host: "relay.example".into(),
            port: 443,
            role: EndpointRole::ServiceBusRelay,
            resolved: vec!["192.0.2.1".parse().unwrap()],
            dns_ms: Some(3),
            connected_to: None,
            tcp_connect_ms: None,
            tls: None,
            failure: Some(StepFailure { step: ProbeStep::Tcp, error: "refused".into() }),
            via_proxy: None,
        });
        let text = render(&[r], Utc::now());
        assert!(text.contains("relay.example:443  (service_bus_relay)  FAILED at tcp"), "{text}");
        assert!(text.contains("dns  ok"), "{text}");
        assert!(text.contains("tcp  FAILED            refused"), "{text}");
        assert!(text.contains("tls  not run"), "{text}");
        assert!(text.contains("1 of 1 endpoints have a problem"), "{text}");
    }

    #[test]
    fn untrusted_chain_shows_issuer_and_expiry() {
        let now = Utc::now();
        let r = result(EndpointReport {
            host: "passwordreset.example".into(),
            port: 443,
            role: EndpointRole::PasswordReset,
            resolved: vec!["192.0.2.2".parse().unwrap()],
            dns_ms: Some(1),
            connected_to: Some("192.0.2.2".parse().unwrap()),
            tcp_connect_ms: Some(2),
            tls: Some(TlsReport {
                handshake_ms: 5,
                protocol: "TLSv1.3".into(),
                cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
                chain_trusted: false,
                trust_error: Some("unknown issuer".into()),
                trust_failure: Some(wbd_wire::TrustFailure::UntrustedIssuer),
                subject: Some("CN=passwordreset.example".into()),
                issuer: Some("CN=Contoso Inspection CA".into()),
                not_before: Some(now - chrono::Duration::days(10)),
                not_after: Some(now + chrono::Duration::days(30)),
                chain_top_issuer: Some("CN=Contoso Inspection CA".into()),
                chain_len: 1,
            }),
            failure: None,
            via_proxy: None,
        });
        assert!(has_problem(&r));
        let text = render(&[r], now);
        assert!(text.contains("CERTIFICATE NOT TRUSTED"), "{text}");
        assert!(text.contains("NOT TRUSTED: unknown issuer"), "{text}");
        assert!(text.contains("issuer   CN=Contoso Inspection CA"), "{text}");
        assert!(text.contains("expires in 29 day(s)") || text.contains("expires in 30 day(s)"), "{text}");
    }

    fn other(subject: &str, output: ProbeOutput) -> ProbeResult {
        ProbeResult { subject: subject.into(), observed_at: Utc::now(), duration_ms: 7, output }
    }

    #[test]
    fn every_probe_kind_has_a_block_that_says_what_matters() {
        let results = vec![
            other(
                "relay:443",
                ProbeOutput::IdleConnection(IdleConnectionReport {
                    host: "relay".into(),
                    port: 443,
                    role: EndpointRole::ServiceBusRelay,
                    via_proxy: Some("proxy:3128".into()),
                    holds: vec![
                        wbd_wire::IdleHold {
                            hold_secs: 60,
                            outcome: IdleOutcome::Survived,
                            cut_after_ms: None,
                            error: None,
                        },
                        wbd_wire::IdleHold {
                            hold_secs: 180,
                            outcome: IdleOutcome::CutWhileIdle,
                            cut_after_ms: Some(120_400),
                            error: Some("reset".into()),
                        },
                    ],
                }),
            ),
            other(
                "script:dc-ports",
                ProbeOutput::Script(ScriptReport {
                    name: "dc-ports".into(),
                    program: "/x".into(),
                    exit_code: Some(1),
                    timed_out: false,
                    duration_ms: 3,
                    value: None,
                    error: Some("the script exited with code 1".into()),
                    stderr_tail: None,
                }),
            ),
            other(
                "graph:contoso",
                ProbeOutput::Graph(GraphReport {
                    tenant: "contoso".into(),
                    graph_base_url: "https://graph.microsoft.com".into(),
                    service_plans: None,
                    organization: None,
                    allowed_to_use_sspr: Some(false),
                    test_user: None,
                    admin_roles: None,
                    errors: vec![],
                    failure: Some("the token endpoint refused the app".into()),
                    access_refused: None,
                    app_credential_expires_at: None,
                    own_app: false,
                    admin_registrations: None,
                    admin_domains: None,
                }),
            ),
        ];
        let text = render(&results, Utc::now());
        assert!(text.contains("hold    60 s  survived"), "{text}");
        assert!(text.contains("hold   180 s  CUT while idle after 120.4 s: reset"), "{text}");
        assert!(text.contains("via proxy proxy:3128"), "{text}");
        assert!(text.contains("FAILED: the script exited with code 1"), "{text}");
        assert!(text.contains("FAILED: the token endpoint refused the app"), "{text}");
        assert!(results.iter().all(has_problem));
        assert!(!text.contains("endpoints"), "no endpoint summary without endpoint results: {text}");
    }

    #[test]
    fn verdicts_list_failures_first_with_their_text() {
        let now = Utc::now();
        let id = uuid::Uuid::nil();
        let mut report = result(EndpointReport {
            host: "passwordreset.example".into(),
            port: 443,
            role: EndpointRole::PasswordReset,
            resolved: vec![],
            dns_ms: None,
            connected_to: None,
            tcp_connect_ms: None,
            tls: None,
            failure: Some(StepFailure { step: ProbeStep::Dns, error: "no such host".into() }),
            via_proxy: None,
        });
        report.observed_at = now;
        let facts = wbd_rules::TenantFacts {
            now,
            collectors: vec![wbd_rules::CollectorState {
                id,
                name: "site".into(),
                active: true,
                last_seen_at: Some(now),
                silent_after: Some(now + chrono::Duration::minutes(15)),
                push_interval_secs: 300,
            }],
            facts: vec![wbd_rules::FactInput {
                collector_id: id,
                subject: report.subject.clone(),
                observed_at: now,
                output: report.output.clone(),
            }],
        };
        let evaluations = wbd_rules::evaluate(&facts);
        assert!(evaluations.iter().any(|e| e.outcome.is_fail()), "an unresolvable endpoint fails a rule");
        let text = render_verdicts(&evaluations, Lang::En);
        let first_line = text.lines().nth(1).unwrap_or_default();
        assert!(first_line.starts_with("  FAIL"), "{text}");
        assert!(text.contains("passwordreset.example:443"), "{text}");
        assert!(!text.contains("@0000"), "no collector id on site: {text}");
        assert!(text.contains("failed") && text.contains("not decided"), "{text}");
    }
}
