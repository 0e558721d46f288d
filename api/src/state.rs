//! What every handler shares.

use std::sync::Arc;

use wbd_platform::Settings;
use wbd_queue::Queue;
use wbd_store::Store;

use crate::auth::TokenIssuer;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub queue: Queue,
    pub tokens: TokenIssuer,
    pub settings: Settings,
}
