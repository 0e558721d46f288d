//! One way to page through every listing: `?cursor=` (from the previous page's `next_cursor`)
//! and `?limit=` in, a [`Page`] out. Listings are newest first and keyset-paged by id.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

use crate::params::query_value;

/// `limit` query values: default and ceiling.
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;

query_value!(
    /// `limit`: a page size, 1 to 200 (default 50).
    PageSize(u32),
    |text| text.parse().ok().filter(|n| (1..=MAX_PAGE).contains(n)),
    format_args!("`limit` must be between 1 and {MAX_PAGE}"),
);

impl Default for PageSize {
    fn default() -> Self {
        PageSize(DEFAULT_PAGE)
    }
}

query_value!(
    /// `cursor`: where a page starts, from `next_cursor` of the page before.
    PageCursor(Uuid),
    |text| Uuid::parse_str(&text).ok(),
    "`cursor` must be a value from next_cursor",
);

query_value!(
    /// `before`: what `cursor` was called where a listing paged with `before` (deprecated).
    LegacyBefore(Uuid),
    |text| Uuid::parse_str(&text).ok(),
    "`before` must be a value from next_cursor",
);

impl PageSize {
    pub fn get(self) -> u32 {
        self.0
    }
}

/// The page a listing answers: its items and, when there may be more, where the next page
/// starts.
#[derive(Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The page of `rows` read with `limit`, each shown with `view`: a full page may have a next
    /// one, which starts after its last row (`id`).
    pub fn of<R>(rows: Vec<R>, limit: PageSize, id: impl Fn(&R) -> Uuid, view: impl FnMut(R) -> T) -> Self {
        let full = rows.len() == limit.get() as usize;
        let next_cursor = rows.last().filter(|_| full).map(|last| id(last).to_string());
        Page { items: rows.into_iter().map(view).collect(), next_cursor }
    }
}

/// An item of a listing, and the name its page has in the OpenAPI document.
pub trait Listed: ToSchema {
    const PAGE_SCHEMA: &'static str;
}

// By hand rather than derived: a derived generic schema would be named `Page_<Item>`, and the
// pages keep the names they had (`FindingPage`, …).
impl<T: Listed> PartialSchema for Page<T> {
    fn schema() -> RefOr<Schema> {
        let items = ArrayBuilder::new().items(Ref::from_schema_name(T::name()));
        let next_cursor = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .description(Some("Pass as `cursor` to get the next page; absent on the last page."));
        ObjectBuilder::new()
            .property("items", items)
            .required("items")
            .property("next_cursor", next_cursor)
            .into()
    }
}

impl<T: Listed> ToSchema for Page<T> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(T::PAGE_SCHEMA)
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}
