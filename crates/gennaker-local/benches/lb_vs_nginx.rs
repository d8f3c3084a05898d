//! Throughput and latency of the built-in load balancer next to nginx, both in front of
//! the same tiny backends and driven by the same in-process load generator; prints JSON.
//!
//! Fairness: the load balancer runs on its own tokio runtime with as many threads as
//! nginx has worker processes (`LB_BENCH_WORKERS`, default 1); backends and the load
//! generator run on other runtimes, identical for both runs.
//!
//! The machine may be shared, so runs alternate (`LB_BENCH_ROUNDS`) and each reports
//! the CPU time the proxy itself used per request (load balancer threads, nginx
//! processes), which contention does not distort the way it distorts throughput.
//!
//! With `wrk` installed (`apt-get install -y wrk nginx-light`), the same rounds are
//! repeated with wrk (`-t1`, an external load generator) against both, alternating, and
//! reported under `wrk`.
//!
//! Knobs (environment): `LB_BENCH_SECONDS` (10), `LB_BENCH_CONNECTIONS` (32),
//! `LB_BENCH_BACKENDS` (3), `LB_BENCH_WORKERS` (1), `LB_BENCH_ROUNDS` (2).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use gennaker_local::lb::{Backend, BackendGroup, LbConfig, ListenerSpec, LoadBalancers};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BODY: &[u8] = b"hello from a backend\n";
const WARMUP: Duration = Duration::from_secs(1);

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runtime(threads: usize, name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let seconds = knob("LB_BENCH_SECONDS", 10);
    let connections = knob("LB_BENCH_CONNECTIONS", 32) as usize;
    let backend_count = knob("LB_BENCH_BACKENDS", 3) as usize;
    let workers = knob("LB_BENCH_WORKERS", 1) as usize;
    let rounds = knob("LB_BENCH_ROUNDS", 2).max(1);
    let duration = Duration::from_secs(seconds);

    let backends_rt = runtime(1, "backends");
    let load_rt = runtime(1, "load");
    let lb_rt = runtime(workers, "lb");

    let backends: Vec<SocketAddr> = backends_rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..backend_count {
            out.push(spawn_backend().await);
        }
        out
    });

    // The built-in load balancer.
    let lbs = LoadBalancers::new(LbConfig::default(), CancellationToken::new());
    let lb_address = lb_rt.block_on(async {
        let address = lbs
            .upsert(ListenerSpec {
                name: "bench".to_owned(),
                listen: "127.0.0.1:0".parse().unwrap(),
                allowed_cidrs: Vec::new(),
                ejection_failures: 5,
            })
            .await
            .unwrap();
        lbs.set_backends(
            "bench",
            vec![BackendGroup {
                server_group: "bench-v001".to_owned(),
                weight: 1,
                backends: backends
                    .iter()
                    .enumerate()
                    .map(|(i, address)| Backend {
                        instance_id: format!("bench-v001-{i}"),
                        address: *address,
                    })
                    .collect(),
            }],
        )
        .unwrap();
        address
    });
    let nginx_binary = which_nginx();
    let wrk_binary = which_binary("wrk");
    let nginx_dir = tempfile::tempdir().unwrap();
    let mut builtin_runs = Vec::new();
    let mut nginx_runs = Vec::new();
    let mut wrk_builtin_runs = Vec::new();
    let mut wrk_nginx_runs = Vec::new();
    for _ in 0..rounds {
        builtin_runs.push(load_rt.block_on(drive(
            lb_address,
            connections,
            duration,
            Box::new(|| threads_cpu_seconds("lb")),
        )));
        if let Some(wrk) = &wrk_binary {
            wrk_builtin_runs.push(run_wrk(wrk, lb_address, connections, duration, &|| {
                threads_cpu_seconds("lb")
            }));
        }
        let Some(binary) = &nginx_binary else {
            continue;
        };
        let port = free_port();
        let child = start_nginx(binary, nginx_dir.path(), port, workers, &backends);
        let pid = child.id();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let run = if load_rt.block_on(wait_until_listening(address)) {
            let run = load_rt.block_on(drive(
                address,
                connections,
                duration,
                Box::new(move || process_tree_cpu_seconds(pid)),
            ));
            if let Some(wrk) = &wrk_binary {
                wrk_nginx_runs.push(run_wrk(wrk, address, connections, duration, &|| {
                    process_tree_cpu_seconds(pid)
                }));
            }
            run
        } else {
            json!({
                "error": "nginx did not start",
                "log": std::fs::read_to_string(nginx_dir.path().join("error.log")).unwrap_or_default(),
            })
        };
        stop_nginx(binary, nginx_dir.path(), child);
        nginx_runs.push(run);
    }
    let builtin = best(&builtin_runs);
    let nginx = match nginx_binary {
        None => json!({
            "missing": true,
            "install": "apt-get install -y nginx-light (or nginx)",
        }),
        Some(_) => best(&nginx_runs),
    };

    let ratio = compare(&builtin, &nginx);
    let wrk = match wrk_binary {
        None => json!({"missing": true, "install": "apt-get install -y wrk"}),
        Some(_) => {
            let (lb, ngx) = (best(&wrk_builtin_runs), best(&wrk_nginx_runs));
            json!({
                "builtin_lb": lb,
                "nginx": ngx,
                "comparison": compare(&lb, &ngx),
                "all_runs": { "builtin_lb": wrk_builtin_runs, "nginx": wrk_nginx_runs },
            })
        }
    };
    let report = json!({
        "bench": "lb_vs_nginx",
        "seconds": seconds,
        "connections": connections,
        "backends": backend_count,
        "workers": workers,
        "rounds": rounds,
        "builtin_lb": builtin,
        "nginx": nginx,
        "all_runs": { "builtin_lb": builtin_runs, "nginx": nginx_runs },
        "comparison": ratio,
        "wrk": wrk,
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    drop(lb_rt);
}

/// The load balancer's figures over nginx's, beside the targets.
fn compare(builtin: &Value, nginx: &Value) -> Value {
    match (
        builtin["requests_per_second"].as_f64(),
        nginx["requests_per_second"].as_f64(),
    ) {
        (Some(lb), Some(ngx)) if ngx > 0.0 => json!({
            "throughput_lb_over_nginx": round3(lb / ngx),
            "p99_lb_minus_nginx_ms": round3(
                builtin["p99_ms"].as_f64().unwrap_or(0.0) - nginx["p99_ms"].as_f64().unwrap_or(0.0)
            ),
            "cpu_per_request_lb_over_nginx": match (builtin["cpu_us_per_request"].as_f64(), nginx["cpu_us_per_request"].as_f64()) {
                (Some(lb), Some(ngx)) if ngx > 0.0 => json!(round3(lb / ngx)),
                _ => Value::Null,
            },
            "target": "throughput >= 1.0, p99 difference <= 0.5 ms, CPU per request <= 1.1",
        }),
        _ => Value::Null,
    }
}

/// Runs `wrk -t1` against `address` for `duration`, with the proxy's CPU time (`cpu`)
/// read before and after; its figures are read from wrk's `--latency` report.
fn run_wrk(
    wrk: &std::path::Path,
    address: SocketAddr,
    connections: usize,
    duration: Duration,
    cpu: &dyn Fn() -> f64,
) -> Value {
    let cpu_before = cpu();
    let backends_before = threads_cpu_seconds("backends");
    let machine_before = machine_cpu_seconds();
    let output = std::process::Command::new(wrk)
        .args([
            "-t1".to_owned(),
            format!("-c{connections}"),
            format!("-d{}s", duration.as_secs().max(1)),
            "--latency".to_owned(),
            format!("http://{address}/"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let used = cpu() - cpu_before;
    let backends_used = threads_cpu_seconds("backends") - backends_before;
    let (busy, idle) = machine_cpu_seconds();
    let (busy, idle) = (busy - machine_before.0, idle - machine_before.1);
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let number_after = |label: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    // "     99%    4.30ms" (us, ms or s).
    let percentile_ms = |label: &str| -> Option<f64> {
        let value = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))?
            .trim()
            .to_owned();
        let (number, scale) = if let Some(n) = value.strip_suffix("us") {
            (n, 0.001)
        } else if let Some(n) = value.strip_suffix("ms") {
            (n, 1.0)
        } else {
            (value.strip_suffix('s')?, 1000.0)
        };
        number.parse::<f64>().ok().map(|n| round3(n * scale))
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    let errors = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    json!({
        "requests_per_second": number_after("Requests/sec:"),
        "requests": requests,
        "errors": errors,
        "proxy_cpu_seconds": round3(used),
        "cpu_us_per_request": requests.filter(|r| *r > 0.0).map(|r| round3(used * 1e6 / r)),
        // What else a request costs on this machine (the same backends for both
        // proxies; wrk, the kernel's loopback): the proxy is bounded by the cores
        // it shares with them.
        "backends_cpu_us_per_request": requests.filter(|r| *r > 0.0).map(|r| round3(backends_used * 1e6 / r)),
        "machine_busy_cpu_us_per_request": requests.filter(|r| *r > 0.0).map(|r| round3(busy * 1e6 / r)),
        "machine_idle_share": if busy + idle > 0.0 { json!(round3(idle / (busy + idle))) } else { Value::Null },
        "p50_ms": percentile_ms("50%"),
        "p90_ms": percentile_ms("90%"),
        "p99_ms": percentile_ms("99%"),
    })
}

/// The run with the highest throughput (the one least disturbed by other load).
fn best(runs: &[Value]) -> Value {
    runs.iter()
        .max_by(|a, b| {
            let rps = |v: &Value| v["requests_per_second"].as_f64().unwrap_or(0.0);
            rps(a).total_cmp(&rps(b))
        })
        .cloned()
        .unwrap_or(Value::Null)
}

/// CPU seconds (user + system) used so far by this process's threads named `name`.
fn threads_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .map(|task| stat_cpu_seconds(&task.path().join("stat")))
        .sum()
}

/// CPU seconds of the whole machine so far: (busy, idle), from `/proc/stat`.
fn machine_cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    let total: f64 = ticks.iter().take(8).sum();
    ((total - idle) / 100.0, idle / 100.0)
}

/// CPU seconds used so far by a process and its children (nginx's workers).
fn process_tree_cpu_seconds(pid: u32) -> f64 {
    let own = stat_cpu_seconds(std::path::Path::new(&format!("/proc/{pid}/stat")));
    let children: f64 = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|child| stat_cpu_seconds(std::path::Path::new(&format!("/proc/{child}/stat"))))
        .sum();
    own + children
}

/// utime + stime from a `/proc/.../stat` file, assuming the usual 100 ticks a second.
fn stat_cpu_seconds(path: &std::path::Path) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and
    // 13th of them.
    let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn spawn_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// `connections` keep-alive connections, each sending requests back to back for the
/// warm-up then `duration`; latencies are recorded after the warm-up only.
async fn drive(
    target: SocketAddr,
    connections: usize,
    duration: Duration,
    cpu_seconds: Box<dyn Fn() -> f64 + Send>,
) -> Value {
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + duration;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from).await;
        let before = cpu_seconds();
        tokio::time::sleep_until(end).await;
        cpu_seconds() - before
    });
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            'reconnect: while Instant::now() < end {
                let Ok(stream) = TcpStream::connect(target).await else {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let Ok((mut sender, connection)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    errors += 1;
                    continue;
                };
                tokio::spawn(connection);
                loop {
                    let sent_at = Instant::now();
                    if sent_at >= end {
                        break 'reconnect;
                    }
                    if sender.ready().await.is_err() {
                        errors += 1;
                        continue 'reconnect;
                    }
                    let request = Request::get("/")
                        .header(http::header::HOST, "bench.local")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let (ok, closing) = match sender.send_request(request).await {
                        Ok(response) => {
                            let good = response.status().is_success();
                            let closing = response
                                .headers()
                                .get(http::header::CONNECTION)
                                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                            (
                                response.into_body().collect().await.is_ok() && good,
                                closing,
                            )
                        }
                        Err(_) => (false, true),
                    };
                    if !ok {
                        errors += 1;
                        continue 'reconnect;
                    }
                    if sent_at >= measure_from {
                        let micros = sent_at.elapsed().as_micros();
                        latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                    if closing {
                        continue 'reconnect;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let cpu = cpu.await.unwrap_or(0.0);
    latencies.sort_unstable();
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        round3(f64::from(latencies[index]) / 1000.0)
    };
    json!({
        "requests": latencies.len(),
        "errors": errors,
        "requests_per_second": round3(latencies.len() as f64 / duration.as_secs_f64()),
        "proxy_cpu_seconds": round3(cpu),
        "cpu_us_per_request": if latencies.is_empty() { 0.0 } else { round3(cpu * 1e6 / latencies.len() as f64) },
        "p50_ms": quantile(0.5),
        "p90_ms": quantile(0.9),
        "p99_ms": quantile(0.99),
        "p999_ms": quantile(0.999),
    })
}

fn which_nginx() -> Option<std::path::PathBuf> {
    which_binary("nginx")
}

fn which_binary(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_nginx(
    binary: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
    workers: usize,
    backends: &[SocketAddr],
) -> std::process::Child {
    let servers: String = backends
        .iter()
        .map(|b| format!("        server {b};\n"))
        .collect();
    let d = dir.display();
    // One process per worker: with master_process off nginx is a single process, the
    // equivalent of one worker; more workers need the master.
    let process_model = if workers <= 1 {
        "master_process off;".to_owned()
    } else {
        format!("worker_processes {workers};")
    };
    let config = format!(
        r#"daemon off;
{process_model}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream backends {{
        least_conn;
{servers}        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, config).unwrap();
    std::process::Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Asks nginx to stop (the master takes its workers along), killing it if it lingers.
fn stop_nginx(binary: &std::path::Path, dir: &std::path::Path, mut child: std::process::Child) {
    let _ = std::process::Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-s", "stop"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    for _ in 0..100 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

async fn wait_until_listening(address: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(address).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
