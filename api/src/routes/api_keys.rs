//! API keys of the caller's organisation (org admins only).

use actix_web::{HttpResponse, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use wbd_store::{ApiKey, ApiKeyId, Role};

use crate::auth::Principal;
use crate::credentials::new_api_key;
use crate::error::{ApiError, ApiResult};
use crate::input::{DisplayName, JsonObject, display_name};
use crate::responses::{BadRequest, Forbidden, NotFound, Unauthenticated, Unprocessable};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// What the key is for, e.g. `PSA sync`.
    #[schema(value_type = DisplayName)]
    pub name: String,
    #[schema(example = "technician")]
    pub role: RoleDto,
}

/// `org_admin`, `technician` or `read_only`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleDto {
    OrgAdmin,
    Technician,
    ReadOnly,
}

impl From<RoleDto> for Role {
    fn from(r: RoleDto) -> Role {
        match r {
            RoleDto::OrgAdmin => Role::OrgAdmin,
            RoleDto::Technician => Role::Technician,
            RoleDto::ReadOnly => Role::ReadOnly,
        }
    }
}

impl From<Role> for RoleDto {
    fn from(r: Role) -> RoleDto {
        match r {
            Role::OrgAdmin => RoleDto::OrgAdmin,
            Role::Technician => RoleDto::Technician,
            Role::ReadOnly => RoleDto::ReadOnly,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    pub role: RoleDto,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyView {
    fn from(k: ApiKey) -> Self {
        ApiKeyView {
            id: k.id.0,
            name: k.name,
            role: k.role.into(),
            prefix: k.prefix,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKeyView,
    /// The secret key. Shown once; only its hash is stored.
    pub key: String,
}

/// Create an API key.
#[utoipa::path(tag = "api-keys", operation_id = "create_api_key", request_body = CreateApiKey, security(("bearer" = [])), responses(
    (status = 201, body = CreatedApiKey),
    BadRequest, Unauthenticated, Forbidden, Unprocessable,
))]
#[post("/v1/api-keys")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject<CreateApiKey>,
) -> ApiResult<HttpResponse> {
    who.require_admin()?;
    let name = display_name("name", &body.name)?;
    let minted = new_api_key();
    let key = state
        .store
        .create_api_key(who.org, &name, body.role.into(), &minted.prefix, &minted.hash, Utc::now())
        .await?;
    Ok(HttpResponse::Created().json(CreatedApiKey { api_key: key.into(), key: minted.secret }))
}

/// List the organisation's API keys.
#[utoipa::path(tag = "api-keys", operation_id = "list_api_keys", security(("bearer" = [])), responses(
    (status = 200, body = Vec<ApiKeyView>),
    Unauthenticated, Forbidden,
))]
#[get("/v1/api-keys")]
pub async fn list(state: web::Data<AppState>, who: Principal) -> ApiResult<HttpResponse> {
    who.require_admin()?;
    let keys: Vec<ApiKeyView> =
        state.store.list_api_keys(who.org).await?.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(keys))
}

/// Revoke an API key; access tokens issued for it stop working at once.
#[utoipa::path(tag = "api-keys", operation_id = "revoke_api_key", security(("bearer" = [])), params(("id" = Uuid, Path)), responses(
    (status = 200, body = ApiKeyView),
    Unauthenticated, Forbidden, NotFound,
))]
#[post("/v1/api-keys/{id}/revoke")]
pub async fn revoke(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<Uuid>,
) -> ApiResult<HttpResponse> {
    who.require_admin()?;
    let key = state
        .store
        .revoke_api_key(who.org, ApiKeyId(id.into_inner()), Utc::now())
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    state.api_keys.forget(key.id);
    Ok(HttpResponse::Ok().json(ApiKeyView::from(key)))
}
