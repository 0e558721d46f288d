//! Collectors: creation with a one-time enrollment token, enrollment by the collector itself,
//! listing with last-seen and version, revocation.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use wbd_store::{Collector, CollectorId, CollectorStatus, EnrollError, Enrollment, TenantId, TenantScope};
use wbd_wire::{EnrollRequest, EnrollResponse};

use crate::auth::Principal;
use crate::credentials::{hash_secret, new_enrollment_token};
use crate::error::{ApiError, ApiResult, ErrorCode, Problem};
use crate::input::{DisplayName, JsonObject, display_name};
use crate::params::TenantFilter;
use crate::responses::{BadRequest, Forbidden, NotFound, TooManyRequests, Unauthenticated, Unprocessable};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollector {
    /// Where it runs, e.g. `Contoso — AADC01`.
    #[schema(value_type = DisplayName)]
    pub name: String,
    /// Seconds between pushes, 1 to 86400 (default from the server settings).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400)]
    pub push_interval_secs: Option<u32>,
}

/// The status of a collector.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CollectorStatusName {
    Pending,
    Active,
    Revoked,
}

#[derive(Serialize, ToSchema)]
pub struct CollectorView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    /// `pending` (waiting for enrollment), `active` or `revoked`.
    #[schema(value_type = CollectorStatusName)]
    pub status: &'static str,
    /// Whether an active collector has missed its pushes.
    pub silent: bool,
    pub version: Option<String>,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub push_interval_secs: u32,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub enrollment_expires_at: Option<DateTime<Utc>>,
    /// Results the collector dropped from its spool (it was full), as last reported.
    pub spool_dropped: u64,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl CollectorView {
    fn new(c: Collector, now: DateTime<Utc>) -> Self {
        let silent = c.status == CollectorStatus::Active && c.silent_after.is_some_and(|t| t < now);
        CollectorView {
            id: c.id.0,
            tenant_id: c.tenant_id.0,
            name: c.name,
            status: c.status.as_str(),
            silent,
            version: c.version,
            hostname: c.hostname,
            os: c.os,
            push_interval_secs: c.push_interval_secs,
            last_seen_at: c.last_seen_at,
            enrolled_at: c.enrolled_at,
            enrollment_expires_at: c.enrollment_expires_at.filter(|_| c.status == CollectorStatus::Pending),
            spool_dropped: c.spool_dropped,
            created_at: c.created_at,
            revoked_at: c.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedCollector {
    pub collector: CollectorView,
    /// One-time token for `wbd-collector enroll --token`. Shown once.
    pub enrollment_token: String,
    pub enrollment_expires_at: DateTime<Utc>,
}

/// Create a collector for a tenant and get its one-time enrollment token.
#[utoipa::path(tag = "collectors", operation_id = "create_collector", request_body = CreateCollector, security(("bearer" = [])), params(("tenant_id" = Uuid, Path)), responses(
    (status = 201, body = CreatedCollector),
    BadRequest, Unauthenticated, Forbidden, NotFound, Unprocessable,
))]
#[post("/v1/tenants/{tenant_id}/collectors")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    tenant_id: web::Path<Uuid>,
    body: JsonObject<CreateCollector>,
) -> ApiResult<HttpResponse> {
    let tenant = TenantId(tenant_id.into_inner());
    let created = create_collector(&state, &who, tenant, &body.name, body.push_interval_secs).await?;
    Ok(HttpResponse::Created().json(created))
}

/// A new collector of the tenant with its one-time enrollment token (the REST route and the
/// console both create through this): org admins only; the token is stored as a hash.
pub async fn create_collector(
    state: &AppState,
    who: &Principal,
    tenant: TenantId,
    name: &str,
    push_interval_secs: Option<u32>,
) -> ApiResult<CreatedCollector> {
    who.require_admin()?;
    let name = display_name("name", name)?;
    let interval = push_interval_secs.unwrap_or(state.settings.collectors.push_interval_secs);
    if !(1..=86_400).contains(&interval) {
        return Err(ApiError::new(ErrorCode::Validation, "`push_interval_secs` must be between 1 and 86400"));
    }
    let scope = TenantScope { org_id: who.org.org_id, tenant_id: tenant };
    state.store.get_tenant(who.org, scope.tenant_id).await?.ok_or_else(|| ApiError::not_found("tenant"))?;
    let now = Utc::now();
    let expires =
        now + Duration::seconds(i64::try_from(state.settings.auth.enrollment_ttl_secs).unwrap_or(86_400));
    let (token, hash) = new_enrollment_token();
    let collector = state.store.create_collector(scope, &name, &hash, expires, interval, now).await?;
    Ok(CreatedCollector {
        collector: CollectorView::new(collector, now),
        enrollment_token: token,
        enrollment_expires_at: expires,
    })
}

/// Enroll: a collector registers its public key with its one-time token.
#[utoipa::path(tag = "collectors", request_body = EnrollRequestDoc, responses(
    (status = 201, body = EnrollResponseDoc),
    BadRequest,
    (status = 401, description = "Unknown or expired token", body = Problem, content_type = "application/problem+json"),
    (status = 409, description = "Token already used", body = Problem, content_type = "application/problem+json"),
    Unprocessable,
    TooManyRequests,
))]
#[post("/v1/collectors/enroll")]
pub async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonObject<EnrollRequest>,
) -> ApiResult<HttpResponse> {
    let now = Utc::now();
    let token_hash = hash_secret(body.enrollment_token.trim());
    state.rate_limits.check_secret_attempt(&req, &token_hash, now).await?;
    let public_key =
        URL_SAFE_NO_PAD.decode(body.public_key.trim()).ok().filter(|k| k.len() == 32).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Validation,
                "`public_key` must be a raw Ed25519 key (32 bytes), base64url",
            )
        })?;
    let hostname = display_name("hostname", &body.hostname)?;
    let version = display_name("version", &body.version)?;
    // The first push is due within one interval; until we know the interval, use the default.
    let silence = state.settings.collectors.silence_after(state.settings.collectors.push_interval_secs);
    let enrollment = Enrollment {
        enrollment_token_hash: token_hash,
        public_key,
        hostname,
        version,
        now,
        silent_after: now + Duration::from_std(silence).unwrap_or(Duration::hours(1)),
    };
    let collector = state.store.enroll_collector(&enrollment).await?.map_err(|e| match e {
        EnrollError::UnknownToken => {
            ApiError::new(ErrorCode::EnrollmentTokenInvalid, "no collector waits for this token")
        }
        EnrollError::Expired => {
            ApiError::new(ErrorCode::EnrollmentTokenExpired, "ask for a new collector and token")
        }
        EnrollError::AlreadyUsed => {
            ApiError::new(ErrorCode::EnrollmentTokenUsed, "each token enrolls one collector once")
        }
    })?;
    tracing::info!(collector_id = %collector.id, tenant_id = %collector.tenant_id, "collector enrolled");
    Ok(HttpResponse::Created().json(EnrollResponse {
        collector_id: collector.id.0,
        tenant_id: collector.tenant_id.0,
        push_interval_secs: collector.push_interval_secs,
    }))
}

/// The wire type `EnrollRequest`, described for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EnrollRequestDoc {
    enrollment_token: String,
    /// Raw 32-byte Ed25519 public key, base64url without padding.
    #[schema(pattern = r"^\s*[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]\s*$")]
    public_key: String,
    #[schema(value_type = DisplayName)]
    hostname: String,
    /// The collector's version.
    #[schema(value_type = DisplayName)]
    version: String,
}

/// The wire type `EnrollResponse`, described for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct EnrollResponseDoc {
    collector_id: Uuid,
    tenant_id: Uuid,
    push_interval_secs: u32,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this tenant's collectors.
    #[param(value_type = Option<Uuid>)]
    pub tenant_id: Option<TenantFilter>,
}

/// Collectors with last-seen time and version.
#[utoipa::path(tag = "collectors", operation_id = "list_collectors", security(("bearer" = [])), params(ListQuery), responses(
    (status = 200, body = Vec<CollectorView>),
    BadRequest, Unauthenticated, NotFound,
))]
#[get("/v1/collectors")]
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let tenant = super::tenants::tenant_filter(&state, &who, query.into_inner().tenant_id).await?;
    let now = Utc::now();
    let collectors: Vec<CollectorView> = state
        .store
        .list_collectors(who.org, tenant)
        .await?
        .into_iter()
        .map(|c| CollectorView::new(c, now))
        .collect();
    Ok(HttpResponse::Ok().json(collectors))
}

/// One collector.
#[utoipa::path(tag = "collectors", operation_id = "get_collector", security(("bearer" = [])), params(("id" = Uuid, Path)), responses(
    (status = 200, body = CollectorView),
    Unauthenticated, NotFound,
))]
#[get("/v1/collectors/{id}")]
pub async fn get(state: web::Data<AppState>, who: Principal, id: web::Path<Uuid>) -> ApiResult<HttpResponse> {
    let collector = state
        .store
        .get_collector(who.org, CollectorId(id.into_inner()))
        .await?
        .ok_or_else(|| ApiError::not_found("collector"))?;
    Ok(HttpResponse::Ok().json(CollectorView::new(collector, Utc::now())))
}

/// Revoke a collector: its pushes are refused from now on.
#[utoipa::path(tag = "collectors", operation_id = "revoke_collector", security(("bearer" = [])), params(("id" = Uuid, Path)), responses(
    (status = 200, body = CollectorView),
    Unauthenticated, Forbidden, NotFound,
))]
#[post("/v1/collectors/{id}/revoke")]
pub async fn revoke(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    who.require_admin()?;
    let now = Utc::now();
    let collector = state
        .store
        .revoke_collector(who.org, CollectorId(id.into_inner()), now)
        .await?
        .ok_or_else(|| ApiError::not_found("collector"))?;
    Ok(HttpResponse::Ok().json(CollectorView::new(collector, now)))
}
