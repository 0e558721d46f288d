//! The Active Directory probe: what a domain controller says over LDAP(S) about the domain,
//! its controllers, its password policy, the AD DS connector account's rights on the synced OUs,
//! and protected accounts.
//!
//! One session per run: TCP, TLS (LDAPS, or StartTLS on `ldap://`), a simple bind with the
//! configured read-only account, then plain searches:
//!
//! | fact | where it is read |
//! |---|---|
//! | domain, DCs' functional level, clock | rootDSE (`defaultNamingContext`, `domainFunctionality`, `currentTime`, `supportedControl`) |
//! | PDC emulator | domain head `fSMORoleOwner` → its NTDS Settings' parent server → `dNSHostName` |
//! | DNS / NetBIOS name | the domain's `crossRef` under `CN=Partitions` |
//! | every DC, OS, RODC | computers with SERVER_TRUST_ACCOUNT (0x2000) or PARTIAL_SECRETS_ACCOUNT (0x04000000) |
//! | password policy | domain head `minPwdAge`, `maxPwdAge`, … (100 ns intervals) |
//! | connector account rights | the account's `objectSid` and `tokenGroups`; each container's `nTSecurityDescriptor` read with the SD-flags control (owner, group, DACL); the `user` class's `defaultSecurityDescriptor`; checked by [`security`] |
//! | inheritance blocked | `SE_DACL_PROTECTED` on the container and on objects below it |
//! | protected accounts | users with `adminCount=1` under the synced OUs (or the domain) |
//!
//! The property set that carries `pwdLastSet` is read from the schema (`attributeSecurityGUID`)
//! rather than assumed, so a grant on "User-Account-Restrictions" counts as write `pwdLastSet`.
//!
//! Trust for the DC's certificate: the OS store plus `ca_file`. A certificate listed in `ca_file`
//! that the DC presents itself is trusted as exactly that certificate (whatever its names), which
//! is how a DC with a self-signed certificate is trusted explicitly.

pub mod security;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDateTime, Utc};
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, StdStream};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use wbd_wire::{
    AccessState, ActiveDirectoryReport, AdFailure, AdQueryError, AdStep, BlockedInheritance,
    ConnectorAccountRights, ConnectorAccountState, ConnectorKind, ContainerRights, DomainController,
    DomainPasswordPolicy, FineGrainedPolicy, ProbeOutput, ProbeResult, ProtectedAccounts, SampledCount,
    SyncScope, SyncScopeSource, SyncedPartition,
};

use self::security::{Guid, Right, Sid};
use super::connect_server::ConnectServerProber;
use super::endpoint::connect_host;
use super::tls::{ProbeSetupError, millis};
use crate::config::AdSettings;
use crate::http_client::error_chain;

/// Names kept in a sample.
pub const SAMPLE_SIZE: usize = 20;
const PAGE_SIZE: i32 = 500;
/// `LDAP_SERVER_SD_FLAGS_OID`: which parts of `nTSecurityDescriptor` to return.
const SD_FLAGS_OID: &str = "1.2.840.113556.1.4.801";
/// SD flags OWNER | GROUP | DACL, BER-encoded as `SEQUENCE { INTEGER 7 }`.
const SD_FLAGS_OWNER_GROUP_DACL: [u8; 5] = [0x30, 0x03, 0x02, 0x01, 0x07];
/// LDAP_SERVER_POLICY_HINTS_OID and its deprecated predecessor.
const POLICY_HINTS_OIDS: [&str; 2] = ["1.2.840.113556.1.4.2239", "1.2.840.113556.1.4.2066"];
const UAC_SERVER_TRUST_ACCOUNT: u32 = 0x2000;
const UAC_PARTIAL_SECRETS_ACCOUNT: u32 = 0x0400_0000;

/// What the schema says that the rights check needs.
struct SchemaFacts {
    /// `attributeSecurityGUID` of `pwdLastSet` (a grant on it covers the attribute).
    pwd_last_set_set: Option<Guid>,
    /// `defaultSecurityDescriptor` of the `user` class (SDDL).
    user_default_sddl: Option<String>,
}

/// Runs the Active Directory probe.
#[derive(Debug, Clone)]
pub struct ActiveDirectoryProber {
    settings: AdSettings,
    tls: Arc<ClientConfig>,
    /// Where Entra Connect's own configuration is read, for the containers it synchronises.
    connect: Option<ConnectServerProber>,
}

/// A query that failed, before it is recorded.
type QueryResult<T> = Result<T, String>;

impl ActiveDirectoryProber {
    pub fn new(settings: AdSettings) -> Result<Self, ProbeSetupError> {
        let tls = Arc::new(dc_tls_config(&settings)?);
        Ok(ActiveDirectoryProber { settings, tls, connect: None })
    }

    /// Also reads the Connect server state (live on Windows, or its export file) at each run,
    /// for the containers the AD connectors synchronise: their partitions' container filter.
    pub fn with_connect_state(mut self, connect: ConnectServerProber) -> Self {
        self.connect = Some(connect);
        self
    }

    /// Whether the probe binds as the connector account itself (by DN, `DOMAIN\name`, UPN or
    /// name): then a refused bind says something about that account.
    fn binds_as_connector(&self) -> bool {
        let (Some(bind), Some(account)) = (&self.settings.bind_dn, &self.settings.connector_account) else {
            return false;
        };
        let key = |name: &str| {
            let name = name.trim();
            let name = if name.contains('=') {
                name.split(',').next().and_then(|rdn| rdn.split_once('=')).map_or(name, |(_, v)| v)
            } else {
                name.rsplit('\\').next().unwrap_or(name).split('@').next().unwrap_or(name)
            };
            name.trim().to_ascii_lowercase()
        };
        bind.eq_ignore_ascii_case(account) || key(bind) == key(account)
    }

    fn subject(&self) -> String {
        format!("ldap:{}", self.settings.url)
    }

    #[tracing::instrument(skip_all, fields(server = %self.settings.url))]
    pub async fn probe(&self) -> ProbeResult {
        let observed_at = Utc::now();
        let started = Instant::now();
        let mut report = ActiveDirectoryReport {
            server: self.settings.url.clone(),
            bound_as: None,
            domain_dn: None,
            domain_dns_name: None,
            netbios_name: None,
            domain_functional_level: None,
            forest_functional_level: None,
            pdc_emulator: None,
            answering_dc: None,
            policy_hints_control: None,
            dc_current_time: None,
            domain_controllers: Vec::new(),
            password_policy: None,
            fine_grained_policies: None,
            sync_scope: None,
            connector_account: None,
            protected_accounts: None,
            errors: Vec::new(),
            failure: None,
        };
        // The AD connectors' partitions and container filters, from the Connect server state.
        let partitions = match &self.connect {
            Some(connect) => match connect.read_state().await {
                Ok(state) => state
                    .connectors
                    .into_iter()
                    .filter(|c| c.kind == ConnectorKind::ActiveDirectory)
                    .flat_map(|c| c.partitions)
                    .collect(),
                Err(error) => {
                    report.errors.push(AdQueryError { query: "connect_state".to_owned(), error });
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        match tokio::time::timeout(self.settings.timeout * 4, self.session(&mut report, &partitions)).await {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => {
                tracing::info!(step = ?failure.step, error = %failure.error, "Active Directory probe failed");
                report.failure = Some(failure);
            }
            Err(_) => report.errors.push(AdQueryError {
                query: "session".to_owned(),
                error: format!(
                    "the probe did not finish within {}s (4 × probes.active_directory.timeout_secs); facts read so far are kept",
                    (self.settings.timeout * 4).as_secs()
                ),
            }),
        }
        ProbeResult {
            subject: self.subject(),
            observed_at,
            duration_ms: millis(started.elapsed()),
            output: ProbeOutput::ActiveDirectory(report),
        }
    }

    async fn session(
        &self,
        report: &mut ActiveDirectoryReport,
        partitions: &[SyncedPartition],
    ) -> Result<(), AdFailure> {
        let fail = |step, error| AdFailure { step, error };
        let url = reqwest::Url::parse(&self.settings.url)
            .map_err(|e| fail(AdStep::Connect, format!("probes.active_directory.url: {e}")))?;
        let host =
            url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = url.port().unwrap_or(if url.scheme() == "ldaps" { 636 } else { 389 });

        // Our own connect, so that "unreachable" and "TLS refused" are told apart.
        let tcp =
            connect_host(&host, port, self.settings.timeout).await.map_err(|e| fail(AdStep::Connect, e))?;
        let std_stream = tcp.into_std().map_err(|e| fail(AdStep::Connect, e.to_string()))?;
        let conn_settings = LdapConnSettings::new()
            .set_conn_timeout(self.settings.timeout)
            .set_config(Arc::clone(&self.tls))
            .set_starttls(self.settings.starttls)
            .set_std_stream(StdStream::Tcp(std_stream));
        let tls_step =
            if url.scheme() == "ldaps" || self.settings.starttls { AdStep::Tls } else { AdStep::Connect };
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &self.settings.url)
            .await
            .map_err(|e| fail(tls_step, describe_ldap_error(&e)))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        ldap.with_timeout(self.settings.timeout);

        let outcome = self.read_everything(&mut ldap, report, partitions).await;
        let _ = ldap.unbind().await;
        driver.abort();
        outcome
    }

    async fn read_everything(
        &self,
        ldap: &mut Ldap,
        report: &mut ActiveDirectoryReport,
        partitions: &[SyncedPartition],
    ) -> Result<(), AdFailure> {
        if let (Some(dn), Some(password)) = (&self.settings.bind_dn, &self.settings.bind_password) {
            let bound = ldap.simple_bind(dn, password.expose()).await.map_err(|e| describe_ldap_error(&e));
            match bound.and_then(|r| r.success().map_err(|e| describe_ldap_error(&e))) {
                Ok(_) => report.bound_as = Some(dn.clone()),
                Err(e) => {
                    // Binding as the connector account: the refusal says what is wrong with it.
                    if self.binds_as_connector()
                        && let Some(state) = refusal_code(&e).and_then(|code| refused_state(&code))
                        && let Some(account) = &self.settings.connector_account
                    {
                        report.connector_account = Some(ConnectorAccountRights {
                            configured: account.clone(),
                            dn: dn.contains('=').then(|| dn.clone()),
                            sid: None,
                            group_sid_count: None,
                            user_account_control: None,
                            state: Some(state),
                            containers: Vec::new(),
                            inheritance_blocked: None,
                        });
                    }
                    return Err(AdFailure {
                        step: AdStep::Bind,
                        error: format!(
                            "bind as {dn} failed (probes.active_directory.bind_dn / bind password): {e}"
                        ),
                    });
                }
            }
        }

        let root = base_entry(
            ldap,
            "",
            &[
                "defaultNamingContext",
                "configurationNamingContext",
                "schemaNamingContext",
                "dnsHostName",
                "supportedControl",
                "domainFunctionality",
                "forestFunctionality",
                "currentTime",
            ],
        )
        .await
        .map_err(|error| AdFailure { step: AdStep::RootDse, error })?;
        let domain_dn = first(&root, "defaultNamingContext").ok_or_else(|| AdFailure {
            step: AdStep::RootDse,
            error: "the rootDSE names no defaultNamingContext".into(),
        })?;
        let config_dn = first(&root, "configurationNamingContext");
        let schema_dn = first(&root, "schemaNamingContext");
        report.domain_dn = Some(domain_dn.clone());
        report.answering_dc = first(&root, "dnsHostName");
        report.forest_functional_level = first(&root, "forestFunctionality").and_then(|v| v.parse().ok());
        report.dc_current_time = first(&root, "currentTime").and_then(|t| parse_generalized_time(&t));
        let controls = values(&root, "supportedControl");
        report.policy_hints_control = Some(controls.iter().any(|c| POLICY_HINTS_OIDS.contains(&c.as_str())));

        let mut errors = Vec::new();
        let mut record =
            |query: &str, error: String| errors.push(AdQueryError { query: query.to_owned(), error });

        // Domain head: PDC role owner, level, password policy.
        let head_attrs = [
            "fSMORoleOwner",
            "msDS-Behavior-Version",
            "minPwdAge",
            "maxPwdAge",
            "pwdHistoryLength",
            "minPwdLength",
            "pwdProperties",
            "lockoutThreshold",
        ];
        let mut pdc_server_dn = None;
        match base_entry(ldap, &domain_dn, &head_attrs).await {
            Ok(head) => {
                report.domain_functional_level = first(&head, "msDS-Behavior-Version")
                    .and_then(|v| v.parse().ok())
                    .or_else(|| first(&root, "domainFunctionality").and_then(|v| v.parse().ok()));
                report.password_policy = Some(DomainPasswordPolicy {
                    min_pwd_age_secs: first(&head, "minPwdAge").and_then(|v| interval_secs(&v)),
                    max_pwd_age_secs: first(&head, "maxPwdAge")
                        .and_then(|v| interval_secs(&v))
                        .filter(|s| *s > 0),
                    pwd_history_length: first(&head, "pwdHistoryLength").and_then(|v| v.parse().ok()),
                    min_pwd_length: first(&head, "minPwdLength").and_then(|v| v.parse().ok()),
                    pwd_properties: first(&head, "pwdProperties").and_then(|v| v.parse().ok()),
                    lockout_threshold: first(&head, "lockoutThreshold").and_then(|v| v.parse().ok()),
                });
                pdc_server_dn = first(&head, "fSMORoleOwner").and_then(|ntds| parent_dn(&ntds));
            }
            Err(e) => record("domain_head", e),
        }
        if let Some(server_dn) = &pdc_server_dn {
            match base_entry(ldap, server_dn, &["dNSHostName"]).await {
                Ok(server) => report.pdc_emulator = first(&server, "dNSHostName"),
                Err(e) => record("pdc_emulator", e),
            }
        }

        // What Entra Connect synchronises: the configured OUs and the Connect connector's
        // container filter for this domain. The checks below look at these containers.
        let mut scope = SyncScope { included: Vec::new(), excluded: Vec::new(), sources: Vec::new() };
        if !self.settings.synced_ous.is_empty() {
            scope.included.extend(self.settings.synced_ous.iter().cloned());
            scope.sources.push(SyncScopeSource::Configuration);
        }
        let domain_partitions: Vec<&SyncedPartition> =
            partitions.iter().filter(|p| same_dn(&p.dn, &domain_dn)).collect();
        if !domain_partitions.is_empty() {
            for partition in domain_partitions {
                scope.included.extend(partition.inclusions.iter().cloned());
                scope.excluded.extend(partition.exclusions.iter().cloned());
            }
            scope.sources.push(SyncScopeSource::Connect);
        }
        dedup_dns(&mut scope.included);
        dedup_dns(&mut scope.excluded);
        // Searches over the synced users: the included containers, else the whole domain.
        let bases: Vec<String> =
            if scope.included.is_empty() { vec![domain_dn.clone()] } else { scope.included.clone() };
        let excluded = scope.excluded.clone();
        report.sync_scope = (!scope.included.is_empty()).then_some(scope);

        // Fine-grained password policies, and which synced users each applies to.
        report.fine_grained_policies =
            self.fine_grained_policies(ldap, &domain_dn, &bases, &excluded, &mut record).await;

        // DNS and NetBIOS names from the domain's crossRef.
        if let Some(config_dn) = &config_dn {
            let filter = format!("(&(objectClass=crossRef)(nCName={}))", ldap3::ldap_escape(&domain_dn));
            match search(
                ldap,
                &format!("CN=Partitions,{config_dn}"),
                Scope::OneLevel,
                &filter,
                &["dnsRoot", "nETBIOSName"],
                None,
                10,
            )
            .await
            {
                Ok((entries, _)) => {
                    if let Some(cross_ref) = entries.first() {
                        report.domain_dns_name = first(cross_ref, "dnsRoot");
                        report.netbios_name = first(cross_ref, "nETBIOSName");
                    }
                }
                Err(e) => record("cross_ref", e),
            }
        }

        // Every DC of the domain.
        let dc_filter = format!(
            "(&(objectCategory=computer)(|(userAccountControl:1.2.840.113556.1.4.803:={UAC_SERVER_TRUST_ACCOUNT})(userAccountControl:1.2.840.113556.1.4.803:={UAC_PARTIAL_SECRETS_ACCOUNT})))"
        );
        let dc_attrs = [
            "dNSHostName",
            "operatingSystem",
            "operatingSystemVersion",
            "userAccountControl",
            "serverReferenceBL",
        ];
        match search(ldap, &domain_dn, Scope::Subtree, &dc_filter, &dc_attrs, None, self.settings.scan_limit)
            .await
        {
            Ok((entries, truncated)) => {
                if truncated {
                    record(
                        "domain_controllers",
                        format!("more than {} DCs; the list is cut", self.settings.scan_limit),
                    );
                }
                let pdc_dns = report.pdc_emulator.as_deref().map(str::to_ascii_lowercase);
                let mut dcs: Vec<DomainController> = entries
                    .iter()
                    .map(|e| {
                        let dns = first(e, "dNSHostName");
                        let is_pdc = match (&dns, &pdc_dns, &pdc_server_dn) {
                            (Some(d), Some(p), _) if d.eq_ignore_ascii_case(p) => true,
                            (_, _, Some(server)) => {
                                values(e, "serverReferenceBL").iter().any(|s| s.eq_ignore_ascii_case(server))
                            }
                            _ => false,
                        };
                        DomainController {
                            dn: e.dn.clone(),
                            dns_host_name: dns,
                            operating_system: first(e, "operatingSystem"),
                            operating_system_version: first(e, "operatingSystemVersion"),
                            read_only: first(e, "userAccountControl")
                                .and_then(|v| v.parse::<u32>().ok())
                                .map(|uac| uac & UAC_PARTIAL_SECRETS_ACCOUNT != 0),
                            is_pdc_emulator: is_pdc,
                        }
                    })
                    .collect();
                dcs.sort_by(|a, b| a.dn.cmp(&b.dn));
                report.domain_controllers = dcs;
            }
            Err(e) => record("domain_controllers", e),
        }

        // From the schema: the property set that holds pwdLastSet, and the ACEs every new user
        // object gets from its class (where Change Password for Everyone comes from).
        let mut schema = SchemaFacts {
            pwd_last_set_set: Some(security::USER_ACCOUNT_RESTRICTIONS),
            user_default_sddl: None,
        };
        if let Some(schema_dn) = &schema_dn {
            let filter = "(lDAPDisplayName=pwdLastSet)";
            match search(ldap, schema_dn, Scope::OneLevel, filter, &["attributeSecurityGUID"], None, 2).await
            {
                Ok((entries, _)) => {
                    schema.pwd_last_set_set = entries.first().and_then(|e| {
                        binary(e, "attributeSecurityGUID").first().and_then(|b| Guid::from_ad_bytes(b))
                    });
                }
                Err(e) => record("schema:pwdLastSet", e),
            }
            let filter = "(&(objectClass=classSchema)(lDAPDisplayName=user))";
            match search(ldap, schema_dn, Scope::OneLevel, filter, &["defaultSecurityDescriptor"], None, 2)
                .await
            {
                Ok((entries, _)) => {
                    schema.user_default_sddl =
                        entries.first().and_then(|e| first(e, "defaultSecurityDescriptor"));
                }
                Err(e) => record("schema:user", e),
            }
        }

        // The domain head (for what it grants everyone below) and each synced container.
        let mut containers: Vec<String> = vec![domain_dn.clone()];
        containers.extend(report.sync_scope.iter().flat_map(|s| s.included.iter().cloned()));
        dedup_dns(&mut containers);

        if let Some(account) = &self.settings.connector_account {
            let scan = Scan { bases: &bases, excluded: &excluded, judged: &containers };
            let now = report.dc_current_time.unwrap_or_else(Utc::now);
            report.connector_account = Some(
                self.connector_rights(
                    ldap,
                    &domain_dn,
                    account,
                    &containers,
                    &schema,
                    &scan,
                    now,
                    &mut record,
                )
                .await,
            );
        }

        // Protected accounts in scope (the synced containers, else the whole domain).
        let scope: Vec<String> = bases.clone();
        let mut names = Vec::new();
        let mut truncated = false;
        let mut ok = true;
        for base in &scope {
            let filter = "(&(objectCategory=person)(objectClass=user)(adminCount=1))";
            match search(
                ldap,
                base,
                Scope::Subtree,
                filter,
                &["sAMAccountName"],
                None,
                self.settings.scan_limit,
            )
            .await
            {
                Ok((entries, cut)) => {
                    truncated |= cut;
                    names.extend(
                        entries.iter().map(|e| first(e, "sAMAccountName").unwrap_or_else(|| e.dn.clone())),
                    );
                }
                Err(e) => {
                    ok = false;
                    record(&format!("protected_accounts:{base}"), e);
                }
            }
        }
        if ok {
            names.sort();
            names.dedup();
            report.protected_accounts =
                Some(ProtectedAccounts { scope, accounts: sampled(names, truncated) });
        }

        report.errors.extend(errors);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn connector_rights(
        &self,
        ldap: &mut Ldap,
        domain_dn: &str,
        account: &str,
        containers: &[String],
        schema: &SchemaFacts,
        scan: &Scan<'_>,
        now: DateTime<Utc>,
        record: &mut impl FnMut(&str, String),
    ) -> ConnectorAccountRights {
        let mut rights = ConnectorAccountRights {
            configured: account.to_owned(),
            dn: None,
            sid: None,
            group_sid_count: None,
            user_account_control: None,
            state: None,
            containers: Vec::new(),
            inheritance_blocked: None,
        };
        let unknown = |dn: &str, error: String| ContainerRights {
            dn: dn.to_owned(),
            reset_password: None,
            change_password: None,
            write_lockout_time: None,
            write_pwd_last_set: None,
            inheritance_blocked: None,
            error: Some(error),
        };

        let found = if account.contains('=') {
            base_entry(ldap, account, &["objectSid", "userAccountControl"]).await.map(Some)
        } else {
            let name = account.rsplit('\\').next().unwrap_or(account);
            let filter = if name.contains('@') {
                format!("(&(objectCategory=person)(userPrincipalName={}))", ldap3::ldap_escape(name))
            } else {
                format!("(&(objectCategory=person)(sAMAccountName={}))", ldap3::ldap_escape(name))
            };
            search(ldap, domain_dn, Scope::Subtree, &filter, &["objectSid", "userAccountControl"], None, 2)
                .await
                .map(|(entries, _)| entries.into_iter().next())
        };
        let entry = match found {
            Ok(Some(entry)) => entry,
            Ok(None) => {
                let error = format!(
                    "the connector account `{account}` was not found (probes.active_directory.connector_account)"
                );
                rights.state = Some(ConnectorAccountState { not_found: Some(true), ..Default::default() });
                rights.containers = containers.iter().map(|dn| unknown(dn, error.clone())).collect();
                return rights;
            }
            Err(e) => {
                record("connector_account", e.clone());
                rights.containers = containers.iter().map(|dn| unknown(dn, e.clone())).collect();
                return rights;
            }
        };
        rights.dn = Some(entry.dn.clone());
        rights.user_account_control = first(&entry, "userAccountControl").and_then(|v| v.parse().ok());
        // Whether it can sign in at all. msDS-User-Account-Control-Computed is constructed: the
        // DC computes lockout and password expiry there (userAccountControl never carries them).
        let state_attrs =
            ["userAccountControl", "msDS-User-Account-Control-Computed", "accountExpires", "pwdLastSet"];
        match base_entry(ldap, &entry.dn, &state_attrs).await {
            Ok(e) => rights.state = Some(account_state(&e, now)),
            Err(e) => record("connector_account_state", e),
        }
        let sid = binary(&entry, "objectSid").first().and_then(|b| Sid::from_bytes(b)).map(|(s, _)| s);
        rights.sid = sid.as_ref().map(ToString::to_string);
        let domain_sid = sid.as_ref().and_then(Sid::domain);
        let mut trustees: Vec<Sid> = sid.into_iter().collect();
        trustees.push(Sid::everyone());
        trustees.push(Sid::authenticated_users());
        // tokenGroups is constructed: it can only be read with a base search on the account.
        match base_entry(ldap, &entry.dn, &["tokenGroups"]).await {
            Ok(groups) => {
                let sids: Vec<Sid> = binary(&groups, "tokenGroups")
                    .iter()
                    .filter_map(|b| Sid::from_bytes(b))
                    .map(|(s, _)| s)
                    .collect();
                rights.group_sid_count = u32::try_from(sids.len()).ok();
                trustees.extend(sids);
            }
            Err(e) => record("token_groups", e),
        }

        let class_default = match &schema.user_default_sddl {
            Some(sddl) => security::parse_sddl_dacl(sddl, domain_sid.as_ref()).0,
            None => {
                record(
                    "schema:user",
                    "the user class's defaultSecurityDescriptor could not be read; rights it grants (Change Password for Everyone) are not counted".into(),
                );
                Vec::new()
            }
        };
        let checker = RightsCheck {
            class_default,
            trustees,
            reset: Right::Extended(security::RESET_PASSWORD),
            change: Right::Extended(security::CHANGE_PASSWORD),
            lockout: Right::WriteProperty { attribute: security::LOCKOUT_TIME, property_set: None },
            pwd: Right::WriteProperty {
                attribute: security::PWD_LAST_SET,
                property_set: schema.pwd_last_set_set,
            },
        };
        for dn in containers {
            let sd = match read_security_descriptor(ldap, dn).await {
                Ok(sd) => sd,
                Err(e) => {
                    rights.containers.push(unknown(dn, e));
                    continue;
                }
            };
            let Some(dacl) = sd.dacl.as_ref() else {
                rights.containers.push(unknown(
                    dn,
                    "the descriptor came back without a DACL (not allowed to read it?)".into(),
                ));
                continue;
            };
            let on_users = |right| {
                Some(security::access_on_child_users(&checker.class_default, dacl, &checker.trustees, right))
            };
            rights.containers.push(ContainerRights {
                dn: dn.clone(),
                reset_password: on_users(checker.reset),
                change_password: on_users(checker.change),
                write_lockout_time: on_users(checker.lockout),
                write_pwd_last_set: on_users(checker.pwd),
                inheritance_blocked: Some(sd.dacl_protected()),
                error: None,
            });
        }
        match self.blocked_inheritance(ldap, scan, &checker).await {
            Ok(blocked) => rights.inheritance_blocked = Some(blocked),
            Err(e) => record("inheritance", e),
        }
        rights
    }

    /// OUs and users in the synced scope whose DACL is protected, each once, with the connector
    /// account's effective writeback rights at each: for an OU, on the users below it; for a
    /// user, on itself. The synced containers themselves (judged with their own rights), what
    /// Connect excludes and `adminCount=1` accounts (protected by design) are left out.
    async fn blocked_inheritance(
        &self,
        ldap: &mut Ldap,
        scan: &Scan<'_>,
        checker: &RightsCheck,
    ) -> QueryResult<BlockedInheritance> {
        let filter = "(&(|(objectClass=organizationalUnit)(&(objectCategory=person)(objectClass=user)))(!(adminCount=1)))";
        let mut seen: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut blocked = 0u32;
        let mut without = Vec::new();
        let mut truncated = false;
        for base in scan.bases {
            let (entries, cut) = search(
                ldap,
                base,
                Scope::Subtree,
                filter,
                &["nTSecurityDescriptor", "objectClass"],
                Some(sd_flags_control()),
                self.settings.scan_limit,
            )
            .await?;
            truncated |= cut;
            for e in entries {
                if scan.judged.iter().any(|c| same_dn(c, &e.dn))
                    || scan.excluded.iter().any(|x| is_within(&e.dn, x))
                    || !seen.insert(e.dn.to_ascii_lowercase())
                {
                    continue;
                }
                let Some(sd) = binary(&e, "nTSecurityDescriptor")
                    .first()
                    .and_then(|bytes| security::parse_security_descriptor(bytes).ok())
                else {
                    continue;
                };
                if !sd.dacl_protected() {
                    continue;
                }
                blocked += 1;
                let dacl = sd.dacl.unwrap_or_default();
                let ou =
                    values(&e, "objectClass").iter().any(|c| c.eq_ignore_ascii_case("organizationalUnit"));
                let allowed = |right| {
                    let state = if ou {
                        security::access_on_child_users(
                            &checker.class_default,
                            &dacl,
                            &checker.trustees,
                            right,
                        )
                    } else {
                        security::access_on_object(&dacl, &checker.trustees, right)
                    };
                    state == AccessState::Allowed
                };
                if !(allowed(checker.reset) && allowed(checker.lockout) && allowed(checker.pwd)) {
                    without.push(e.dn.clone());
                }
            }
        }
        without.sort();
        Ok(BlockedInheritance { blocked, without_rights: sampled(without, truncated), truncated })
    }

    /// The domain's fine-grained password policies, and for each how many users in `bases`
    /// have it as their resultant policy (`msDS-ResultantPSO`). A policy the account may see
    /// but not read keeps its settings `None`, and says so in `errors`.
    async fn fine_grained_policies(
        &self,
        ldap: &mut Ldap,
        domain_dn: &str,
        bases: &[String],
        excluded: &[String],
        record: &mut impl FnMut(&str, String),
    ) -> Option<Vec<FineGrainedPolicy>> {
        let container = format!("CN=Password Settings Container,CN=System,{domain_dn}");
        let attrs = ["cn", "msDS-MinimumPasswordAge", "msDS-PasswordSettingsPrecedence", "msDS-PSOAppliesTo"];
        let found = search(
            ldap,
            &container,
            Scope::OneLevel,
            "(objectClass=msDS-PasswordSettings)",
            &attrs,
            None,
            self.settings.scan_limit,
        )
        .await;
        let mut policies: Vec<FineGrainedPolicy> = match found {
            Ok((entries, _)) => entries
                .iter()
                .map(|e| FineGrainedPolicy {
                    dn: e.dn.clone(),
                    name: first(e, "cn").unwrap_or_else(|| first_rdn(&e.dn)),
                    precedence: first(e, "msDS-PasswordSettingsPrecedence").and_then(|v| v.parse().ok()),
                    min_pwd_age_secs: first(e, "msDS-MinimumPasswordAge").and_then(|v| interval_secs(&v)),
                    applies_to: values(e, "msDS-PSOAppliesTo"),
                    synced_users: None,
                })
                .collect(),
            Err(e) => {
                record("fine_grained_policies", e);
                return None;
            }
        };
        // Which policy is each synced user's resultant one.
        let mut counts: BTreeMap<String, (String, u32)> = BTreeMap::new();
        let mut counted = true;
        for base in bases {
            match search(
                ldap,
                base,
                Scope::Subtree,
                "(&(objectCategory=person)(objectClass=user))",
                &["msDS-ResultantPSO"],
                None,
                self.settings.scan_limit,
            )
            .await
            {
                Ok((users, _)) => {
                    for user in users.iter().filter(|u| !excluded.iter().any(|x| is_within(&u.dn, x))) {
                        if let Some(pso) = first(user, "msDS-ResultantPSO") {
                            counts.entry(pso.to_ascii_lowercase()).or_insert_with(|| (pso, 0)).1 += 1;
                        }
                    }
                }
                Err(e) => {
                    counted = false;
                    record(&format!("resultant_pso:{base}"), e);
                }
            }
        }
        for (key, (dn, _)) in &counts {
            // A resultant policy the search did not show (the account may not see it).
            if !policies.iter().any(|p| p.dn.eq_ignore_ascii_case(key)) {
                policies.push(FineGrainedPolicy {
                    dn: dn.clone(),
                    name: first_rdn(dn),
                    precedence: None,
                    min_pwd_age_secs: None,
                    applies_to: Vec::new(),
                    synced_users: None,
                });
            }
        }
        for policy in &mut policies {
            if counted {
                policy.synced_users =
                    Some(counts.get(&policy.dn.to_ascii_lowercase()).map_or(0, |(_, n)| *n));
            }
            if policy.min_pwd_age_secs.is_none() {
                record(
                    &format!("fine_grained_policy:{}", policy.name),
                    format!(
                        "the probe's account may not read the settings of this fine-grained password policy; \
                         give it read access to {container}"
                    ),
                );
            }
        }
        policies.sort_by(|a, b| a.precedence.cmp(&b.precedence).then_with(|| a.dn.cmp(&b.dn)));
        Some(policies)
    }
}

/// Where the connector account's inheritance scan looks.
struct Scan<'a> {
    /// Searched below.
    bases: &'a [String],
    /// Left out, with everything below (what Connect excludes).
    excluded: &'a [String],
    /// Judged with their own rights, so not counted again.
    judged: &'a [String],
}

/// The account's trustees and the rights checked, with the `user` class's default ACEs.
struct RightsCheck {
    class_default: Vec<security::Ace>,
    trustees: Vec<Sid>,
    reset: Right,
    change: Right,
    lockout: Right,
    pwd: Right,
}

/// `userAccountControl` bits.
const UAC_ACCOUNTDISABLE: u32 = 0x2;
const UF_LOCKOUT: u32 = 0x10;
const UF_PASSWORD_EXPIRED: u32 = 0x80_0000;

/// The account's state from its attributes (`now`: the DC's clock, for the expiry).
fn account_state(e: &SearchEntry, now: DateTime<Utc>) -> ConnectorAccountState {
    let uac: Option<u32> = first(e, "userAccountControl").and_then(|v| v.parse().ok());
    let computed: Option<u32> = first(e, "msDS-User-Account-Control-Computed").and_then(|v| v.parse().ok());
    let expires = first(e, "accountExpires").and_then(|v| v.trim().parse::<i64>().ok());
    // 0 and the largest value both mean "never".
    let expires_at = expires.filter(|v| *v != 0 && *v != i64::MAX).and_then(filetime);
    let must_change = first(e, "pwdLastSet").map(|v| v.trim() == "0");
    ConnectorAccountState {
        disabled: uac.map(|u| u & UAC_ACCOUNTDISABLE != 0),
        expires_at,
        account_expired: expires.map(|_| expires_at.is_some_and(|at| at <= now)),
        // "Must change" also sets the computed expiry bit; it is reported as what it is.
        password_expired: computed.map(|c| c & UF_PASSWORD_EXPIRED != 0 && must_change != Some(true)),
        locked_out: computed.map(|c| c & UF_LOCKOUT != 0),
        must_change_password: must_change,
        ..ConnectorAccountState::default()
    }
}

/// A FILETIME (100 ns since 1601-01-01) as a time.
fn filetime(v: i64) -> Option<DateTime<Utc>> {
    const SECS_1601_TO_1970: i64 = 11_644_473_600;
    DateTime::from_timestamp(v / 10_000_000 - SECS_1601_TO_1970, 0)
}

/// The reason code of a refused simple bind (`… AcceptSecurityContext error, data 775, v4563`).
pub fn refusal_code(error: &str) -> Option<String> {
    let at = error.find("data ")? + 5;
    let code: String = error[at..].chars().take_while(char::is_ascii_hexdigit).collect();
    (!code.is_empty()).then(|| code.to_ascii_lowercase())
}

/// What a bind refusal code says about the account that tried to bind; `None` for codes that say
/// nothing about it.
pub fn refused_state(code: &str) -> Option<ConnectorAccountState> {
    let mut state = ConnectorAccountState { bind_refusal_code: Some(code.to_owned()), ..Default::default() };
    match code {
        "525" => state.not_found = Some(true),
        "52e" => state.wrong_password = Some(true),
        "530" | "531" => state.logon_restricted = Some(true),
        "532" => state.password_expired = Some(true),
        "533" => state.disabled = Some(true),
        "701" => state.account_expired = Some(true),
        "773" => state.must_change_password = Some(true),
        "775" => state.locked_out = Some(true),
        _ => return None,
    }
    Some(state)
}

/// Compares DNs ignoring case and spaces after commas.
fn same_dn(a: &str, b: &str) -> bool {
    let squash = |dn: &str| dn.split(',').map(|rdn| rdn.trim().to_ascii_lowercase()).collect::<Vec<_>>();
    squash(a) == squash(b)
}

/// Whether `dn` is `container` or below it.
fn is_within(dn: &str, container: &str) -> bool {
    let parts = |d: &str| d.split(',').map(|rdn| rdn.trim().to_ascii_lowercase()).collect::<Vec<_>>();
    let (dn, container) = (parts(dn), parts(container));
    dn.len() >= container.len() && dn[dn.len() - container.len()..] == container[..]
}

fn dedup_dns(dns: &mut Vec<String>) {
    let mut kept: Vec<String> = Vec::new();
    for dn in dns.drain(..) {
        if !kept.iter().any(|k| same_dn(k, &dn)) {
            kept.push(dn);
        }
    }
    *dns = kept;
}

/// The value of the first RDN (`CN=Staff,CN=…` → `Staff`).
fn first_rdn(dn: &str) -> String {
    dn.split(',').next().and_then(|rdn| rdn.split_once('=')).map_or(dn, |(_, v)| v).trim().to_owned()
}

fn sampled(names: Vec<String>, truncated: bool) -> SampledCount {
    SampledCount {
        count: u32::try_from(names.len()).unwrap_or(u32::MAX),
        sample: names.into_iter().take(SAMPLE_SIZE).collect(),
        truncated,
    }
}

fn sd_flags_control() -> RawControl {
    RawControl { ctype: SD_FLAGS_OID.to_owned(), crit: true, val: Some(SD_FLAGS_OWNER_GROUP_DACL.to_vec()) }
}

async fn read_security_descriptor(ldap: &mut Ldap, dn: &str) -> QueryResult<security::SecurityDescriptor> {
    let (entries, _) = search(
        ldap,
        dn,
        Scope::Base,
        "(objectClass=*)",
        &["nTSecurityDescriptor"],
        Some(sd_flags_control()),
        1,
    )
    .await?;
    let entry = entries.first().ok_or_else(|| format!("{dn} was not found"))?;
    let bytes = binary(entry, "nTSecurityDescriptor");
    let bytes =
        bytes.first().ok_or_else(|| format!("no nTSecurityDescriptor on {dn} (not allowed to read it?)"))?;
    security::parse_security_descriptor(bytes)
}

/// One object's attributes.
async fn base_entry(ldap: &mut Ldap, dn: &str, attrs: &[&str]) -> QueryResult<SearchEntry> {
    let (entries, _) = search(ldap, dn, Scope::Base, "(objectClass=*)", attrs, None, 1).await?;
    entries.into_iter().next().ok_or_else(|| format!("`{dn}` was not found"))
}

/// A paged search that stops after `limit` entries; `true` when it stopped early.
async fn search(
    ldap: &mut Ldap,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[&str],
    control: Option<RawControl>,
    limit: u32,
) -> QueryResult<(Vec<SearchEntry>, bool)> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let attrs: Vec<String> = attrs.iter().map(|a| (*a).to_owned()).collect();
    if let Some(control) = control {
        ldap.with_controls(vec![control]);
    }
    let what =
        |e: &ldap3::LdapError| format!("search under `{base}` for {filter}: {}", describe_ldap_error(e));
    let mut entries = Vec::new();
    let mut truncated = false;
    if scope == Scope::Base {
        let (found, _) =
            ldap.search(base, scope, filter, attrs).await.and_then(|r| r.success()).map_err(|e| what(&e))?;
        entries.extend(
            found.into_iter().filter(|e| !e.is_ref() && !e.is_intermediate()).map(SearchEntry::construct),
        );
        return Ok((entries, false));
    }
    let mut stream = ldap
        .streaming_search_with(ldap3::adapters::PagedResults::new(PAGE_SIZE), base, scope, filter, attrs)
        .await
        .map_err(|e| what(&e))?;
    loop {
        match stream.next().await {
            Ok(Some(entry)) => {
                if entry.is_ref() || entry.is_intermediate() {
                    continue;
                }
                if entries.len() >= limit {
                    truncated = true;
                    break;
                }
                entries.push(SearchEntry::construct(entry));
            }
            Ok(None) => break,
            Err(e) => return Err(what(&e)),
        }
    }
    let result = stream.finish().await;
    // 10 = referral (a subtree search that crosses a naming context), harmless here.
    if !truncated && result.rc != 0 && result.rc != 10 {
        return Err(format!("search under `{base}` for {filter}: LDAP result {} {}", result.rc, result.text));
    }
    Ok((entries, truncated))
}

fn find_attr<'a, T>(map: &'a std::collections::HashMap<String, Vec<T>>, name: &str) -> Option<&'a Vec<T>> {
    map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn values(e: &SearchEntry, name: &str) -> Vec<String> {
    find_attr(&e.attrs, name).cloned().unwrap_or_default()
}

fn first(e: &SearchEntry, name: &str) -> Option<String> {
    find_attr(&e.attrs, name).and_then(|v| v.first().cloned())
}

/// A binary attribute's values (ldap3 files a value that happens to be valid UTF-8 as text).
fn binary(e: &SearchEntry, name: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = find_attr(&e.bin_attrs, name).cloned().unwrap_or_default();
    if let Some(text) = find_attr(&e.attrs, name) {
        out.extend(text.iter().map(|s| s.as_bytes().to_vec()));
    }
    out
}

/// The DN without its first RDN (`CN=NTDS Settings,CN=DC1,…` → `CN=DC1,…`).
fn parent_dn(dn: &str) -> Option<String> {
    let mut escaped = false;
    for (i, c) in dn.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            ',' if !escaped => return Some(dn[i + 1..].trim_start().to_owned()),
            _ => escaped = false,
        }
    }
    None
}

/// A negative 100-ns interval (`minPwdAge`) in seconds; the "never" value gives `None`.
fn interval_secs(v: &str) -> Option<u64> {
    let n: i64 = v.trim().parse().ok()?;
    if n == i64::MIN {
        return None;
    }
    Some(n.unsigned_abs() / 10_000_000)
}

/// `20261122025842.0Z`.
fn parse_generalized_time(v: &str) -> Option<DateTime<Utc>> {
    let digits = v.trim().trim_end_matches('Z');
    let main = digits.split(['.', ',']).next()?;
    NaiveDateTime::parse_from_str(main, "%Y%m%d%H%M%S").ok().map(|n| n.and_utc())
}

fn describe_ldap_error(e: &ldap3::LdapError) -> String {
    if let ldap3::LdapError::LdapResult { result } = e {
        let hint = match result.rc {
            49 => " (invalid credentials)",
            8 => " (the DC requires a signed or encrypted connection)",
            50 => " (insufficient access rights)",
            _ => "",
        };
        return format!("LDAP result {}{hint}: {}", result.rc, result.text.trim());
    }
    error_chain(e)
}

/// TLS for the DC: the OS store plus `ca_file`; certificates in `ca_file` presented as-is by
/// the DC are trusted exactly.
fn dc_tls_config(settings: &AdSettings) -> Result<ClientConfig, ProbeSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    // A self-signed leaf (no CA flag) is refused as an anchor; it is still pinned below.
    roots.add_parsable_certificates(settings.ca_certs.iter().cloned());
    let verifier = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| ProbeSetupError::Verifier(e.to_string()))?,
        )
    };
    let name_override = match &settings.tls_server_name {
        Some(name) => Some(ServerName::try_from(name.clone()).map_err(|e| ProbeSetupError::Setting {
            setting: "probes.active_directory.tls_server_name".to_owned(),
            message: e.to_string(),
        })?),
        None => None,
    };
    let dc_verifier = DcCertVerifier {
        webpki: verifier,
        pinned: settings.ca_certs.clone(),
        name_override,
        provider: Arc::clone(&provider),
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ProbeSetupError::Verifier(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(dc_verifier))
        .with_no_client_auth())
}

#[derive(Debug)]
struct DcCertVerifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    name_override: Option<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for DcCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pinned.iter().any(|pinned| pinned.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        let name = self.name_override.as_ref().unwrap_or(server_name);
        match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(end_entity, intermediates, name, ocsp_response, now),
            None => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_ad_units_convert() {
        assert_eq!(interval_secs("-864000000000"), Some(86_400));
        assert_eq!(interval_secs("0"), Some(0));
        assert_eq!(interval_secs("-9223372036854775808"), None);
        assert_eq!(parse_generalized_time("20261122025842.0Z"), DateTime::from_timestamp(1_795_316_322, 0));
        assert_eq!(
            parent_dn(
                "CN=NTDS Settings,CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=x"
            ),
            Some("CN=DC1,CN=Servers,CN=Default-First-Site-Name,CN=Sites,CN=Configuration,DC=x".to_owned())
        );
        assert_eq!(parent_dn("CN=a\\,b,DC=x"), Some("DC=x".to_owned()));
    }

    #[test]
    fn bind_refusals_are_decoded_into_the_account_state() {
        let error = "LDAP result 49 (invalid credentials): 80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data 775, v4563";
        assert_eq!(refusal_code(error).as_deref(), Some("775"));
        assert_eq!(refusal_code("LDAP result 49: invalid credentials"), None);
        let state = |code: &str| refused_state(code).expect(code);
        assert_eq!(state("775").locked_out, Some(true));
        assert_eq!(state("533").disabled, Some(true));
        assert_eq!(state("532").password_expired, Some(true));
        assert_eq!(state("701").account_expired, Some(true));
        assert_eq!(state("773").must_change_password, Some(true));
        assert_eq!(state("530").logon_restricted, Some(true));
        assert_eq!(state("531").logon_restricted, Some(true));
        assert_eq!(state("525").not_found, Some(true));
        assert_eq!(state("52e").wrong_password, Some(true));
        assert_eq!(refusal_code("… data 52E, v4563").as_deref(), Some("52e"), "codes are read lower case");
        assert!(refused_state("52f").is_none(), "a code we do not know says nothing");
    }

    #[test]
    fn dns_and_times_in_ad_units() {
        assert!(is_within("CN=u,OU=Staff,DC=x,DC=y", "ou=staff, dc=x,dc=y"));
        assert!(!is_within("CN=u,OU=Other,DC=x,DC=y", "OU=Staff,DC=x,DC=y"));
        assert!(same_dn("OU=A, DC=x", "ou=a,dc=X"));
        assert_eq!(
            first_rdn("CN=wbd-two-days,CN=Password Settings Container,CN=System,DC=x"),
            "wbd-two-days"
        );
        // 2026-01-01T00:00:00Z as a FILETIME.
        assert_eq!(filetime(134_116_992_000_000_000), DateTime::from_timestamp(1_767_225_600, 0));
    }
}
