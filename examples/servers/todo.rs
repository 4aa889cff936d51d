//! The `axum` example's application: a JSON API over an in-memory todo
//! list, as an axum [`Router`], and the accept loop that serves it through
//! hyper's connection builder on this runtime.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /items` | `200`, every item: `[{"id":1,"title":"milk","done":false}]` |
//! | `POST /items` with `{"title":"milk"}` (and optionally `"done":true`) | `201`, the new item, `location: /items/1` |
//! | `GET /items/{id}` | `200`, the item |
//! | `PATCH /items/{id}` with `{"done":true}` and/or `{"title":".."}` | `200`, the changed item |
//! | `DELETE /items/{id}` | `204` |
//!
//! Every error is JSON too, `{"error":"..."}`: `404` for an unknown item or
//! route, `400` for a body that is not the JSON asked for, an empty title
//! or an id that is not a number, `405` for a method a route lacks.
//!
//! # Why `Arc<Mutex<..>>` on a single-threaded runtime
//!
//! Nothing here ever runs on another thread: each connection is a task on
//! the runtime that accepted it, and [`runtime::hyper::Executor`] does not
//! ask for `Send`. axum does: a handler is only a [`Handler`] if its
//! future is `Send` (and the router's state `Send + Sync`), because axum's
//! `Router` is written for multi-threaded executors. So the state is an
//! `Arc<Mutex<..>>` rather than an `Rc<RefCell<..>>`, and the lock is never
//! held across an `.await` (it is never contended either: one thread).
//!
//! [`Handler`]: axum::handler::Handler

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};

/// One entry of the list.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Item {
    /// Given by the server, never reused.
    pub id: u64,
    /// What to do; never empty.
    pub title: String,
    /// Whether it is done.
    pub done: bool,
}

/// The body of `POST /items`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewItem {
    title: String,
    #[serde(default)]
    done: bool,
}

/// The body of `PATCH /items/{id}`: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    title: Option<String>,
    done: Option<bool>,
}

/// The list, shared by every connection (see the module docs for why it
/// is an `Arc<Mutex<..>>`).
#[derive(Clone, Debug, Default)]
pub struct Store {
    inner: Arc<Mutex<Items>>,
}

#[derive(Debug, Default)]
struct Items {
    next_id: u64,
    items: BTreeMap<u64, Item>,
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Items> {
        // A handler that panicked cannot have left the map half-changed
        // (each change is one insert or remove), so a poisoned lock is
        // still good.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An error answer: a status and `{"error": message}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn no_item(id: u64) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("no item {id}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, body).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        // axum says 415 (no JSON content type), 422 (JSON of the wrong
        // shape) or 400 (not JSON); to this API they are all a bad request,
        // and the text says which.
        ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

/// A title as stored: trimmed, and not empty.
fn title(raw: String) -> Result<String, ApiError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the title must not be empty",
        ));
    }
    Ok(trimmed.to_string())
}

async fn list(State(store): State<Store>) -> Json<Vec<Item>> {
    Json(store.lock().items.values().cloned().collect())
}

async fn create(
    State(store): State<Store>,
    body: Result<Json<NewItem>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(new) = body?;
    let title = title(new.title)?;
    let mut items = store.lock();
    items.next_id += 1;
    let item = Item {
        id: items.next_id,
        title,
        done: new.done,
    };
    items.items.insert(item.id, item.clone());
    let location = format!("/items/{}", item.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(item),
    ))
}

async fn fetch(
    State(store): State<Store>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<Item>, ApiError> {
    let Path(id) = id?;
    let items = store.lock();
    let item = items.items.get(&id).ok_or(ApiError::no_item(id))?;
    Ok(Json(item.clone()))
}

async fn change(
    State(store): State<Store>,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<Change>, JsonRejection>,
) -> Result<Json<Item>, ApiError> {
    let Path(id) = id?;
    let Json(change) = body?;
    let new_title = change.title.map(title).transpose()?;
    let mut items = store.lock();
    let item = items.items.get_mut(&id).ok_or(ApiError::no_item(id))?;
    if let Some(t) = new_title {
        item.title = t;
    }
    if let Some(done) = change.done {
        item.done = done;
    }
    Ok(Json(item.clone()))
}

async fn delete(
    State(store): State<Store>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    match store.lock().items.remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::no_item(id)),
    }
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn bad_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// The application: the routes above on a fresh, empty list.
pub fn router() -> Router {
    Router::new()
        .route("/items", get(list).post(create))
        .route("/items/{id}", get(fetch).patch(change).delete(delete))
        .fallback(no_route)
        .method_not_allowed_fallback(bad_method)
        .with_state(Store::default())
}

/// Serves [`router`] on every connection `listener` accepts, each on its
/// own task of the current runtime; never returns.
///
/// axum's own `axum::serve` needs tokio's runtime; here the router, a tower
/// `Service`, goes to hyper's connection builder (HTTP/1.1, and HTTP/2 with
/// prior knowledge) through hyper-util's [`TowerToHyperService`], with this
/// runtime's [`runtime::hyper::Executor`] and [`runtime::hyper::Timer`],
/// and `net::TcpStream` as the connection (net's `hyper` feature).
pub async fn serve(listener: net::TcpListener) {
    let app = router();
    let builder = crate::hyper_builder();
    loop {
        let (stream, _) = crate::accept(&listener, "axum").await;
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        // Each connection gets its own handle on the router (the store
        // inside is shared).
        let service = TowerToHyperService::new(app.clone());
        runtime::spawn(async move {
            if let Err(e) = builder.serve_connection(stream, service).await {
                eprintln!("axum: connection ended: {e}");
            }
        });
    }
}
