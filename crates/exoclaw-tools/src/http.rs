//! `http_fetch`: one http(s) request, its status, its headers that matter, and its body as text —
//! HTML rendered readable, binary bodies described rather than shown. The body is read as a stream
//! and reading stops at the size cap, so a huge or endless response cannot exhaust memory.

use crate::output::{clip_text, looks_binary};
use async_trait::async_trait;
use exoclaw_core::{Resource, ToolContext, ToolError, TypedTool};
use exoclaw_types::ToolEffect;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The width HTML is rendered to; wide enough that prose is rarely re-wrapped.
const HTML_WIDTH: usize = 100;

/// Arguments of `http_fetch`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpFetchArgs {
    /// The URL to request; only `http://` and `https://` URLs.
    pub url: String,
    /// The HTTP method: GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS. Default GET.
    pub method: Option<String>,
    /// Request headers, name to value.
    pub headers: Option<BTreeMap<String, String>>,
    /// The request body, sent as given (set a `content-type` header to match).
    pub body: Option<String>,
    /// Seconds before the request, body included, is given up. Default 30, at most 300.
    #[schemars(range(min = 1, max = 300))]
    pub timeout_secs: Option<u64>,
    /// The most bytes of the response body to read; the rest is cut off. Default and upper bound
    /// 2,000,000.
    #[schemars(range(min = 1))]
    pub max_bytes: Option<usize>,
}

/// `http_fetch`: an http(s) request whose status and body (HTML as text, size-capped) come back to
/// the model.
#[derive(Debug, Clone)]
pub struct HttpFetch {
    /// The client, or why it could not be built (reported on the first call, not at start-up).
    client: Result<reqwest::Client, String>,
    default_timeout: Duration,
    max_timeout: Duration,
    max_body_bytes: usize,
    max_output_bytes: usize,
}

impl Default for HttpFetch {
    fn default() -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("exoclaw/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string());
        Self::with_client_result(client)
    }
}

impl HttpFetch {
    /// The tool using `client` (proxies, certificates, redirect policy are the client's).
    pub fn with_client(client: reqwest::Client) -> Self {
        Self::with_client_result(Ok(client))
    }

    fn with_client_result(client: Result<reqwest::Client, String>) -> Self {
        Self {
            client,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(300),
            max_body_bytes: 2_000_000,
            max_output_bytes: 100_000,
        }
    }

    /// Caps the text handed back to the model at `bytes` (default 100,000), after HTML rendering.
    pub fn with_max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }
}

#[async_trait]
impl TypedTool for HttpFetch {
    type Args = HttpFetchArgs;
    const NAME: &'static str = "http_fetch";

    fn description(&self) -> String {
        "Make an HTTP request to an http:// or https:// URL and get the status, content type and body. \
         HTML pages come back as readable text with numbered link references; binary bodies are \
         described, not shown. Non-2xx statuses are reported, not errors. Long bodies are cut off \
         with a marker."
            .into()
    }

    fn effect(&self) -> ToolEffect {
        ToolEffect::External
    }

    fn resources(&self, args: &HttpFetchArgs) -> Vec<Resource> {
        // A URL that does not parse names no host; the call then fails before anything is sent.
        let host = Url::parse(&args.url).ok().and_then(|url| url.host_str().map(str::to_owned));
        host.map(Resource::Host).into_iter().collect()
    }

    async fn run(&self, args: HttpFetchArgs, ctx: &ToolContext) -> Result<String, ToolError> {
        let client = self.client.as_ref().map_err(|e| ToolError::Failed(format!("no HTTP client: {e}")))?;
        let url = Url::parse(&args.url)
            .map_err(|e| ToolError::InvalidArguments(format!("`{}` is not a valid URL: {e}", args.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ToolError::Refused(format!(
                "only http:// and https:// URLs can be fetched, not `{}:`",
                url.scheme()
            )));
        }
        let method = parse_method(args.method.as_deref())?;
        let headers = parse_headers(args.headers.as_ref())?;
        let timeout = match args.timeout_secs {
            None => self.default_timeout,
            Some(0) => return Err(ToolError::InvalidArguments("`timeout_secs` must be at least 1".into())),
            Some(s) if Duration::from_secs(s) > self.max_timeout => {
                return Err(ToolError::InvalidArguments(format!(
                    "`timeout_secs` may be at most {}",
                    self.max_timeout.as_secs()
                )));
            }
            Some(s) => Duration::from_secs(s),
        };
        let cap = args.max_bytes.unwrap_or(self.max_body_bytes).clamp(1, self.max_body_bytes);

        let mut request = client.request(method.clone(), url.clone()).headers(headers);
        if let Some(body) = args.body {
            request = request.body(body);
        }
        let fetch = async {
            let mut response = request.send().await.map_err(|e| send_failure(&url, &e))?;
            let mut body = Vec::new();
            let mut cut = false;
            while let Some(chunk) = response.chunk().await.map_err(|e| send_failure(&url, &e))? {
                let room = cap - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    cut = true;
                    // Dropping the response here closes the connection: nothing more is read.
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, ToolError>(Fetched { response, body, cut })
        };
        let fetched = tokio::select! {
            done = tokio::time::timeout(timeout, fetch) => done.map_err(|_| ToolError::Timeout(timeout))??,
            () = ctx.cancel.cancelled() => return Err(ToolError::Cancelled),
        };
        Ok(self.report(&url, &method, fetched))
    }
}

/// A response and as much of its body as was read.
struct Fetched {
    response: reqwest::Response,
    body: Vec<u8>,
    cut: bool,
}

impl HttpFetch {
    /// Status line, content type, final URL after redirects, then the body as text.
    fn report(&self, requested: &Url, method: &Method, fetched: Fetched) -> String {
        let Fetched { response, body, cut } = fetched;
        let status = response.status();
        let content_type =
            response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let mut out = format!("HTTP {} {}\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
        if !content_type.is_empty() {
            out.push_str(&format!("content-type: {content_type}\n"));
        }
        if response.url() != requested {
            out.push_str(&format!("final url: {}\n", response.url()));
        }
        out.push('\n');

        let text = if body.is_empty() {
            if *method == Method::HEAD { "(HEAD: no body)".into() } else { "(empty body)".into() }
        } else if is_binary(&content_type, &body) {
            let kind = if content_type.is_empty() { "unknown type" } else { content_type.as_str() };
            format!("(binary body, {} bytes of {kind}; not shown)", body.len())
        } else if is_html(&content_type, &body) {
            html2text::config::plain()
                .allow_width_overflow()
                .string_from_read(body.as_slice(), HTML_WIDTH)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned())
        } else {
            String::from_utf8_lossy(&body).into_owned()
        };
        out.push_str(&clip_text(text.trim_end(), self.max_output_bytes));
        if cut {
            out.push_str(&format!("\n[… response body truncated after {} bytes …]", body.len()));
        }
        out
    }
}

fn parse_method(method: Option<&str>) -> Result<Method, ToolError> {
    let name = method.unwrap_or("GET").trim().to_ascii_uppercase();
    match name.as_str() {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
            Method::from_bytes(name.as_bytes())
                .map_err(|e| ToolError::InvalidArguments(format!("`method`: {e}")))
        }
        _ => Err(ToolError::InvalidArguments(format!(
            "`method` must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS; got `{name}`"
        ))),
    }
}

fn parse_headers(headers: Option<&BTreeMap<String, String>>) -> Result<HeaderMap, ToolError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers.into_iter().flatten() {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ToolError::InvalidArguments(format!("`{name}` is not a valid header name")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| ToolError::InvalidArguments(format!("the value of header `{name}` is not valid")))?;
        map.append(header, value);
    }
    Ok(map)
}

/// The request failure as the model should read it; the URL is the one it asked for.
fn send_failure(url: &Url, error: &reqwest::Error) -> ToolError {
    let what = if error.is_connect() {
        "could not connect"
    } else if error.is_redirect() {
        "too many redirects"
    } else if error.is_body() || error.is_decode() {
        "the response body broke off"
    } else {
        "the request failed"
    };
    // reqwest's Display names the URL; add the innermost cause, which says what actually happened.
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        ToolError::Failed(format!("{what}: {url}"))
    } else {
        ToolError::Failed(format!("{what}: {url}: {cause}"))
    }
}

fn is_html(content_type: &str, body: &[u8]) -> bool {
    if content_type.contains("html") {
        return true;
    }
    if !content_type.is_empty() {
        return false;
    }
    let start = String::from_utf8_lossy(&body[..body.len().min(256)]).trim_start().to_ascii_lowercase();
    start.starts_with("<!doctype html") || start.starts_with("<html")
}

fn is_binary(content_type: &str, body: &[u8]) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let binary_type = ["image/", "audio/", "video/", "font/"].iter().any(|p| media.starts_with(p))
        || matches!(
            media.as_str(),
            "application/octet-stream" | "application/pdf" | "application/zip" | "application/gzip"
        );
    binary_type || looks_binary(body)
}
