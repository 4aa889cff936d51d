//! The `axum` example's application (`examples::servers::todo`: axum's
//! `Router` served by hyper's connection builder on this runtime, the code
//! the example runs), driven over HTTP by `ureq` in another thread, and by
//! hyper's HTTP/2 client on tokio: the JSON routes, the shared list across
//! connections, and every error answered as JSON with its status.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use integration_tests::{on_runtime, tokio_rt};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(120);

/// How long a client waits for an answer before failing.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves the application on this runtime while `client` runs on its own
/// thread with the server's address; returns the client's result.
async fn with_server<T: Send + 'static>(client: impl FnOnce(Api) -> T + Send + 'static) -> T {
    let listener = net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = runtime::spawn(examples::servers::todo::serve(listener));
    let out = runtime::spawn_blocking(move || client(Api::new(addr)))
        .await
        .unwrap();
    server.abort();
    out
}

/// A `ureq` client of the API.
#[derive(Clone)]
struct Api {
    addr: SocketAddr,
    agent: ureq::Agent,
}

/// One answer: its status, `content-type` (if any), and body (JSON, or
/// `Null` when empty).
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: Option<String>,
    location: Option<String>,
    allow: Option<String>,
    body: Value,
}

impl Api {
    fn new(addr: SocketAddr) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(IO_TIMEOUT))
            .build()
            .into();
        Api { addr, agent }
    }

    /// `method path`, with `body` (sent as JSON, unless `content_type`
    /// says otherwise).
    fn call_with(&self, method: &str, path: &str, body: Option<&str>, content_type: &str) -> Reply {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path));
        let result = match body {
            Some(body) => self.agent.run(
                request
                    .header("content-type", content_type)
                    .body(body.to_string())
                    .unwrap(),
            ),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let (content_type, location, allow) =
            (header("content-type"), header("location"), header("allow"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        Reply {
            status,
            content_type,
            location,
            allow,
            body,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.call_with(method, path, body, "application/json")
    }

    /// `POST /items` with `title`; the new item.
    fn create(&self, title: &str) -> Value {
        let reply = self.call(
            "POST",
            "/items",
            Some(&json!({ "title": title }).to_string()),
        );
        assert_eq!(reply.status, 201, "{reply:?}");
        let id = reply.body["id"].as_u64().unwrap();
        assert_eq!(reply.location.as_deref(), Some(&*format!("/items/{id}")));
        reply.body
    }
}

/// `reply` is the JSON error `status`, `{"error": ".."}` whose message
/// contains `says`.
#[track_caller]
fn assert_error(reply: &Reply, status: u16, says: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(
        reply.content_type.as_deref(),
        Some("application/json"),
        "{reply:?}"
    );
    let message = reply.body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {reply:?}"));
    assert!(message.contains(says), "{message:?} does not say {says:?}");
    assert_eq!(reply.body.as_object().unwrap().len(), 1, "{reply:?}");
}

#[test]
fn items_are_created_listed_fetched_changed_and_deleted() {
    on_runtime(LIMIT, || {
        with_server(|api| {
            let empty = api.call("GET", "/items", None);
            assert_eq!(empty.status, 200);
            assert_eq!(empty.content_type.as_deref(), Some("application/json"));
            assert_eq!(empty.body, json!([]));

            let milk = api.create("milk");
            assert_eq!(milk, json!({ "id": 1, "title": "milk", "done": false }));
            let bread = api.call(
                "POST",
                "/items",
                Some(r#"{"title":"  bread ","done":true}"#),
            );
            assert_eq!(bread.status, 201);
            assert_eq!(
                bread.body,
                json!({ "id": 2, "title": "bread", "done": true })
            );

            let all = api.call("GET", "/items", None);
            assert_eq!(all.body, json!([milk, bread.body]));
            let one = api.call("GET", "/items/1", None);
            assert_eq!(one.status, 200);
            assert_eq!(one.body, milk);

            let done = api.call("PATCH", "/items/1", Some(r#"{"done":true}"#));
            assert_eq!(done.status, 200);
            assert_eq!(done.body, json!({ "id": 1, "title": "milk", "done": true }));
            let renamed = api.call("PATCH", "/items/1", Some(r#"{"title":"oat milk"}"#));
            assert_eq!(
                renamed.body,
                json!({ "id": 1, "title": "oat milk", "done": true })
            );
            assert_eq!(api.call("GET", "/items/1", None).body, renamed.body);

            let deleted = api.call("DELETE", "/items/1", None);
            assert_eq!(deleted.status, 204);
            assert_eq!(deleted.body, Value::Null);
            assert_error(&api.call("GET", "/items/1", None), 404, "no item 1");
            assert_error(&api.call("DELETE", "/items/1", None), 404, "no item 1");
            assert_error(&api.call("PATCH", "/items/1", Some("{}")), 404, "no item 1");
            assert_eq!(api.call("GET", "/items", None).body, json!([bread.body]));

            // Ids are never reused.
            assert_eq!(api.create("eggs")["id"], 3);
        })
    });
}

#[test]
fn errors_are_json_with_their_status() {
    on_runtime(LIMIT, || {
        with_server(|api| {
            // Bodies that are not the JSON asked for.
            assert_error(&api.call("POST", "/items", Some("{\"title\":")), 400, "");
            assert_error(&api.call("POST", "/items", Some("not json")), 400, "");
            assert_error(
                &api.call("POST", "/items", Some(r#"{"title":7}"#)),
                400,
                "title",
            );
            assert_error(
                &api.call("POST", "/items", Some(r#"{"done":true}"#)),
                400,
                "title",
            );
            assert_error(
                &api.call("POST", "/items", Some(r#"{"title":"x","colour":"red"}"#)),
                400,
                "colour",
            );
            assert_error(
                &api.call_with("POST", "/items", Some(r#"{"title":"x"}"#), "text/plain"),
                400,
                "Content-Type",
            );
            assert_error(
                &api.call("POST", "/items", Some(r#"{"title":" "}"#)),
                400,
                "empty",
            );
            // Nothing above was stored.
            assert_eq!(api.call("GET", "/items", None).body, json!([]));

            api.create("milk");
            assert_error(
                &api.call("PATCH", "/items/1", Some(r#"{"title":""}"#)),
                400,
                "empty",
            );
            assert_error(
                &api.call("PATCH", "/items/1", Some(r#"{"done":"yes"}"#)),
                400,
                "done",
            );
            // Ids that are not numbers.
            assert_error(&api.call("GET", "/items/abc", None), 400, "abc");
            assert_error(&api.call("DELETE", "/items/-1", None), 400, "-1");
            assert_error(
                &api.call("GET", "/items/99999999999999999999999", None),
                400,
                "",
            );
            // Unknown items, routes and methods.
            assert_error(&api.call("GET", "/items/2", None), 404, "no item 2");
            assert_error(
                &api.call("GET", "/nowhere", None),
                404,
                "no route for GET /nowhere",
            );
            assert_error(&api.call("GET", "/items/1/more", None), 404, "no route");
            let put = api.call("PUT", "/items/1", Some("{}"));
            assert_error(&put, 405, "PUT is not allowed on /items/1");
            assert!(put.allow.as_deref().unwrap().contains("PATCH"), "{put:?}");
            assert_error(&api.call("DELETE", "/items", None), 405, "DELETE");
            // The item survived all of it.
            let all = api.call("GET", "/items", None);
            assert_eq!(
                all.body,
                json!([{ "id": 1, "title": "milk", "done": false }])
            );
        })
    });
}

/// Several clients, each on its own connection and thread, add to one
/// list: every item is there once, with its own id.
#[test]
fn connections_share_one_list() {
    const CLIENTS: usize = 4;
    const EACH: usize = 25;
    on_runtime(LIMIT, || {
        with_server(|api| {
            let threads: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    // Its own agent: its own connection.
                    let api = Api::new(api.addr);
                    std::thread::spawn(move || {
                        (0..EACH)
                            .map(|i| {
                                api.create(&format!("client {c} item {i}"))["id"]
                                    .as_u64()
                                    .unwrap()
                            })
                            .collect::<Vec<u64>>()
                    })
                })
                .collect();
            let ids: BTreeSet<u64> = threads
                .into_iter()
                .flat_map(|t| t.join().unwrap())
                .collect();
            let n = (CLIENTS * EACH) as u64;
            assert_eq!(ids, (1..=n).collect::<BTreeSet<u64>>());
            let all = api.call("GET", "/items", None).body;
            let titles: BTreeSet<String> = all
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["title"].as_str().unwrap().to_string())
                .collect();
            let expected: BTreeSet<String> = (0..CLIENTS)
                .flat_map(|c| (0..EACH).map(move |i| format!("client {c} item {i}")))
                .collect();
            assert_eq!(titles, expected);
        })
    });
}

/// The same router over HTTP/2 (prior knowledge), with concurrent streams:
/// each stream's handler runs as a task that `runtime::hyper::Executor`
/// spawned.
#[test]
fn http2_streams_share_the_list_too() {
    const STREAMS: u64 = 50;
    on_runtime(LIMIT, || {
        with_server(|api| {
            tokio_rt().block_on(async move {
                let tcp = tokio::net::TcpStream::connect(api.addr).await.unwrap();
                let (sender, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
                    TokioExecutor::new(),
                    TokioIo::new(tcp),
                )
                .await
                .unwrap();
                tokio::spawn(conn);
                let mut tasks = Vec::new();
                for i in 0..STREAMS {
                    let mut sender = sender.clone();
                    tasks.push(tokio::spawn(async move {
                        let body = json!({ "title": format!("stream {i}") }).to_string();
                        let req = hyper::Request::post(format!("http://{}/items", api.addr))
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        let res = sender.send_request(req).await.unwrap();
                        assert_eq!(res.status(), 201);
                        let body = res.into_body().collect().await.unwrap().to_bytes();
                        let item: Value = serde_json::from_slice(&body).unwrap();
                        assert_eq!(item["title"], format!("stream {i}"));
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                let mut sender = sender.clone();
                let req = hyper::Request::get(format!("http://{}/items", api.addr))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let res = sender.send_request(req).await.unwrap();
                assert_eq!(res.version(), hyper::Version::HTTP_2);
                let body = res.into_body().collect().await.unwrap().to_bytes();
                let all: Value = serde_json::from_slice(&body).unwrap();
                let ids: BTreeSet<u64> = all
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|item| item["id"].as_u64().unwrap())
                    .collect();
                assert_eq!(ids, (1..=STREAMS).collect::<BTreeSet<u64>>());
            })
        })
    });
}
