//! The audit log: who changed the organisation's rule configuration, what (before and after)
//! and when; newest first, a page at a time.

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use wbd_store::AuditEntry;

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::paging::{Listed, Page, PageCursor, PageSize};
use crate::responses::{BadRequest, Unauthenticated};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct AuditEntryView {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub actor: String,
    /// `rule_setting.put`, `rule_setting.delete`, `custom_rule.put`, `custom_rule.delete`.
    pub action: String,
    pub target: String,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    pub at: DateTime<Utc>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        AuditEntryView {
            id: e.id,
            tenant_id: e.tenant_id.map(|t| t.0),
            actor: e.actor,
            action: e.action,
            target: e.target,
            before: e.before,
            after: e.after,
            at: e.at,
        }
    }
}

/// A page of the audit log.
pub type AuditPage = Page<AuditEntryView>;

impl Listed for AuditEntryView {
    const PAGE_SCHEMA: &'static str = "AuditPage";
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// From `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    pub cursor: Option<PageCursor>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

/// Who changed the organisation's rule configuration, what and when; newest first.
#[utoipa::path(tag = "rules", operation_id = "audit_log", security(("bearer" = [])), params(AuditQuery), responses(
    (status = 200, body = AuditPage),
    BadRequest, Unauthenticated,
))]
#[get("/v1/audit-log")]
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    let limit = q.limit.unwrap_or_default();
    let entries = state.store.list_audit_log(who.org, q.cursor.map(|c| c.0), limit.get()).await?;
    Ok(HttpResponse::Ok().json(AuditPage::of(entries, limit, |e| e.id, AuditEntryView::from)))
}
