//! A ChromaDB client for the v2 HTTP API of the 1.x server, on reqwest.
//!
//! The surface follows the `chromadb` crate's (a `ChromaClient`, a `ChromaCollection` handle, the
//! same method names) so code written for that crate ports easily, while the routes are the v2 ones
//! the current server answers (`/api/v2/...`; the v1 routes answer 410). Embeddings are always
//! explicit: the client carries no embedding function.
//!
//! One connection pool per client (keep-alive), a timeout on every request, and a bounded number of
//! tries for answers that may pass (unreachable, timed out, 502/503/504). Every data operation of the
//! v2 API is idempotent for the same request (an `add` of an existing id does nothing), so any of them
//! may be retried. Every failure is a `ChromaError` with a kind.
//!
//! Depends only on reqwest, serde, serde_json and tokio's timer.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// Tries of one request, the first included.
pub const TRIES_MAX: u32 = 3;
/// The wait before the second try; doubled before each further one.
const RETRY_DELAY_FIRST: Duration = Duration::from_millis(50);
/// The longest excerpt of an error answer's body kept in an error.
const BODY_EXCERPT_BYTES_MAX: usize = 200;
const DATA_PREFIX: &str = "/api/v2/tenants/default_tenant/databases/default_database/collections";

/// Metadata of one record: keys to strings, numbers or booleans; a `null` in an update deletes a key.
pub type Metadata = Map<String, Value>;

/// What went wrong, by class.
#[derive(Clone, Debug, PartialEq)]
pub enum ErrorKind {
    /// No connection could be made.
    Unreachable,
    /// The server took longer than the client's timeout.
    Timeout,
    /// The server answered with an error status.
    Status { code: u16, body_excerpt: String },
    /// The server answered 2xx with something that is not the expected JSON.
    BadAnswer,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChromaError {
    pub kind: ErrorKind,
    /// The operation, e.g. `update`.
    pub operation: &'static str,
    /// The server's URL.
    pub url: String,
    pub detail: String,
}

impl fmt::Display for ChromaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.kind {
            ErrorKind::Unreachable => "unreachable".to_string(),
            ErrorKind::Timeout => "timed out".to_string(),
            ErrorKind::Status { code, body_excerpt } => format!("answered {code}: {body_excerpt}"),
            ErrorKind::BadAnswer => "answered something unexpected".to_string(),
        };
        write!(f, "chroma at {} ({}): {what}", self.url, self.operation)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for ChromaError {}

impl ChromaError {
    /// Whether another try may succeed.
    fn is_transient(&self) -> bool {
        match &self.kind {
            ErrorKind::Unreachable | ErrorKind::Timeout => true,
            ErrorKind::Status { code, .. } => matches!(code, 502..=504),
            ErrorKind::BadAnswer => false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ChromaClientOptions {
    /// The server, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    /// The longest one request may take.
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ChromaClientOptions {
    fn default() -> Self {
        ChromaClientOptions {
            url: "http://127.0.0.1:8000".to_string(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// A connection to one server; cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct ChromaClient {
    http: reqwest::Client,
    url: String,
}

/// A collection on the server, by its uuid (the data routes take the uuid, not the name).
#[derive(Clone, Debug)]
pub struct ChromaCollection {
    client: ChromaClient,
    id: String,
    name: String,
}

/// Records to add, upsert or update: `ids[i]` goes with `embeddings[i]` and `metadatas[i]`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CollectionEntries {
    pub ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<Vec<Vec<f32>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadatas: Option<Vec<Metadata>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<Vec<String>>,
}

/// What a `get` selects and returns. `include` names `embeddings`, `metadatas`, `documents`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GetOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
}

/// The answer of a `get`: parallel vectors, absent when not included.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct GetResult {
    pub ids: Vec<String>,
    #[serde(default)]
    pub embeddings: Option<Vec<Vec<f32>>>,
    #[serde(default)]
    pub metadatas: Option<Vec<Option<Metadata>>>,
    #[serde(default)]
    pub documents: Option<Vec<Option<String>>>,
}

#[derive(Deserialize)]
struct CollectionAnswer {
    id: String,
    name: String,
}

impl ChromaClient {
    pub fn new(options: ChromaClientOptions) -> Result<ChromaClient, ChromaError> {
        let url = options.url.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|error| ChromaError {
                kind: ErrorKind::Unreachable,
                operation: "connect",
                url: url.clone(),
                detail: error.to_string(),
            })?;
        Ok(ChromaClient { http, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's clock in nanoseconds: proves it answers.
    pub async fn heartbeat(&self) -> Result<u64, ChromaError> {
        let answer: Value = self
            .send("heartbeat", reqwest::Method::GET, "/api/v2/heartbeat", None)
            .await?;
        answer
            .get("nanosecond heartbeat")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.bad_answer("heartbeat", &answer))
    }

    pub async fn get_or_create_collection(
        &self,
        name: &str,
        metadata: Option<Metadata>,
    ) -> Result<ChromaCollection, ChromaError> {
        let mut body = serde_json::json!({ "name": name, "get_or_create": true });
        if let Some(metadata) = metadata {
            body["metadata"] = Value::Object(metadata);
        }
        let answer: CollectionAnswer = self
            .send(
                "get_or_create_collection",
                reqwest::Method::POST,
                DATA_PREFIX,
                Some(body),
            )
            .await?;
        Ok(self.handle(answer))
    }

    pub async fn get_collection(&self, name: &str) -> Result<ChromaCollection, ChromaError> {
        let path = format!("{DATA_PREFIX}/{name}");
        let answer: CollectionAnswer = self
            .send("get_collection", reqwest::Method::GET, &path, None)
            .await?;
        Ok(self.handle(answer))
    }

    pub async fn delete_collection(&self, name: &str) -> Result<(), ChromaError> {
        let path = format!("{DATA_PREFIX}/{name}");
        let _: Value = self
            .send("delete_collection", reqwest::Method::DELETE, &path, None)
            .await?;
        Ok(())
    }

    fn handle(&self, answer: CollectionAnswer) -> ChromaCollection {
        ChromaCollection {
            client: self.clone(),
            id: answer.id,
            name: answer.name,
        }
    }

    fn bad_answer(&self, operation: &'static str, answer: &Value) -> ChromaError {
        ChromaError {
            kind: ErrorKind::BadAnswer,
            operation,
            url: self.url.clone(),
            detail: excerpt(&answer.to_string()),
        }
    }

    /// Sends one request, with up to `TRIES_MAX` tries for transient failures.
    async fn send<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, ChromaError> {
        let mut delay = RETRY_DELAY_FIRST;
        let mut tries = 0;
        loop {
            tries += 1;
            match self
                .send_once(operation, method.clone(), path, body.as_ref())
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(error) if error.is_transient() && tries < TRIES_MAX => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(mut error) => {
                    if tries > 1 {
                        error.detail = format!("after {tries} tries; {}", error.detail);
                    }
                    return Err(error);
                }
            }
        }
    }

    async fn send_once<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ChromaError> {
        let failure = |kind: ErrorKind, detail: String| ChromaError {
            kind,
            operation,
            url: self.url.clone(),
            detail,
        };
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(body);
        }
        // A transport error, in sending or in reading the body: timed out, or the server unreachable.
        let transport = |error: reqwest::Error| {
            let kind = if error.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Unreachable
            };
            failure(kind, source_chain(&error))
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if !status.is_success() {
            let kind = ErrorKind::Status {
                code: status.as_u16(),
                body_excerpt: excerpt(&text),
            };
            return Err(failure(kind, String::new()));
        }
        serde_json::from_str(&text)
            .map_err(|error| failure(ErrorKind::BadAnswer, format!("{error}: {}", excerpt(&text))))
    }
}

impl ChromaCollection {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds records; an id already present is left as it is.
    pub async fn add(&self, entries: &CollectionEntries) -> Result<(), ChromaError> {
        self.write("add", "add", entries).await
    }

    /// Adds or replaces embeddings; metadata keys of an existing id are merged.
    pub async fn upsert(&self, entries: &CollectionEntries) -> Result<(), ChromaError> {
        self.write("upsert", "upsert", entries).await
    }

    /// Updates existing ids (a missing id is ignored); metadata merges, a `null` deletes its key.
    pub async fn update(&self, entries: &CollectionEntries) -> Result<(), ChromaError> {
        self.write("update", "update", entries).await
    }

    pub async fn get(&self, options: &GetOptions) -> Result<GetResult, ChromaError> {
        let body = serde_json::to_value(options).expect("get options serialise");
        self.client
            .send("get", reqwest::Method::POST, &self.route("get"), Some(body))
            .await
    }

    pub async fn count(&self) -> Result<usize, ChromaError> {
        self.client
            .send("count", reqwest::Method::GET, &self.route("count"), None)
            .await
    }

    /// Deletes the ids given, or those whose metadata matches `where_metadata`.
    pub async fn delete(
        &self,
        ids: Option<Vec<String>>,
        where_metadata: Option<Value>,
    ) -> Result<(), ChromaError> {
        let mut body = Map::new();
        if let Some(ids) = ids {
            body.insert("ids".to_string(), Value::from(ids));
        }
        if let Some(filter) = where_metadata {
            body.insert("where".to_string(), filter);
        }
        let _: Value = self
            .client
            .send(
                "delete",
                reqwest::Method::POST,
                &self.route("delete"),
                Some(Value::Object(body)),
            )
            .await?;
        Ok(())
    }

    async fn write(
        &self,
        operation: &'static str,
        route: &str,
        entries: &CollectionEntries,
    ) -> Result<(), ChromaError> {
        assert_parallel(entries);
        let body = serde_json::to_value(entries).expect("entries serialise");
        let _: Value = self
            .client
            .send(
                operation,
                reqwest::Method::POST,
                &self.route(route),
                Some(body),
            )
            .await?;
        Ok(())
    }

    fn route(&self, operation: &str) -> String {
        format!("{DATA_PREFIX}/{}/{operation}", self.id)
    }
}

/// The vectors of an entries value go together: one element per id.
fn assert_parallel(entries: &CollectionEntries) {
    let ids = entries.ids.len();
    assert!(entries.embeddings.as_ref().is_none_or(|e| e.len() == ids));
    assert!(entries.metadatas.as_ref().is_none_or(|m| m.len() == ids));
    assert!(entries.documents.as_ref().is_none_or(|d| d.len() == ids));
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.len() <= BODY_EXCERPT_BYTES_MAX {
        return text.to_string();
    }
    let mut end = BODY_EXCERPT_BYTES_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// An error with its causes, which say why a connection failed (refused, reset, ...).
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    let mut depth = 0;
    while let (Some(cause), true) = (source, depth < 8) {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
        depth += 1;
    }
    text
}
