//! HTTP/1.1 framing between the load balancer and an instance, against a raw-TCP
//! instance that writes exactly the bytes each test needs: chunked bodies with
//! trailers, bodies that end at close, bodies a method or status rules out, and
//! connections that close after a response or while idle.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gennaker_local::lb::{Backend, BackendGroup, LoadBalancers};
use http::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::support::*;

/// One request as the raw instance read it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Header lines, lower-cased names.
    headers: Vec<(String, String)>,
    /// The body exactly as it came on the wire (still chunk-encoded if it was).
    raw_body: Vec<u8>,
    /// Which accepted connection (1, 2, …) carried it.
    connection: u64,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the raw instance does after reading a request.
enum Reply {
    /// Writes these bytes and keeps the connection.
    Keep(Vec<u8>),
    /// Writes these bytes and closes the connection.
    Close(Vec<u8>),
    /// Closes the connection without answering.
    Hangup,
}

/// A raw-TCP instance: `script(request, nth request on this connection)` decides the
/// answer.
struct RawInstance {
    address: SocketAddr,
    connections: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RawInstance {
    async fn spawn(script: fn(&Seen, u64) -> Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (Arc::clone(&connections), Arc::clone(&seen));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = count.fetch_add(1, Ordering::SeqCst) + 1;
                let log = Arc::clone(&log);
                tokio::spawn(serve_raw(stream, connection, log, script));
            }
        });
        Self {
            address,
            connections,
            seen,
        }
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }

    fn group(&self) -> Vec<BackendGroup> {
        vec![BackendGroup {
            server_group: "raw-v001".to_owned(),
            weight: 1,
            backends: vec![Backend {
                instance_id: "raw-v001-0".to_owned(),
                address: self.address,
            }],
        }]
    }
}

async fn serve_raw(
    mut stream: TcpStream,
    connection: u64,
    log: Arc<Mutex<Vec<Seen>>>,
    script: fn(&Seen, u64) -> Reply,
) {
    let mut buffer = Vec::new();
    let mut nth = 0;
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer, connection).await else {
            return;
        };
        nth += 1;
        log.lock().unwrap().push(request.clone());
        match script(&request, nth) {
            Reply::Keep(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Reply::Close(bytes) => {
                let _ = stream.write_all(&bytes).await;
                let _ = stream.shutdown().await;
                return;
            }
            Reply::Hangup => return,
        }
    }
}

/// Reads one request (head, then a body framed by length or chunked); `None` at the
/// end of the stream.
async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    connection: u64,
) -> Option<Seen> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap().split(' ');
    let method = start.next().unwrap().to_owned();
    let path = start.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    buffer.drain(..head_end);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body_end = if let Some(length) = find("content-length") {
        Some(length.parse::<usize>().unwrap())
    } else if find("transfer-encoding").is_some() {
        None
    } else {
        Some(0)
    };
    loop {
        let complete = match body_end {
            Some(length) => buffer.len() >= length,
            None => buffer.windows(5).any(|w| w == b"0\r\n\r\n"),
        };
        if complete {
            break;
        }
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let length =
        body_end.unwrap_or_else(|| buffer.windows(5).position(|w| w == b"0\r\n\r\n").unwrap() + 5);
    let raw_body = buffer.drain(..length).collect();
    Some(Seen {
        method,
        path,
        headers,
        raw_body,
        connection,
    })
}

async fn balancer_for(instance: &RawInstance, name: &str) -> (LoadBalancers, SocketAddr) {
    let lbs = LoadBalancers::new(test_config(), CancellationToken::new());
    let lb = lbs.upsert(spec(name)).await.unwrap();
    lbs.set_backends(name, instance.group()).unwrap();
    (lbs, lb)
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn framing_script(request: &Seen, _nth: u64) -> Reply {
    match request.path.as_str() {
        "/chunked" => Reply::Keep(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n\
              5;note=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n"
                .to_vec(),
        ),
        "/until-close" => Reply::Close(b"HTTP/1.1 200 OK\r\n\r\nread until close".to_vec()),
        "/head" => Reply::Keep(b"HTTP/1.1 200 OK\r\ncontent-length: 42\r\n\r\n".to_vec()),
        "/no-content" => Reply::Keep(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
        "/not-modified" => Reply::Keep(
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\netag: \"v1\"\r\n\r\n".to_vec(),
        ),
        "/continue" => Reply::Keep(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nafter"
                .to_vec(),
        ),
        "/last" => Reply::Close(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 4\r\n\r\nlast".to_vec(),
        ),
        "/truncated" => Reply::Close(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec()),
        "/echo" => Reply::Keep(ok(&format!(
            "{} {}",
            request.raw_body.len(),
            String::from_utf8_lossy(&request.raw_body)
        ))),
        _ => Reply::Keep(ok("plain")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_bodiless_responses_keep_the_connection() {
    let instance = RawInstance::spawn(framing_script).await;
    let (_lbs, lb) = balancer_for(&instance, "framing-keep").await;
    let client = client();

    let response = client
        .get(format!("http://{lb}/chunked"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("trailer").is_none(), "hop-by-hop");
    assert_eq!(response.text().await.unwrap(), "hello world");

    let response = client
        .head(format!("http://{lb}/head"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-length"], "42");
    assert_eq!(response.bytes().await.unwrap().len(), 0);

    let response = client
        .get(format!("http://{lb}/no-content"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.bytes().await.unwrap().is_empty());

    let response = client
        .get(format!("http://{lb}/not-modified"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()["etag"], "\"v1\"");
    assert!(response.bytes().await.unwrap().is_empty());

    let response = client
        .get(format!("http://{lb}/continue"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "after");

    assert_eq!(get(&client, lb, "/plain").await.unwrap().1, "plain");
    // Every one of those responses left the connection reusable.
    assert_eq!(instance.connections(), 1);
    assert_eq!(instance.last().connection, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_instance_ends_is_not_reused() {
    let instance = RawInstance::spawn(framing_script).await;
    let (_lbs, lb) = balancer_for(&instance, "framing-close").await;
    let client = client();

    assert_eq!(
        get(&client, lb, "/until-close").await.unwrap(),
        (StatusCode::OK, "read until close".to_owned())
    );
    assert_eq!(get(&client, lb, "/plain").await.unwrap().1, "plain");
    assert_eq!(instance.last().connection, 2);

    assert_eq!(
        get(&client, lb, "/last").await.unwrap(),
        (StatusCode::OK, "last".to_owned())
    );
    assert_eq!(get(&client, lb, "/plain").await.unwrap().1, "plain");
    assert_eq!(instance.last().connection, 3);

    // A body cut short by the instance after its head went out: the client's response
    // is cut short too (its length promised more), and the connection goes.
    assert!(get(&client, lb, "/truncated").await.is_err());
    assert_eq!(get(&client, lb, "/plain").await.unwrap().1, "plain");
    assert_eq!(instance.last().connection, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_keep_or_gain_their_framing() {
    let instance = RawInstance::spawn(framing_script).await;
    let (_lbs, lb) = balancer_for(&instance, "framing-request").await;
    let client = client();

    let response = client
        .post(format!("http://{lb}/echo"))
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "10 0123456789");
    let seen = instance.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.header("content-length"), Some("10"));
    assert_eq!(seen.header("transfer-encoding"), None);

    // A body of unknown length (chunked from the client) goes on chunked.
    let answer = raw_exchange(
        lb,
        b"POST /echo HTTP/1.1\r\nhost: shop\r\ntransfer-encoding: chunked\r\n\r\n\
          3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let seen = instance.last();
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen.header("content-length"), None);
    let decoded = dechunk(&seen.raw_body);
    assert_eq!(decoded, b"abcdefg");
    assert_eq!(instance.connections(), 1);
}

/// The data of a chunk-encoded body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return data;
        }
        data.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Sends `request` as raw bytes on a new connection to `lb` and reads the answer to
/// the end of its (length-framed) body.
async fn raw_exchange(lb: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(lb).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let read = stream.read(&mut chunk).await.unwrap();
        assert!(
            read > 0,
            "closed early: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if answer.len() >= head_end + 4 + length {
                return text;
            }
        }
    }
}

/// Answers the first request on a connection, then hangs up on the next one without
/// a word: the race of an instance closing an idle connection just as it is reused.
fn hangup_script(request: &Seen, nth: u64) -> Reply {
    if nth >= 2 {
        return Reply::Hangup;
    }
    framing_script(request, nth)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_connection_closed_unanswered_retries_only_safe_requests() {
    let instance = RawInstance::spawn(hangup_script).await;
    let (_lbs, lb) = balancer_for(&instance, "framing-hangup").await;
    let client = client();

    assert_eq!(get(&client, lb, "/plain").await.unwrap().1, "plain");
    // The pooled connection hangs up on the GET: sent again on a fresh one.
    assert_eq!(
        get(&client, lb, "/plain").await.unwrap(),
        (StatusCode::OK, "plain".to_owned())
    );
    assert_eq!(instance.connections(), 2);
    // A POST may have been acted on: not repeated.
    let response = client
        .post(format!("http://{lb}/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let posts = instance
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|seen| seen.method == "POST")
        .count();
    assert_eq!(posts, 1);
}
