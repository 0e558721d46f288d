//! Integrations, where findings go (signed webhooks, PSA tickets, PagerDuty, chat): add, read,
//! change, delete, rotate a webhook's signing secret, send a test event. What was delivered to
//! them is `routes::deliveries`.
//!
//! An integration is checked in full when it is saved and every problem is listed at once:
//! `wbd_delivery::integration` checks, this module answers `validation_failed` (or
//! `destination_refused` when refused destinations are the only problems). Secrets (credentials,
//! chat webhook URLs, webhook signing secrets) are sealed at rest and never answered, except a
//! webhook's signing secret once, in the answer that made it. Org admins change integrations;
//! every role of the organisation reads them.

use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;
use wbd_delivery::events;
use wbd_delivery::integration::{
    self, CheckError, Checker, Draft, FilterDraft, IntegrationChange, NewIntegration, Problems,
};
use wbd_delivery::secrets::{self, SealedSecrets};
use wbd_notify::IntegrationKind;
use wbd_notify::sealing::Sealer;
use wbd_store::{DeliveryFilter, Integration, IntegrationFilter, IntegrationUpdate, IntegrationWrite};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::input::{JsonObject, OptionalBody, optional_json};
use crate::responses::{
    BadRequest, Forbidden, IntegrationSwitchedOff, NotFound, SecretsKeyMissing, Unauthenticated,
    Unprocessable,
};
use crate::state::AppState;

// ---- documents --------------------------------------------------------------------------------

/// Which events an integration receives. Every list narrows; an empty (or absent) list means all.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterDoc {
    /// Tenants of your organisation.
    #[serde(default)]
    pub tenant_ids: Vec<Uuid>,
    /// `critical`, `high`, `medium`, `low`, `info`.
    #[serde(default)]
    pub severities: Vec<String>,
    /// Shipped rule ids (`GET /v1/rules`) or your custom rules' ids.
    #[serde(default)]
    pub rule_ids: Vec<String>,
    /// `finding.opened`, `finding.acknowledged`, `finding.suppressed`, `finding.resolved`,
    /// `finding.reopened`, `collector.silent`, `collector.back`, `integration.disabled`,
    /// `integration.test`.
    #[serde(default)]
    pub event_types: Vec<String>,
}

impl From<FilterDoc> for FilterDraft {
    fn from(f: FilterDoc) -> Self {
        FilterDraft {
            tenant_ids: f.tenant_ids,
            severities: f.severities,
            rule_ids: f.rule_ids,
            event_types: f.event_types,
        }
    }
}

impl From<&IntegrationFilter> for FilterDoc {
    fn from(f: &IntegrationFilter) -> Self {
        FilterDoc {
            tenant_ids: f.tenant_ids.iter().map(|t| t.0).collect(),
            severities: f.severities.iter().map(|s| s.as_str().to_owned()).collect(),
            rule_ids: f.rule_ids.clone(),
            event_types: f.event_types.clone(),
        }
    }
}

/// `POST /v1/integrations` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    /// 1 to 100 characters, no control characters (required).
    #[serde(default)]
    #[schema(required = true, schema_with = integration_name)]
    pub name: String,
    /// `webhook`, `connectwise`, `autotask`, `halopsa`, `jira`, `servicenow`, `pagerduty`,
    /// `slack` or `teams` (required).
    #[serde(default)]
    #[schema(required = true, value_type = IntegrationKindName)]
    pub kind: String,
    /// The destination: the webhook endpoint, the PSA's base URL, the Slack or Teams webhook URL
    /// (kept secret). PagerDuty's events endpoint when absent.
    #[serde(default)]
    pub url: Option<String>,
    /// The kind's non-secret settings (board, queue, project, status names …). No string in it
    /// may contain a NUL character.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// The kind's secrets (API keys, passwords, routing keys …): sealed, never shown again.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Value>,
    #[serde(default)]
    pub filter: Option<FilterDoc>,
    /// `per_tenant` (default: a ticket per finding) or `digest` (a ticket per problem across
    /// the tenants it affects).
    #[serde(default)]
    pub routing: Option<String>,
    /// Requests in flight at once, 1 to 64 (default by kind).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 64)]
    pub max_in_flight: Option<i64>,
    /// Deliveries per rolling hour, 1 to 1000000 (default by kind; none for most kinds).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000000)]
    pub hourly_budget: Option<i64>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// The name of an integration.
fn integration_name() -> utoipa::openapi::schema::Object {
    crate::input::name_schema(integration::MAX_NAME_CHARS)
}

/// The kinds of integration, as the connectors name them (`IntegrationKind::ALL`), for the
/// OpenAPI document.
pub struct IntegrationKindName;

impl utoipa::PartialSchema for IntegrationKindName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some("The kinds of integration."))
            .enum_values(Some(IntegrationKind::ALL.map(IntegrationKind::as_str)))
            .into()
    }
}

impl ToSchema for IntegrationKindName {}

/// `PATCH /v1/integrations/{id}` body: what is absent stays as it is.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIntegration {
    pub name: Option<String>,
    /// Cannot change; accepted when it is the integration's kind.
    pub kind: Option<String>,
    /// A new destination. For Slack and Teams, the redacted URL the API shows
    /// (`https://hooks.slack.com/…`) means "unchanged". When the destination's origin (scheme,
    /// host, port) changes for a kind with credentials, the credentials must be given again:
    /// stored ones are never sent to a new destination.
    pub url: Option<String>,
    /// Replaces the whole config.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// Each key given replaces that credential; `null` removes it. Keys not given stay, unless
    /// the destination moves to another origin: then only the credentials given are kept.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Map<String, Value>>,
    /// Replaces the whole filter (checked again only when given).
    pub filter: Option<FilterDoc>,
    pub routing: Option<String>,
    #[schema(minimum = 1, maximum = 64)]
    pub max_in_flight: Option<i64>,
    /// 1 to 1000000; `null`: back to the kind's default.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    pub hourly_budget: Option<Option<i64>>,
    /// `true` switches a disabled integration back on and forgets its failure streak; absent,
    /// it stays as it is.
    pub enabled: Option<bool>,
    /// The version you saw; if the integration changed since (the engine switched it off, a
    /// secret was rotated), nothing changes (409 `integration_changed`). Absent: the version
    /// this request reads.
    pub version: Option<i64>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationView {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
    /// The destination. Slack and Teams webhook URLs are secrets: only their origin is shown
    /// (`https://hooks.slack.com/…`).
    pub url: Option<String>,
    #[schema(value_type = Object)]
    pub config: Value,
    /// The names of the credentials that are set; their values are never shown.
    pub credentials_set: Vec<String>,
    pub filter: FilterDoc,
    /// `per_tenant` or `digest`.
    pub routing: &'static str,
    pub max_in_flight: u32,
    /// Deliveries per rolling hour; absent: no limit.
    pub hourly_budget: Option<u32>,
    pub enabled: bool,
    /// Why the engine switched it off (it failed for too long, or the destination answered 410).
    pub disabled_reason: Option<String>,
    pub disabled_at: Option<DateTime<Utc>>,
    /// Since when every attempt has failed.
    pub failing_since: Option<DateTime<Utc>>,
    /// When a delivery last succeeded, to within a second: while deliveries keep succeeding the
    /// engine writes it at most once a second.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The destination asked us to slow down (`429`, or `503` with `Retry-After`): nothing is
    /// sent to it before this instant. Absent when it is not throttled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
    /// Webhooks: the signing secrets valid now (two during a rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret_count: Option<usize>,
}

impl IntegrationView {
    /// `secrets` is `None` when they cannot be opened: the view then shows what the row holds.
    fn new(i: Integration, secrets: Option<&SealedSecrets>, now: DateTime<Utc>) -> Self {
        let kind = IntegrationKind::parse(&i.kind);
        let url = match (kind, secrets) {
            (Some(k), Some(s)) if k.url_is_secret() => s.url.as_deref().map(integration::redacted_url),
            (Some(k), None) if k.url_is_secret() => None,
            _ => i.url.clone(),
        };
        IntegrationView {
            id: i.id,
            filter: FilterDoc::from(&i.filter),
            name: i.name,
            kind: i.kind,
            url,
            config: i.config,
            credentials_set: secrets.map(SealedSecrets::credential_names).unwrap_or_default(),
            routing: i.routing.as_str(),
            max_in_flight: i.max_in_flight,
            hourly_budget: i.hourly_budget,
            enabled: i.enabled,
            disabled_reason: i.disabled_reason,
            disabled_at: i.disabled_at,
            failing_since: i.failing_since,
            last_success_at: i.last_success_at,
            throttled_until: i.throttled_until.filter(|until| *until > now),
            created_at: i.created_at,
            updated_at: i.updated_at,
            version: i.version,
            signing_secret_count: (kind == Some(IntegrationKind::Webhook))
                .then(|| secrets.map_or(0, |s| s.valid_signing_secrets(now).len())),
        }
    }
}

/// An integration with the signing secret just made (create of a webhook, rotation).
#[derive(Serialize, ToSchema)]
pub struct IntegrationWithSecret {
    #[serde(flatten)]
    pub integration: IntegrationView,
    /// The webhook's new signing secret (`whsec_…`): shown this once, store it now. Receivers
    /// check the `webhook-signature` header with it (Standard Webhooks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
}

// ---- helpers ----------------------------------------------------------------------------------

/// A refused integration as a problem: `destination_refused` when destinations the network
/// policy refuses are the only problems, else `validation_failed`; `errors` lists each field.
fn refusal(problems: &Problems) -> ApiError {
    let code = if problems.only_destinations_refused() {
        ErrorCode::DestinationRefused
    } else {
        ErrorCode::Validation
    };
    let items = problems.iter().map(|p| json!({ "field": p.field, "detail": p.detail })).collect();
    ApiError::new(code, problems.to_string()).with_errors(Value::Array(items))
}

fn check_error(e: CheckError) -> ApiError {
    match e {
        CheckError::Refused(problems) => refusal(&problems),
        CheckError::Store(e) => ApiError::internal(e),
    }
}

fn checker<'a>(state: &'a AppState, who: &Principal, sealer: &'a Sealer) -> Checker<'a> {
    Checker { store: state.store.as_ref(), org: who.org, network: &state.network, sealer }
}

fn sealer(state: &AppState) -> ApiResult<&Sealer> {
    state.sealer.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::SecretsKeyMissing,
            "integration secrets cannot be sealed: the operator must set delivery.secrets_key \
             (WBD_DELIVERY__SECRETS_KEY) to the base64 of 32 random bytes, the same in every process",
        )
    })
}

fn open_secrets(sealer: &Sealer, integration: &Integration) -> ApiResult<SealedSecrets> {
    secrets::open(sealer, integration.org_id, &integration.secrets).map_err(ApiError::internal)
}

/// The secrets as far as a view needs them; a view still answers when they cannot be opened.
fn readable_secrets(state: &AppState, integration: &Integration) -> Option<SealedSecrets> {
    let sealer = state.sealer.as_deref()?;
    match secrets::open(sealer, integration.org_id, &integration.secrets) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(integration_id = %integration.id, error = %e, "integration secrets cannot be opened");
            None
        }
    }
}

pub(crate) fn view(state: &AppState, integration: Integration, now: DateTime<Utc>) -> IntegrationView {
    let secrets = readable_secrets(state, &integration);
    IntegrationView::new(integration, secrets.as_ref(), now)
}

/// The organisation's integration, whatever the caller's role: another organisation's answers
/// 404 before a role is checked (a 403 would tell that it exists).
pub(crate) async fn find(state: &AppState, who: &Principal, id: Uuid) -> ApiResult<Integration> {
    state.store.get_integration(who.org, id).await?.ok_or_else(|| ApiError::not_found("integration"))
}

/// A guarded write's outcome: the integration stored, or why not.
fn written(outcome: IntegrationUpdate, expected: i64) -> ApiResult<Integration> {
    match outcome {
        IntegrationUpdate::Updated(integration) => Ok(*integration),
        IntegrationUpdate::NotFound => Err(ApiError::not_found("integration")),
        IntegrationUpdate::Changed { current_version } => Err(changed(current_version, expected)),
    }
}

fn changed(current_version: i64, expected: i64) -> ApiError {
    ApiError::new(
        ErrorCode::IntegrationChanged,
        format!(
            "the integration changed meanwhile (it is at version {current_version}, the change was made \
             from version {expected}); reload it and try again"
        ),
    )
}

pub(crate) fn switched_off() -> ApiError {
    ApiError::new(
        ErrorCode::IntegrationDisabled,
        "the integration is switched off; switch it on (PATCH enabled: true) first",
    )
}

/// The stored integration as a write, with other secrets.
fn rewrite(i: &Integration, secrets: Vec<u8>) -> IntegrationWrite {
    IntegrationWrite {
        name: i.name.clone(),
        kind: i.kind.clone(),
        url: i.url.clone(),
        config: i.config.clone(),
        secrets,
        filter: i.filter.clone(),
        routing: i.routing,
        max_in_flight: i.max_in_flight,
        hourly_budget: i.hourly_budget,
        enabled: i.enabled,
    }
}

// ---- integrations -----------------------------------------------------------------------------

/// Add an integration (org admins). Everything is checked first and every problem listed
/// (`errors`: `[{field, detail}]`); a destination the network policy refuses (private,
/// loopback, cloud metadata addresses, plain http where https is required) answers
/// `destination_refused`. A webhook's answer carries its signing secret, the only time it is
/// shown.
#[utoipa::path(tag = "integrations", operation_id = "create_integration", security(("bearer" = [])),
    request_body = CreateIntegration, responses(
    (status = 201, body = IntegrationWithSecret),
    BadRequest, Unauthenticated, Forbidden,
    (status = 422, description = "`validation_failed` or `destination_refused`; `errors` lists each field", body = Problem, content_type = "application/problem+json"),
    SecretsKeyMissing,
))]
#[post("/v1/integrations")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id))]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject<CreateIntegration>,
) -> ApiResult<HttpResponse> {
    let created = create_integration(&state, &who, body.into_inner()).await?;
    Ok(HttpResponse::Created().json(created))
}

/// Checks and stores a new integration (the REST route and the console both create through
/// this): org admins only, every problem listed at once.
pub async fn create_integration(
    state: &AppState,
    who: &Principal,
    body: CreateIntegration,
) -> ApiResult<IntegrationWithSecret> {
    who.require_admin()?;
    let sealer = sealer(state)?;
    let now = Utc::now();
    let (draft, signing_secret) = Draft::new(NewIntegration {
        name: body.name,
        kind: body.kind,
        url: body.url,
        config: body.config,
        credentials: body.credentials,
        filter: body.filter.map(Into::into),
        routing: body.routing,
        max_in_flight: body.max_in_flight,
        hourly_budget: body.hourly_budget,
        enabled: body.enabled,
    });
    let write = checker(state, who, sealer).check(draft, now).await.map_err(check_error)?;
    let created = state.store.create_integration(who.org, &write, &who.actor(), now).await?;
    tracing::info!(integration_id = %created.id, kind = %created.kind, "integration created");
    Ok(IntegrationWithSecret { integration: view(state, created, now), signing_secret })
}

/// The organisation's integrations.
#[utoipa::path(tag = "integrations", operation_id = "list_integrations", security(("bearer" = [])), responses(
    (status = 200, body = Vec<IntegrationView>),
    Unauthenticated,
))]
#[get("/v1/integrations")]
pub async fn list(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    let now = Utc::now();
    let views: Vec<IntegrationView> =
        state.store.list_integrations(who.org).await?.into_iter().map(|i| view(&state, i, now)).collect();
    Ok(HttpResponse::Ok().json(views))
}

/// One integration.
#[utoipa::path(tag = "integrations", operation_id = "get_integration", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 200, body = IntegrationView),
    Unauthenticated, NotFound,
))]
#[get("/v1/integrations/{id}")]
pub async fn get(state: web::Data<AppState>, who: Principal, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let integration = find(&state, &who, id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(view(&state, integration, Utc::now())))
}

/// Change an integration (org admins): any field of the create; the result is checked in full
/// like a create (a filter only when it is given). `enabled: true` switches a disabled
/// integration back on. Moving the destination to another origin needs the credentials again.
#[utoipa::path(tag = "integrations", operation_id = "update_integration", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body = UpdateIntegration, responses(
    (status = 200, body = IntegrationView),
    BadRequest, Unauthenticated, Forbidden, NotFound,
    (status = 409, description = "`integration_changed`: it changed since the version the change was made from", body = Problem, content_type = "application/problem+json"),
    (status = 422, description = "`validation_failed` or `destination_refused`; `errors` lists each field", body = Problem, content_type = "application/problem+json"),
    SecretsKeyMissing,
))]
#[patch("/v1/integrations/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, integration_id = %id))]
pub async fn update(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    body: JsonObject<UpdateIntegration>,
) -> ApiResult<HttpResponse> {
    let updated = update_integration(&state, &who, *id, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(updated))
}

/// Changes the organisation's integration `id` (the REST route and the console both change
/// through this): org admins only, checked in full like a create, from the version the change
/// was made from.
pub async fn update_integration(
    state: &AppState,
    who: &Principal,
    id: Uuid,
    body: UpdateIntegration,
) -> ApiResult<IntegrationView> {
    let current = find(state, who, id).await?;
    who.require_admin()?;
    let sealer = sealer(state)?;
    let expected = body.version.unwrap_or(current.version);
    if expected != current.version {
        return Err(changed(current.version, expected));
    }
    let stored_secrets = open_secrets(sealer, &current)?;
    let now = Utc::now();
    let change = IntegrationChange {
        name: body.name,
        kind: body.kind,
        url: body.url,
        config: body.config,
        credentials: body.credentials,
        filter: body.filter.map(Into::into),
        routing: body.routing,
        max_in_flight: body.max_in_flight,
        hourly_budget: body.hourly_budget,
        enabled: body.enabled,
    };
    let draft = Draft::changed(&current, stored_secrets, change, now).map_err(|p| refusal(&p))?;
    let write = checker(state, who, sealer).check(draft, now).await.map_err(check_error)?;
    let outcome =
        state.store.update_integration(who.org, current.id, expected, &write, &who.actor(), now).await?;
    let updated = written(outcome, expected)?;
    tracing::info!(integration_id = %updated.id, enabled = updated.enabled, version = updated.version, "integration updated");
    Ok(view(state, updated, now))
}

/// Delete an integration with its deliveries (org admins). Tickets it made stay in the PSA.
#[utoipa::path(tag = "integrations", operation_id = "delete_integration", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 204, description = "Deleted"),
    Unauthenticated, Forbidden, NotFound,
))]
#[delete("/v1/integrations/{id}")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, integration_id = %id))]
pub async fn remove(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let integration = find(&state, &who, *id).await?;
    who.require_admin()?;
    if !state.store.delete_integration(who.org, integration.id, &who.actor(), Utc::now()).await? {
        return Err(ApiError::not_found("integration"));
    }
    tracing::info!("integration deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/integrations/{id}/rotate-secret` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// How long the current secret stays valid beside the new one, in seconds: 0 to 604800
    /// (7 days), default 86400. Receivers have this long to switch.
    #[serde(default)]
    #[schema(maximum = 604800)]
    pub previous_valid_for_secs: Option<u64>,
}

/// Make a new signing secret for a webhook (org admins). Requests are signed with the new and
/// the previous secret until the previous one expires, so receivers can switch without losing
/// a message. The new secret is in the answer, the only time it is shown.
#[utoipa::path(tag = "integrations", operation_id = "rotate_integration_secret", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    request_body(content = Option<RotateSecretRequest>, content_type = "application/json", description = "Optional."),
    responses(
    (status = 200, body = IntegrationWithSecret),
    BadRequest, Unauthenticated, Forbidden, NotFound,
    (status = 409, description = "`integration_not_signed`: not a webhook; `integration_changed`: it changed while the secret was made (another rotation), try again", body = Problem, content_type = "application/problem+json"),
    Unprocessable, SecretsKeyMissing,
))]
#[post("/v1/integrations/{id}/rotate-secret")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, integration_id = %id))]
pub async fn rotate_secret(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
    req: HttpRequest,
    body: OptionalBody,
) -> ApiResult<HttpResponse> {
    let current = find(&state, &who, *id).await?;
    who.require_admin()?;
    let sealer = sealer(&state)?;
    let request: RotateSecretRequest = optional_json(&req, &body.0)?;
    let valid_for =
        integration::previous_secret_validity(request.previous_valid_for_secs).map_err(|p| refusal(&p))?;
    if IntegrationKind::parse(&current.kind) != Some(IntegrationKind::Webhook) {
        return Err(ApiError::new(
            ErrorCode::NotSigned,
            format!("a {} integration has no signing secret; only webhooks are signed", current.kind),
        ));
    }
    let mut stored = open_secrets(sealer, &current)?;
    let now = Utc::now();
    let new_secret = integration::rotate_signing_secret(&mut stored, valid_for, now);
    let write = rewrite(&current, secrets::seal(sealer, who.org.org_id, &stored));
    // Made from the secrets read above: a rotation (or anything) stored meanwhile is not undone.
    let outcome = state
        .store
        .update_integration(who.org, current.id, current.version, &write, &who.actor(), now)
        .await?;
    let updated = written(outcome, current.version)?;
    tracing::info!(valid_for, "webhook signing secret rotated");
    Ok(HttpResponse::Ok().json(IntegrationWithSecret {
        integration: view(&state, updated, now),
        signing_secret: Some(new_secret),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TestQueued {
    /// The `integration.test` event.
    pub event_id: Uuid,
    /// Follow it with `GET /v1/deliveries/{id}`.
    pub delivery_id: Option<Uuid>,
}

/// Send an `integration.test` event (org admins): it is queued and delivered like any event
/// (it opens no ticket); follow it with `GET /v1/deliveries/{delivery_id}`.
#[utoipa::path(tag = "integrations", operation_id = "test_integration", security(("bearer" = [])),
    params(("id" = Uuid, Path)), responses(
    (status = 202, body = TestQueued),
    Unauthenticated, Forbidden, NotFound, IntegrationSwitchedOff,
))]
#[post("/v1/integrations/{id}/test")]
#[tracing::instrument(skip_all, fields(org_id = %who.org.org_id, integration_id = %id))]
pub async fn test(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    let queued = send_test(&state, &who, *id).await?;
    Ok(HttpResponse::Accepted().json(queued))
}

/// Queues an `integration.test` event for the organisation's integration `id` (the REST route and
/// the console both send tests through this): org admins only, not to a switched-off one.
pub async fn send_test(state: &AppState, who: &Principal, id: Uuid) -> ApiResult<TestQueued> {
    let integration = find(state, who, id).await?;
    who.require_admin()?;
    if !integration.enabled {
        return Err(switched_off());
    }
    let now = Utc::now();
    let event = events::test_event(who.org.org_id, integration.id, &who.actor(), now);
    let delivery = events::delivery_for(&integration, &event, None);
    state.store.enqueue_deliveries(&[delivery], now).await?;
    let recent = DeliveryFilter { limit: 20, ..DeliveryFilter::default() };
    let delivery_id = state
        .store
        .list_deliveries(who.org, integration.id, &recent)
        .await?
        .into_iter()
        .find(|d| d.event_id == event.id)
        .map(|d| d.id);
    tracing::info!(event_id = %event.id, "integration test queued");
    Ok(TestQueued { event_id: event.id, delivery_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_destination_alone_is_its_own_code_and_with_others_a_validation_failure() {
        let mut only_refused = Problems::default();
        only_refused.refused("url", "10.0.0.5 is a private address");
        assert_eq!(refusal(&only_refused).code, ErrorCode::DestinationRefused);

        let mut both = Problems::default();
        both.refused("url", "10.0.0.5 is a private address");
        both.invalid("name", "is required");
        both.invalid("name", "is required");
        let e = refusal(&both);
        assert_eq!(e.code, ErrorCode::Validation);
        assert_eq!(e.detail.as_deref(), Some("name is required; url 10.0.0.5 is a private address"));
        assert_eq!(e.errors.expect("errors").as_array().map(Vec::len), Some(2));
    }
}
