//! The server over real HTTP on an ephemeral 127.0.0.1 port: embeddings equal the library's,
//! concurrent clients get their own rows, errors have each API's shape and status, the queue
//! pushes back, a disconnected client frees its slot, shutdown answers accepted requests, and
//! slow, half-sent, idle and hostile clients are cut off by the timeouts and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use sbert::{Device, SentenceEmbedder};
use sbert_server::{serve, ServerConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(name)
}

fn load(name: &str, normalize: Option<bool>) -> SentenceEmbedder {
    let mut b = SentenceEmbedder::builder(model_dir(name).to_string_lossy()).device(Device::Cpu);
    if let Some(n) = normalize {
        b = b.normalize(n);
    }
    b.build().expect("model loads")
}

/// One HTTP/1.1 exchange: (status, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return (0, String::new());
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = Vec::new();
    let exchanged = async {
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        s.read_to_end(&mut raw).await
    };
    if exchanged.await.is_err() || raw.is_empty() {
        // Refused or reset before an answer (a server that is stopping).
        return (0, String::new());
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = http(addr, "POST", path, &[], body.to_string().as_bytes()).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), sbert_server::ServerError>>,
}

impl Server {
    async fn start<M: Into<sbert_server::ServedModel> + Send + 'static>(
        config: ServerConfig,
        load: impl FnOnce() -> sbert::Result<M> + Send + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(serve(listener, config, load, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            done,
        }
    }

    async fn ready(&self) {
        for _ in 0..600 {
            if http(self.addr, "GET", "/health", &[], b"").await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server never became healthy");
    }

    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.done
            .await
            .expect("server task")
            .expect("server exits cleanly");
    }
}

fn vectors(v: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(v.clone()).expect("a list of vectors")
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn decode_base64_f32(s: &str) -> Vec<f32> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut bytes = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .filter(|&&c| c != b'=')
            .fold(0u32, |n, &c| (n << 6) | value(c))
            << (6 * pad);
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        bytes.extend_from_slice(&three[..3 - pad]);
    }
    bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

const TEXTS: [&str; 4] = [
    "A man is eating food.",
    "",
    "Ein Mann isst.",
    "The quick brown fox jumps over the lazy dog.",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_waits_for_the_model_and_every_route_equals_the_library() {
    let (release, gate) = mpsc::channel::<()>();
    let config = ServerConfig {
        model_id: "tiny".into(),
        ..ServerConfig::default()
    };
    let server = Server::start(config, move || {
        let _ = gate.recv();
        SentenceEmbedder::from_dir(model_dir("tiny"), &Device::Cpu)
    })
    .await;
    let addr = server.addr;
    assert_eq!(http(addr, "GET", "/health", &[], b"").await.0, 503);
    let (status, body) = post(addr, "/embed", json!({"inputs": "hi"})).await;
    assert_eq!(
        (status, body["error_type"].as_str()),
        (503, Some("Unhealthy")),
        "{body}"
    );
    release.send(()).expect("release the loader");
    server.ready().await;

    let normalized = load("tiny", None).embed(&TEXTS).expect("library").to_vecs();
    let raw = load("tiny", Some(false))
        .embed(&TEXTS)
        .expect("library")
        .to_vecs();
    let (status, body) = post(addr, "/embed", json!({"inputs": TEXTS})).await;
    assert_eq!(status, 200, "{body}");
    assert!(max_diff(&vectors(&body), &normalized) <= 1e-6);
    let (_, body) = post(addr, "/embed", json!({"inputs": TEXTS, "normalize": false})).await;
    assert!(max_diff(&vectors(&body), &raw) <= 1e-6);
    let (_, one) = post(addr, "/embed", json!({"inputs": TEXTS[0]})).await;
    assert!(max_diff(&vectors(&one), &normalized[..1]) <= 1e-6);

    // Matryoshka: the first 8 values, renormalized.
    let (_, body) = post(addr, "/embed", json!({"inputs": TEXTS, "dimensions": 8})).await;
    for (got, full) in vectors(&body).iter().zip(&raw) {
        let norm = full[..8].iter().map(|x| x * x).sum::<f32>().sqrt();
        let want: Vec<f32> = full[..8].iter().map(|x| x / norm).collect();
        assert!(max_diff(std::slice::from_ref(got), &[want]) <= 1e-6);
    }

    let (status, body) = post(
        addr,
        "/v1/embeddings",
        json!({"input": TEXTS, "model": "tiny"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["object"].as_str(), body["model"].as_str()),
        (Some("list"), Some("tiny"))
    );
    let data = body["data"].as_array().expect("data");
    let rows: Vec<Vec<f32>> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(
                (d["index"].as_u64(), d["object"].as_str()),
                (Some(i as u64), Some("embedding"))
            );
            serde_json::from_value(d["embedding"].clone()).expect("floats")
        })
        .collect();
    assert!(max_diff(&rows, &normalized) <= 1e-6);
    let tokens: usize = load("tiny", None)
        .tokenize(&TEXTS, sbert::Prompt::Default)
        .expect("tokens")
        .iter()
        .map(|t| t.ids.len())
        .sum();
    assert_eq!(body["usage"]["prompt_tokens"].as_u64(), Some(tokens as u64));
    let (_, body) = post(
        addr,
        "/v1/embeddings",
        json!({"input": TEXTS[0], "encoding_format": "base64"}),
    )
    .await;
    let decoded = decode_base64_f32(
        body["data"][0]["embedding"]
            .as_str()
            .expect("base64 string"),
    );
    // The same f32 bits as the float form of the same single input.
    assert!(max_diff(&[decoded], &vectors(&one)) <= 0.0);
    // Token ids are embedded as given: the ids of a text give the text's embedding.
    let ids = load("tiny", None)
        .tokenize(&[TEXTS[0]], sbert::Prompt::Default)
        .expect("ids")
        .remove(0)
        .ids;
    let (_, body) = post(addr, "/v1/embeddings", json!({"input": [ids]})).await;
    let by_ids: Vec<f32> =
        serde_json::from_value(body["data"][0]["embedding"].clone()).expect("floats");
    assert!(max_diff(&[by_ids], &normalized[..1]) <= 1e-6);

    let (_, sims) = post(
        addr,
        "/similarity",
        json!({"inputs": {"source_sentence": TEXTS[0], "sentences": [TEXTS[0], TEXTS[3]]}}),
    )
    .await;
    let sims: Vec<f32> = serde_json::from_value(sims).expect("scores");
    let cos: f32 = normalized[0]
        .iter()
        .zip(&normalized[3])
        .map(|(a, b)| a * b)
        .sum();
    assert!(
        (sims[0] - 1.0).abs() <= 1e-5 && (sims[1] - cos).abs() <= 1e-5,
        "{sims:?}"
    );

    let (_, tokens) = post(addr, "/tokenize", json!({"inputs": "A man"})).await;
    let t = tokens[0].as_array().expect("tokens");
    assert_eq!(t.first().expect("cls")["special"], true);
    assert_eq!(t[1]["start"], 0);

    let (status, info) = http(addr, "GET", "/info", &[], b"").await;
    let info: Value = serde_json::from_str(&info).expect("json");
    assert_eq!(
        (status, info["dimension"].as_u64()),
        (200, Some(normalized[0].len() as u64))
    );
    let (status, doc) = http(addr, "GET", "/openapi.json", &[], b"").await;
    let doc: Value = serde_json::from_str(&doc).expect("json");
    assert_eq!(status, 200);
    for route in [
        "/embed",
        "/similarity",
        "/tokenize",
        "/v1/embeddings",
        "/info",
        "/health",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(route).is_some(),
            "{route} missing from the OpenAPI document"
        );
    }
    let (status, metrics) = http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("sbert_requests_total{route=\"/embed\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("sbert_batch_tokens_bucket"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_each_get_their_own_rows_in_order() {
    let server = Server::start(ServerConfig::default(), || {
        SentenceEmbedder::from_dir(model_dir("tiny"), &Device::Cpu)
    })
    .await;
    server.ready().await;
    let model = load("tiny", None);
    let requests: Vec<Vec<String>> = (0..32)
        .map(|i| {
            (0..1 + i % 5)
                .map(|j| format!("request {i} text {j} {}", "word ".repeat(i + j)))
                .collect()
        })
        .collect();
    let addr = server.addr;
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|texts| {
            tokio::spawn(async move { post(addr, "/embed", json!({"inputs": texts})).await })
        })
        .collect();
    for (texts, task) in requests.iter().zip(tasks) {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200, "{body}");
        let want = model.embed(texts).expect("library").to_vecs();
        assert!(max_diff(&vectors(&body), &want) <= 1e-6, "{texts:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_each_api_shape_and_status() {
    let config = ServerConfig {
        max_client_batch_size: 4,
        max_body_bytes: 4096,
        api_key: Some("sekrit".into()),
        ..ServerConfig::default()
    };
    let server = Server::start(config, || {
        SentenceEmbedder::from_dir(model_dir("tiny"), &Device::Cpu)
    })
    .await;
    server.ready().await;
    let addr = server.addr;
    let auth = [("authorization", "Bearer sekrit")];
    let call = |path: &'static str, body: Vec<u8>| async move {
        let (status, text) = http(
            addr,
            "POST",
            path,
            &[("authorization", "Bearer sekrit")],
            &body,
        )
        .await;
        (
            status,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
        )
    };
    let tei = |body: &Value| body["error"].is_string() && body["error_type"].is_string();
    let openai =
        |body: &Value| body["error"]["message"].is_string() && body["error"]["type"].is_string();

    let (status, body) = http(addr, "POST", "/embed", &[], br#"{"inputs": "x"}"#).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = http(
        addr,
        "POST",
        "/embed",
        &[("authorization", "Bearer wrong")],
        br#"{"inputs": "x"}"#,
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = http(addr, "POST", "/v1/embeddings", &[], br#"{"input": "x"}"#).await;
    let body: Value = serde_json::from_str(&body).expect("json");
    assert!(status == 401 && openai(&body), "{body}");
    assert_eq!(http(addr, "GET", "/health", &[], b"").await.0, 200);
    assert_eq!(http(addr, "GET", "/info", &auth, b"").await.0, 200);

    for (path, body, want, check) in [
        ("/embed", b"{not json".to_vec(), 400, true),
        ("/embed", br#"{"inputs": 5}"#.to_vec(), 422, true),
        ("/embed", br#"{"inputs": []}"#.to_vec(), 400, true),
        (
            "/embed",
            br#"{"inputs": ["a","b","c","d","e"]}"#.to_vec(),
            413,
            true,
        ),
        (
            "/embed",
            format!(r#"{{"inputs": "{}"}}"#, "x".repeat(5000)).into_bytes(),
            413,
            true,
        ),
        (
            "/embed",
            br#"{"inputs": "a", "dimensions": 0}"#.to_vec(),
            422,
            true,
        ),
        (
            "/embed",
            br#"{"inputs": "a", "prompt_name": "query"}"#.to_vec(),
            422,
            true,
        ),
        (
            "/embed",
            br#"{"inputs": "a", "truncation_direction": "Left"}"#.to_vec(),
            422,
            true,
        ),
        (
            "/embed",
            format!(
                r#"{{"inputs": "{}", "truncate": false}}"#,
                "word ".repeat(600)
            )
            .into_bytes(),
            422,
            true,
        ),
        (
            "/similarity",
            br#"{"inputs": {"source_sentence": "a", "sentences": []}}"#.to_vec(),
            400,
            true,
        ),
        ("/v1/embeddings", b"[".to_vec(), 400, false),
        (
            "/v1/embeddings",
            br#"{"input": "a", "encoding_format": "hex"}"#.to_vec(),
            422,
            false,
        ),
        (
            "/v1/embeddings",
            br#"{"input": [[1, 99999999]]}"#.to_vec(),
            422,
            false,
        ),
        ("/v1/embeddings", br#"{"input": [[]]}"#.to_vec(), 422, false),
        ("/v1/embeddings", br#"{"model": "m"}"#.to_vec(), 422, false),
        (
            "/v1/embeddings",
            br#"{"input": "a", "model": "text-embedding-3-small"}"#.to_vec(),
            404,
            false,
        ),
        (
            "/tokenize",
            br#"{"inputs": ["a","b","c","d","e"]}"#.to_vec(),
            413,
            true,
        ),
    ] {
        let (status, reply) = call(path, body.clone()).await;
        assert_eq!(
            status,
            want,
            "{path} {}: {reply}",
            String::from_utf8_lossy(&body[..body.len().min(80)])
        );
        assert!(
            if check { tei(&reply) } else { openai(&reply) },
            "{path}: {reply}"
        );
    }
    // Long input with the default truncate: embedded like its first max_seq_length tokens.
    let (status, _) = call(
        "/embed",
        format!(r#"{{"inputs": "{}"}}"#, "word ".repeat(600)).into_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = http(addr, "GET", "/no/such/route", &auth, b"").await;
    assert_eq!(status, 404, "{body}");
    server.stop().await;
}

/// 16 inputs of 256 tokens on all-MiniLM-L6-v2: a request that keeps the encoder busy for
/// far longer than the pauses below.
fn long_request() -> Value {
    let text = "the quick brown fox jumps over the lazy dog again and again ".repeat(30);
    json!({"inputs": vec![text; 16]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_house_is_429_and_a_disconnected_client_frees_its_slot() {
    let config = ServerConfig {
        max_concurrent_requests: 1,
        ..ServerConfig::default()
    };
    let server = Server::start(config, || {
        SentenceEmbedder::from_dir(model_dir("all-MiniLM-L6-v2"), &Device::Cpu)
    })
    .await;
    server.ready().await;
    let addr = server.addr;

    // Two requests at once with one slot: one is served, the other pushed back.
    let first = tokio::spawn(async move { post(addr, "/embed", long_request()).await.0 });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = post(addr, "/embed", long_request()).await.0;
    let first = first.await.expect("task");
    let mut statuses = [first, second];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 429]);

    // A client that goes away mid-request gives its slot back.
    let body = long_request().to_string();
    let mut gone = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /embed HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    gone.write_all(head.as_bytes()).await.expect("write");
    gone.write_all(body.as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(gone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = post(addr, "/embed", json!({"inputs": "still served"})).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_accepted_request() {
    let server = Server::start(ServerConfig::default(), || {
        SentenceEmbedder::from_dir(model_dir("tiny"), &Device::Cpu)
    })
    .await;
    server.ready().await;
    let addr = server.addr;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            tokio::spawn(async move {
                post(
                    addr,
                    "/embed",
                    json!({"inputs": format!("text {i} ").repeat(40)}),
                )
                .await
                .0
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    server.stop().await;
    let mut answered = 0;
    for t in tasks {
        // 0: the connection was refused or reset before the server took the request.
        match t.await.expect("task") {
            200 => answered += 1,
            0 => {}
            other => panic!("status {other} at shutdown"),
        }
    }
    assert!(answered > 0, "no request was answered");
    assert_eq!(
        http(addr, "GET", "/health", &[], b"").await.0,
        0,
        "still accepting after shutdown"
    );
}

/// Writes `raw` on a fresh connection, then reads until the server closes it (or `within`
/// passes: `None`). Returns the status of the first answer (0 for none) and the time taken.
async fn raw_exchange(addr: SocketAddr, raw: &[u8], within: Duration) -> Option<(u16, Duration)> {
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(raw).await.expect("write");
    let mut got = Vec::new();
    match tokio::time::timeout(within, s.read_to_end(&mut got)).await {
        Err(_) => None,
        Ok(_) => {
            let text = String::from_utf8_lossy(&got);
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            Some((status, started.elapsed()))
        }
    }
}

fn quick_timeouts() -> ServerConfig {
    ServerConfig {
        header_timeout: Duration::from_millis(700),
        body_timeout: Duration::from_millis(700),
        max_body_bytes: 4096,
        ..ServerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_half_sent_idle_and_foreign_requests_are_cut_off_or_refused() {
    let server = Server::start(
        ServerConfig {
            allowed_hosts: vec!["localhost".into(), "::1".into(), "test".into()],
            ..quick_timeouts()
        },
        || SentenceEmbedder::from_dir(model_dir("tiny"), &Device::Cpu),
    )
    .await;
    let addr = server.addr;
    let wait = Duration::from_secs(10);
    let embed = |host: &str, content_type: &str, extra: &str, body: &str| {
        format!(
            "POST /embed HTTP/1.1\r\nhost: {host}\r\ncontent-type: {content_type}\r\n\
             content-length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
    };
    // The model loads while the connection-level checks run; they need no model.
    // Slowloris: headers that never end; the connection is closed at the header timeout.
    let (status, took) = raw_exchange(addr, b"POST /embed HTTP/1.1\r\nhost: localhost\r\n", wait)
        .await
        .expect("a connection with half its headers is closed");
    assert!(status == 0 || status == 408, "status {status}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // An idle connection is closed too.
    let (_, took) = raw_exchange(addr, b"", wait)
        .await
        .expect("an idle connection is closed");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A body shorter than its Content-Length: 408 at the body timeout.
    let short = "POST /embed HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"inputs\"";
    let (status, took) = raw_exchange(addr, short.as_bytes(), wait)
        .await
        .expect("a half-sent body is answered");
    assert_eq!(status, 408);
    assert!(took < Duration::from_secs(5), "{took:?}");
    // An oversized body announced with Expect: 100-continue gets 413, not 100 Continue.
    let expect = "POST /embed HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\nexpect: 100-continue\r\n\r\n";
    let (status, _) = raw_exchange(addr, expect.as_bytes(), wait)
        .await
        .expect("answered");
    assert_eq!(status, 413);
    // A text/plain body (what a cross-site page can send without a preflight): 415.
    let plain = embed("localhost", "text/plain", "", r#"{"inputs": "x"}"#);
    let (status, _) = raw_exchange(addr, plain.as_bytes(), wait)
        .await
        .expect("answered");
    assert_eq!(status, 415);
    // A Host that is not allowed (DNS rebinding): 421; an allowed one with a port passes.
    let foreign = embed("evil.example", "application/json", "", r#"{"inputs": "x"}"#);
    let (status, _) = raw_exchange(addr, foreign.as_bytes(), wait)
        .await
        .expect("answered");
    assert_eq!(status, 421);
    server.ready().await;
    let ok = embed(
        "localhost:8080",
        "application/json",
        "connection: close\r\n",
        r#"{"inputs": "x"}"#,
    );
    assert_eq!(
        raw_exchange(addr, ok.as_bytes(), wait).await.map(|r| r.0),
        Some(200)
    );
    let ok = embed(
        "[::1]:80",
        "application/json",
        "connection: close\r\n",
        r#"{"inputs": "x"}"#,
    );
    assert_eq!(
        raw_exchange(addr, ok.as_bytes(), wait).await.map(|r| r.0),
        Some(200)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_limit_new_clients_wait_until_idle_ones_time_out() {
    let server = Server::start(
        ServerConfig {
            max_connections: 2,
            ..quick_timeouts()
        },
        || SentenceEmbedder::from_dir(model_dir("tiny"), &Device::Cpu),
    )
    .await;
    server.ready().await;
    let idle: Vec<TcpStream> = vec![
        TcpStream::connect(server.addr).await.expect("connect"),
        TcpStream::connect(server.addr).await.expect("connect"),
    ];
    // Both slots are held by clients that send nothing; this one is served once they are
    // closed at the header timeout.
    let (status, body) = post(server.addr, "/embed", json!({"inputs": "x"})).await;
    assert_eq!(status, 200, "{body}");
    drop(idle);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_by_half_sent_requests() {
    // Long header and body timeouts: only the drain timeout can end these connections.
    let server = Server::start(
        ServerConfig {
            header_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        },
        || SentenceEmbedder::from_dir(model_dir("tiny"), &Device::Cpu),
    )
    .await;
    server.ready().await;
    let mut partial_head = TcpStream::connect(server.addr).await.expect("connect");
    partial_head
        .write_all(b"POST /embed HTTP/1.1\r\nhost: t\r\n")
        .await
        .expect("write");
    let mut partial_body = TcpStream::connect(server.addr).await.expect("connect");
    partial_body
        .write_all(b"POST /embed HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"in")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(20), server.stop())
        .await
        .expect("shutdown completes within the drain timeout");
    drop((partial_head, partial_body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_would_fail_every_request_are_refused_at_start() {
    let cases = [
        ServerConfig {
            request_timeout: Duration::ZERO,
            ..ServerConfig::default()
        },
        ServerConfig {
            header_timeout: Duration::ZERO,
            ..ServerConfig::default()
        },
        ServerConfig {
            api_key: Some("  ".into()),
            ..ServerConfig::default()
        },
        ServerConfig {
            max_connections: 0,
            ..ServerConfig::default()
        },
        ServerConfig {
            allowed_hosts: vec![String::new()],
            ..ServerConfig::default()
        },
    ];
    for config in cases {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let shown = format!("{config:?}");
        let err = serve(
            listener,
            config,
            || SentenceEmbedder::from_dir(model_dir("tiny"), &Device::Cpu),
            std::future::pending::<()>(),
        )
        .await
        .expect_err(&shown);
        assert!(
            matches!(err, sbert_server::ServerError::Config(_)),
            "{shown}: {err:?}"
        );
    }
}

/// A cross-encoder served: TEI's /rerank and the Cohere-style /v1/rerank give the library's
/// ranking; the embedding routes answer 400 naming what is served; /info says reranker; bad
/// requests are clear 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reranker_serves_the_rerank_routes_and_refuses_the_embedding_ones() {
    let dir = model_dir("rerankers/bert");
    let server = Server::start(
        ServerConfig {
            model_id: "tiny-reranker".into(),
            ..ServerConfig::default()
        },
        {
            let dir = dir.clone();
            move || sbert::CrossEncoder::from_dir(dir, &Device::Cpu)
        },
    )
    .await;
    server.ready().await;
    let addr = server.addr;
    let library = sbert::CrossEncoder::from_dir(&dir, &Device::Cpu).expect("library");
    let query = "how do vaccines train the immune system";
    let docs = [
        "Vaccines teach the immune system.",
        "The train leaves at noon.",
        "Basil.",
    ];
    let want = library.rank(query, &docs, None).expect("rank");

    let (status, body) = post(
        addr,
        "/rerank",
        json!({"query": query, "texts": docs, "return_text": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = body.as_array().expect("list");
    assert_eq!(got.len(), 3);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["index"].as_u64(), Some(w.corpus_id as u64));
        assert!((g["score"].as_f64().expect("score") as f32 - w.score).abs() <= 1e-6);
        assert_eq!(g["text"], docs[w.corpus_id]);
    }
    let (status, body) = post(
        addr,
        "/v1/rerank",
        json!({"model": "tiny-reranker", "query": query, "documents": [docs[0], {"text": docs[1]}, docs[2]], "top_n": 2}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["index"].as_u64(), Some(want[0].corpus_id as u64));
    assert!(results[0].get("document").is_none());

    let (status, body) = post(addr, "/embed", json!({"inputs": "a"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("msg")
            .contains("cross-encoder"),
        "{body}"
    );
    let (status, info) = http(addr, "GET", "/info", &[], b"").await;
    let info: Value = serde_json::from_str(&info).expect("json");
    assert_eq!(status, 200);
    assert!(
        info["model_type"]["reranker"]["id2label"].is_object(),
        "{info}"
    );
    // The document lists the routes of the kind served.
    let (_, doc) = http(addr, "GET", "/openapi.json", &[], b"").await;
    let doc: Value = serde_json::from_str(&doc).expect("json");
    assert!(doc["paths"].get("/rerank").is_some() && doc["paths"].get("/v1/rerank").is_some());
    assert!(doc["paths"].get("/embed").is_none() && doc["paths"].get("/").is_none());
    for (path, body) in [
        ("/rerank", json!({"query": query, "texts": []})),
        ("/rerank", json!({"query": query})),
        (
            "/rerank",
            json!({"query": query, "texts": ["a"], "truncate": false}),
        ),
        (
            "/v1/rerank",
            json!({"query": query, "documents": ["a"], "top_n": 0}),
        ),
    ] {
        let (status, reply) = post(addr, path, body.clone()).await;
        assert!(
            (400..500).contains(&status),
            "{path} {body}: {status} {reply}"
        );
    }
    let (status, _) = post(
        addr,
        "/v1/rerank",
        json!({"model": "other", "query": "q", "documents": ["a"]}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post(
        addr,
        "/rerank",
        json!({"query": query, "texts": vec!["d"; 33]}),
    )
    .await;
    assert_eq!(status, 413);
    server.stop().await;

    // An embedding server answers /rerank with 400 naming what it serves.
    let server = Server::start(ServerConfig::default(), || {
        SentenceEmbedder::from_dir(model_dir("tiny"), &Device::Cpu)
    })
    .await;
    server.ready().await;
    let (status, body) = post(
        server.addr,
        "/rerank",
        json!({"query": "q", "texts": ["a"]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("msg")
            .contains("embedding model"),
        "{body}"
    );
    server.stop().await;
}

/// A SPLADE model served: /embed_sparse gives the library's sparse embeddings (TEI's shape);
/// the dense routes answer 400 naming what is served; /info says splade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_encoder_serves_embed_sparse_and_refuses_the_dense_routes() {
    let dir = model_dir("splade-tiny");
    assert!(
        dir.join("model.safetensors").is_file(),
        "run models/fetch.sh splade-tiny"
    );
    let server = Server::start(ServerConfig::default(), {
        let dir = dir.clone();
        move || sbert::SparseEncoder::from_dir(dir, &Device::Cpu)
    })
    .await;
    server.ready().await;
    let addr = server.addr;
    let texts = ["How do vaccines work?", "error code E1234"];
    let want = sbert::SparseEncoder::from_dir(&dir, &Device::Cpu)
        .expect("library")
        .encode(&texts)
        .expect("encode");
    let (status, body) = post(addr, "/embed_sparse", json!({"inputs": texts})).await;
    assert_eq!(status, 200, "{body}");
    let rows = body.as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    for (row, e) in rows.iter().zip(&want) {
        let row = row.as_array().expect("row");
        let indices: Vec<u32> = row
            .iter()
            .map(|v| v["index"].as_u64().expect("i") as u32)
            .collect();
        assert_eq!(indices, e.indices);
        for (v, w) in row.iter().zip(&e.values) {
            assert!((v["value"].as_f64().expect("v") as f32 - w).abs() <= 1e-6);
        }
    }
    let (status, body) = post(addr, "/embed", json!({"inputs": "a"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().expect("msg").contains("sparse"),
        "{body}"
    );
    let (status, info) = http(addr, "GET", "/info", &[], b"").await;
    let info: Value = serde_json::from_str(&info).expect("json");
    assert_eq!(
        (status, info["model_type"]["embedding"]["pooling"].as_str()),
        (200, Some("splade"))
    );
    let (status, _) = post(addr, "/embed_sparse", json!({"inputs": []})).await;
    assert_eq!(status, 400);
    server.stop().await;
}
