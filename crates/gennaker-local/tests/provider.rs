//! The local provider with real child processes (the workspace's `demo-app`), a real
//! store and real health checks on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use gennaker_deploy::{Capacity, HealthState, Provider};
use gennaker_store::testing::TestBackend;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_come_up_on_distinct_ports_and_resize() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider().await;
    let created = provider
        .create_server_group(request(
            "shop",
            "s1",
            Capacity::fixed(3),
            demo_spec(&["--version", "v1"]),
        ))
        .await
        .unwrap();
    assert_eq!(created.name, "shop-prod-v000");
    assert_eq!(created.instances.len(), 3);
    let group = wait_for(&provider, "shop-prod-v000", "3 instances up", |g| {
        g.instances.len() == 3 && g.instances.iter().all(|i| i.health == HealthState::Up)
    })
    .await;
    let mut ports: Vec<u16> = group.instances.iter().map(port_of).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "ports are distinct: {ports:?}");
    for instance in &group.instances {
        let body = get_json(&format!("http://{}/", instance.address.as_deref().unwrap())).await;
        assert_eq!(body["version"], "v1");
        assert_eq!(body["instance"], instance.id.as_str());
        assert_eq!(body["port"], port_of(instance));
        assert_eq!(body["pid"], pid_of(instance));
    }

    // The same origin again: the same group, nothing new started.
    let again = provider
        .create_server_group(request(
            "shop",
            "s1",
            Capacity::fixed(3),
            demo_spec(&["--version", "v1"]),
        ))
        .await
        .unwrap();
    assert_eq!(again.name, "shop-prod-v000");
    assert_eq!(provider.server_groups("shop").await.unwrap().len(), 1);
    assert_eq!(env.marked_pids().len(), 3);

    // 3 → 1: the extras are stopped.
    let pids: Vec<i32> = group.instances.iter().map(pid_of).collect();
    let resized = provider
        .resize_server_group("local", "shop-prod-v000", Capacity::fixed(1))
        .await
        .unwrap();
    assert_eq!(resized.instances.len(), 1);
    assert_eq!(resized.instances[0].id, "shop-prod-v000-0");
    for pid in &pids[1..] {
        wait_gone(*pid).await;
    }
    assert!(is_running(pids[0]));

    // 1 → 2: a new instance comes up next to the old one.
    let two = Capacity {
        min: 1,
        max: 3,
        desired: 2,
    };
    provider
        .resize_server_group("local", "shop-prod-v000", two)
        .await
        .unwrap();
    let group = wait_for(&provider, "shop-prod-v000", "2 instances up", |g| {
        g.instances.len() == 2 && g.instances.iter().all(|i| i.health == HealthState::Up)
    })
    .await;
    assert_eq!(pid_of(&group.instances[0]), pids[0]);
    assert_eq!(group.capacity.desired, 2);
    // Resizing to the same capacity changes nothing.
    let same = provider
        .resize_server_group("local", "shop-prod-v000", two)
        .await
        .unwrap();
    assert_eq!(same.instances.len(), 2);
    assert!(
        provider
            .resize_server_group(
                "local",
                "shop-prod-v000",
                Capacity {
                    min: 2,
                    max: 1,
                    desired: 2
                }
            )
            .await
            .is_err()
    );

    // The next create of the cluster is v001.
    let next = provider
        .create_server_group(request(
            "shop",
            "s2",
            Capacity::fixed(1),
            demo_spec(&["--version", "v2"]),
        ))
        .await
        .unwrap();
    assert_eq!(next.name, "shop-prod-v001");

    let all: Vec<i32> = env.marked_pids();
    provider.destroy_all().await.unwrap();
    for pid in all {
        wait_gone(pid).await;
    }
    assert!(provider.server_groups("shop").await.unwrap().is_empty());
    assert!(env.marked_pids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_instance_is_restarted_and_counted() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider().await;
    provider
        .create_server_group(request("crash", "s1", Capacity::fixed(1), demo_spec(&[])))
        .await
        .unwrap();
    let group = wait_for(&provider, "crash-prod-v000", "up", |g| {
        g.up_instances() == 1
    })
    .await;
    let first = pid_of(&group.instances[0]);
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let group = wait_for(&provider, "crash-prod-v000", "restarted and up", |g| {
        let i = &g.instances[0];
        i.restarts == 1 && i.health == HealthState::Up && pid_of(i) != first
    })
    .await;
    assert!(!is_running(first));
    assert_eq!(group.instances[0].restarts, 1);
    assert_eq!(env.marked_pids(), vec![pid_of(&group.instances[0])]);
    provider
        .destroy_server_group("local", "crash-prod-v000")
        .await
        .unwrap();
    wait_gone(pid_of(&group.instances[0])).await;
    // Destroying what is gone succeeds.
    provider
        .destroy_server_group("local", "crash-prod-v000")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_version_never_comes_up() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider().await;
    provider
        .create_server_group(request(
            "sick",
            "s1",
            Capacity::fixed(2),
            demo_spec(&["--unhealthy"]),
        ))
        .await
        .unwrap();
    // Down, for the right reason (early probes may find the port not yet open).
    let group = wait_for(&provider, "sick-prod-v000", "down with 503", |g| {
        g.instances.iter().all(|i| {
            i.health == HealthState::Down && i.reason.as_deref().unwrap_or("").contains("503")
        })
    })
    .await;
    assert!(
        group.instances[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("503"),
        "{:?}",
        group.instances[0].reason
    );
    // Many more probes later it is still not up (and still running: no restarts).
    for _ in 0..20 {
        let group = provider
            .server_group("local", "sick-prod-v000")
            .await
            .unwrap()
            .unwrap();
        assert!(group.instances.iter().all(|i| i.health != HealthState::Up));
        assert!(group.instances.iter().all(|i| i.restarts == 0));
        assert!(!group.is_healthy());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    provider.destroy_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_instances_are_out_of_service() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider().await;
    provider
        .create_server_group(request("dis", "s1", Capacity::fixed(1), demo_spec(&[])))
        .await
        .unwrap();
    wait_for(&provider, "dis-prod-v000", "up", |g| g.up_instances() == 1).await;
    for _ in 0..2 {
        let disabled = provider
            .disable_server_group("local", "dis-prod-v000")
            .await
            .unwrap();
        assert!(disabled.disabled);
        assert_eq!(disabled.instances[0].health, HealthState::OutOfService);
    }
    for _ in 0..2 {
        let enabled = provider
            .enable_server_group("local", "dis-prod-v000")
            .await
            .unwrap();
        assert!(!enabled.disabled);
        assert_eq!(enabled.instances[0].health, HealthState::Up);
    }
    provider.destroy_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_artifact_is_pinned_by_its_hash() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider().await;
    let source = env.dir.path().join("app-bin");
    std::fs::copy(demo_app(), &source).unwrap();
    let spec = json!({
        "artifact": {"path": source.display().to_string()},
        "args": ["--version", "pinned"],
        "healthCheck": {"path": "/health"},
        "gracePeriodSeconds": 5
    });
    provider
        .create_server_group(request("pin", "s1", Capacity::fixed(1), spec.clone()))
        .await
        .unwrap();
    let group = wait_for(&provider, "pin-prod-v000", "up", |g| g.up_instances() == 1).await;
    let pinned = provider.artifact("local", "pin-prod-v000").unwrap();
    assert_eq!(pinned.sha256, sha256_of(&source));
    assert!(
        pinned
            .path
            .ends_with(format!("artifacts/sha256/{}", pinned.sha256))
    );
    assert_eq!(
        group.instances[0].details["artifactSha256"],
        json!(pinned.sha256)
    );

    // The source changes: a restart still runs the cached, pinned bytes.
    std::fs::remove_file(&source).unwrap();
    std::fs::write(&source, "#!/bin/sh\nexit 3\n").unwrap();
    let first = pid_of(&group.instances[0]);
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let group = wait_for(&provider, "pin-prod-v000", "restarted and up", |g| {
        g.instances[0].restarts == 1 && g.up_instances() == 1
    })
    .await;
    let body = get_json(&format!(
        "http://{}/",
        group.instances[0].address.as_deref().unwrap()
    ))
    .await;
    assert_eq!(body["version"], "pinned");

    // A new group from the changed file is a new artifact.
    provider
        .create_server_group(request("pin", "s2", Capacity::fixed(0), spec))
        .await
        .unwrap();
    let changed = provider.artifact("local", "pin-prod-v001").unwrap();
    assert_eq!(changed.sha256, sha256_of(&source));
    assert_ne!(changed.sha256, pinned.sha256);
    assert_eq!(provider.artifact("local", "pin-prod-v000").unwrap(), pinned);
    provider.destroy_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_artifacts_become_specs_for_http_and_embedded_files() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider().await;
    let spec = provider
        .artifact_spec(&json!({"type": "http/file", "name": "app",
            "reference": "https://builds.example/app-1.4"}))
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(spec),
        json!({"artifact": {"url": "https://builds.example/app-1.4"}})
    );
    let refused = provider
        .artifact_spec(&json!({"type": "docker/image", "name": "gcr.io/acme/app",
            "reference": "gcr.io/acme/app:1.4"}))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("not 'docker/image'") && refused.contains("kubernetes"),
        "{refused}"
    );
    // An embedded script that runs the demo app: cached, pinned and run like a file.
    let script = format!("#!/bin/sh\nexec {} \"$@\"\n", demo_app().display());
    let encoded = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(script.as_bytes())
    };
    let mut spec = provider
        .artifact_spec(
            &json!({"type": "embedded/base64", "name": "launcher", "reference": encoded}),
        )
        .unwrap();
    for (key, value) in demo_spec(&["--version", "embedded"]).as_object().unwrap() {
        if key != "command" {
            spec.insert(key.clone(), value.clone());
        }
    }
    provider
        .create_server_group(request(
            "emb",
            "s1",
            Capacity::fixed(1),
            serde_json::Value::Object(spec),
        ))
        .await
        .unwrap();
    wait_for(&provider, "emb-prod-v000", "up", |g| g.up_instances() == 1).await;
    let pinned = provider.artifact("local", "emb-prod-v000").unwrap();
    assert_eq!(std::fs::read(&pinned.path).unwrap(), script.as_bytes());
    provider
        .destroy_server_group("local", "emb-prod-v000")
        .await
        .unwrap();
    let too_big = "A".repeat(gennaker_local::MAX_EMBEDDED_BYTES * 2);
    let refused = provider
        .create_server_group(request(
            "emb",
            "s2",
            Capacity::fixed(1),
            json!({"artifact": {"base64": too_big}}),
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("larger than"), "{refused}");
    let no_url = provider
        .artifact_spec(&json!({"type": "http/file", "name": "app"}))
        .unwrap_err()
        .to_string();
    assert!(no_url.contains("has no reference"), "{no_url}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_before_anything_is_stored() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider().await;
    for spec in [
        json!({"command": "/bin/true", "unknown": 1}),
        json!({"artifact": {"path": "/does/not/exist"}}),
    ] {
        assert!(
            provider
                .create_server_group(request("bad", "s1", Capacity::fixed(1), spec))
                .await
                .is_err()
        );
    }
    assert!(
        provider
            .create_server_group(request(
                "bad",
                "s1",
                Capacity {
                    min: 2,
                    max: 1,
                    desired: 1
                },
                demo_spec(&[])
            ))
            .await
            .is_err()
    );
    assert!(provider.server_groups("bad").await.unwrap().is_empty());
}

async fn readoption(backend: TestBackend) {
    let env = TestEnv::new(backend).await;
    let a = env.provider().await;
    a.create_server_group(request("keep", "s1", Capacity::fixed(2), demo_spec(&[])))
        .await
        .unwrap();
    let group = wait_for(&a, "keep-prod-v000", "2 up", |g| g.up_instances() == 2).await;
    let pids: Vec<i32> = group.instances.iter().map(pid_of).collect();
    a.shutdown().await;
    // Supervision stopped; the processes live on.
    assert!(pids.iter().all(|pid| is_running(*pid)));
    // One instance dies while no provider runs.
    kill(Pid::from_raw(pids[1]), Signal::SIGKILL).unwrap();
    wait_gone(pids[1]).await;

    let b = env.provider().await;
    let group = wait_for(&b, "keep-prod-v000", "adopted and restarted", |g| {
        g.up_instances() == 2 && g.instances[1].restarts == 1
    })
    .await;
    assert_eq!(
        pid_of(&group.instances[0]),
        pids[0],
        "the live instance is adopted"
    );
    assert_eq!(group.instances[0].restarts, 0);
    assert_ne!(pid_of(&group.instances[1]), pids[1]);
    let mut marked = env.marked_pids();
    marked.sort_unstable();
    let mut expected: Vec<i32> = group.instances.iter().map(pid_of).collect();
    expected.sort_unstable();
    assert_eq!(marked, expected, "nothing started twice");
    // Creating again with the same origin (a repeated task) still finds the group.
    let again = b
        .create_server_group(request("keep", "s1", Capacity::fixed(2), demo_spec(&[])))
        .await
        .unwrap();
    assert_eq!(again.name, "keep-prod-v000");
    assert_eq!(b.server_groups("keep").await.unwrap().len(), 1);

    b.destroy_server_group("local", "keep-prod-v000")
        .await
        .unwrap();
    for pid in expected {
        wait_gone(pid).await;
    }
    assert!(env.marked_pids().is_empty());
    b.shutdown().await;

    // A third start finds nothing to adopt or restart.
    let c = env.provider().await;
    assert!(c.server_groups("keep").await.unwrap().is_empty());
    assert!(env.marked_pids().is_empty());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_outlive_the_provider_and_are_readopted_sqlite() {
    readoption(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_outlive_the_provider_and_are_readopted_postgres() {
    readoption(TestBackend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_of_a_forgotten_group_are_stopped_at_start() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let a = env.provider().await;
    a.create_server_group(request("orphan", "s1", Capacity::fixed(2), demo_spec(&[])))
        .await
        .unwrap();
    let group = wait_for(&a, "orphan-prod-v000", "2 up", |g| g.up_instances() == 2).await;
    a.shutdown().await;
    // A crash after the record was deleted but before the processes were stopped.
    env.forget_group("local/orphan-prod-v000").await;
    let b = env.provider().await;
    for instance in &group.instances {
        wait_gone(pid_of(instance)).await;
    }
    assert!(env.marked_pids().is_empty());
    assert!(b.server_groups("orphan").await.unwrap().is_empty());
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_after_each_step_stays_idempotent() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider().await;
    let create = || request("idem", "s1", Capacity::fixed(1), demo_spec(&[]));
    let first = provider.create_server_group(create()).await.unwrap();
    wait_for(&provider, &first.name, "up", |g| g.up_instances() == 1).await;
    assert_eq!(
        provider.create_server_group(create()).await.unwrap().name,
        first.name
    );
    provider
        .disable_server_group("local", &first.name)
        .await
        .unwrap();
    assert_eq!(
        provider.create_server_group(create()).await.unwrap().name,
        first.name
    );
    provider
        .resize_server_group("local", &first.name, Capacity::fixed(2))
        .await
        .unwrap();
    let again = provider.create_server_group(create()).await.unwrap();
    assert_eq!(again.name, first.name);
    assert_eq!(again.capacity.desired, 2);
    provider.shutdown().await;
    let restarted = env.provider().await;
    assert_eq!(
        restarted.create_server_group(create()).await.unwrap().name,
        first.name
    );
    assert_eq!(restarted.server_groups("idem").await.unwrap().len(), 1);
    restarted.destroy_all().await.unwrap();
    assert!(env.marked_pids().is_empty());
}

/// End to end through the real load balancer.
/// Polls `web-lb` until its weights are `expected`; fails with the last ones after
/// ten seconds.
async fn weights_become(
    provider: &gennaker_local::LocalProvider,
    expected: std::collections::BTreeMap<String, u32>,
) -> gennaker_deploy::LoadBalancer {
    use gennaker_deploy::TrafficRouter;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let routed = provider
            .load_balancer("local", "web-lb")
            .await
            .unwrap()
            .unwrap();
        if routed.weights == expected {
            return routed;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "weights {:?}, expected {expected:?}",
            routed.weights
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_weights_follow_up_instances_and_overrides() {
    use gennaker_deploy::{LoadBalancerSpec, TrafficRouter};
    use std::collections::BTreeMap;

    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider().await;
    let lb = provider
        .upsert_load_balancer(LoadBalancerSpec {
            name: "web-lb".to_owned(),
            account: "local".to_owned(),
            application: "web".to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            allowed_cidrs: Vec::new(),
            ejection_failures: 5,
        })
        .await
        .unwrap();
    assert!(!lb.address.ends_with(":0"));
    provider
        .create_server_group(request(
            "web",
            "s1",
            Capacity::fixed(3),
            demo_spec(&["--version", "v1"]),
        ))
        .await
        .unwrap();
    provider
        .create_server_group(request(
            "web",
            "s2",
            Capacity::fixed(1),
            demo_spec(&["--version", "v2"]),
        ))
        .await
        .unwrap();
    wait_for(&provider, "web-prod-v000", "up", |g| g.up_instances() == 3).await;
    wait_for(&provider, "web-prod-v001", "up", |g| g.up_instances() == 1).await;
    // The routing table follows health changes a moment after the groups show them.
    let routed = weights_become(
        &provider,
        BTreeMap::from([
            ("web-prod-v000".to_owned(), 75),
            ("web-prod-v001".to_owned(), 25),
        ]),
    )
    .await;
    let body = get_json(&format!("http://{}/", routed.address)).await;
    assert!(body["version"] == "v1" || body["version"] == "v2");

    let fixed = provider
        .set_weights(
            "local",
            "web-lb",
            BTreeMap::from([("web-prod-v001".to_owned(), 1)]),
        )
        .await
        .unwrap();
    assert_eq!(fixed.weights["web-prod-v001"], 100);
    for _ in 0..10 {
        let body = get_json(&format!("http://{}/", routed.address)).await;
        assert_eq!(body["version"], "v2");
    }
    let table = provider.routes("local", "web-lb").unwrap();
    assert_eq!(table.iter().map(|g| g.weight).collect::<Vec<_>>(), [0, 1]);

    let default = provider
        .set_weights("local", "web-lb", BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(default.weights["web-prod-v000"], 75);
    provider
        .disable_server_group("local", "web-prod-v000")
        .await
        .unwrap();
    weights_become(
        &provider,
        BTreeMap::from([("web-prod-v001".to_owned(), 100)]),
    )
    .await;
    provider.destroy_all().await.unwrap();
    assert!(
        provider
            .load_balancer("local", "web-lb")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_urls_on_this_machine_are_refused_by_default_but_health_checks_are_not() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    let app = axum::Router::new().route(
        "/app",
        axum::routing::get(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { "#!/bin/sh\n" }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The default outbound policy: 127.0.0.1 is not reachable for artifacts.
    let provider = env
        .provider_with_settings(gennaker_local::LocalSettings {
            host: gennaker_local::HostPolicy::new(&env.host_settings()).unwrap(),
            outbound: gennaker_outbound::OutboundPolicy::default(),
            ..fast_settings()
        })
        .await;
    // An address: refused before any connection. A name (`localhost`): refused by the
    // policy's resolver inside the download. Both for good, naming the URL, why, and
    // the allow-list entry that would let it through.
    let url = format!("http://{address}/app");
    let spec = json!({"artifact": {"url": url}, "gracePeriodSeconds": 5});
    let refused = provider
        .create_server_group(request("ssrf", "s1", Capacity::fixed(1), spec))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, gennaker_deploy::DeployError::Invalid(_)),
        "{refused:?}"
    );
    assert_eq!(
        refused.to_string(),
        format!(
            "artifact url '{url}' is refused: {url} resolves to 127.0.0.1, a loopback address, which outbound requests may not reach; an operator can allow it with [outbound] allow = [\"127.0.0.1/32\"] in gennaker.toml"
        )
    );
    let url = format!("http://localhost:{}/app", address.port());
    let spec = json!({"artifact": {"url": url}, "gracePeriodSeconds": 5});
    let refused = provider
        .create_server_group(request("ssrf", "s2", Capacity::fixed(1), spec))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, gennaker_deploy::DeployError::Invalid(_)),
        "{refused:?}"
    );
    let message = refused.to_string();
    assert!(
        message.starts_with(&format!(
            "artifact url '{url}' is refused: localhost resolves to "
        )),
        "{message}"
    );
    assert!(message.contains("a loopback address"), "{message}");
    assert!(
        message.contains("[outbound] allow = [\"localhost\"]"),
        "{message}"
    );
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    // Health checks of instances on 127.0.0.1 still work under that policy.
    provider
        .create_server_group(request(
            "shop",
            "s1",
            Capacity::fixed(1),
            demo_spec(&["--version", "v1"]),
        ))
        .await
        .unwrap();
    wait_for(&provider, "shop-prod-v000", "up", |g| g.up_instances() == 1).await;
    provider.destroy_all().await.unwrap();
}

/// The Prometheus target file lists the started instances with their labels, and
/// follows resizes; instances know their server group (`SERVER_GROUP`), so their own
/// metrics carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_target_file_follows_the_instances() {
    let env = TestEnv::new(TestBackend::Sqlite).await;
    let provider = env.provider().await;
    let targets_path = env.data.join(gennaker_local::TARGETS_FILE);
    provider
        .create_server_group(request(
            "shop",
            "s1",
            Capacity::fixed(2),
            demo_spec(&["--version", "v1"]),
        ))
        .await
        .unwrap();
    let group = wait_for(&provider, "shop-prod-v000", "2 instances up", |g| {
        g.instances.len() == 2 && g.instances.iter().all(|i| i.health == HealthState::Up)
    })
    .await;
    let read = || -> Vec<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(&targets_path).unwrap()).unwrap()
    };
    let targets = read();
    assert_eq!(targets.len(), 2, "{targets:#?}");
    for (entry, instance) in targets.iter().zip(&group.instances) {
        assert_eq!(
            entry["targets"],
            json!([format!("127.0.0.1:{}", port_of(instance))])
        );
        assert_eq!(
            entry["labels"],
            json!({"account": "local", "app": "shop", "cluster": "shop-prod",
                   "serverGroup": "shop-prod-v000", "version": "v000", "instance": instance.id})
        );
    }
    assert!(
        !targets_path.with_extension("json.tmp").exists(),
        "written through a temporary file that is renamed"
    );
    let metrics = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!(
            "http://{}/",
            group.instances[0].address.as_deref().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = reqwest::get(format!(
        "http://{}/metrics",
        group.instances[0].address.as_deref().unwrap()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(text.contains("server_group=\"shop-prod-v000\""), "{text}");

    provider
        .resize_server_group("local", "shop-prod-v000", Capacity::fixed(1))
        .await
        .unwrap();
    assert_eq!(read().len(), 1);
    provider
        .destroy_server_group("local", "shop-prod-v000")
        .await
        .unwrap();
    assert_eq!(read(), Vec::<serde_json::Value>::new());
}

/// After a restart, the instances adopted are routed as soon as the load balancer
/// listens again: health is re-learnt by a probe at adoption, not after a whole
/// `health_interval`, so no request finds the balancer without backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_provider_routes_its_adopted_instances_as_soon_as_it_listens() {
    use gennaker_deploy::{LoadBalancerSpec, TrafficRouter};
    use gennaker_local::lb::LoadBalancers;
    use gennaker_local::{HostPolicy, LocalProvider, LocalSettings};
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    let env = TestEnv::new(TestBackend::Sqlite).await;
    // Probes of instances that came up are far apart, as in production.
    let start = |lbs: LoadBalancers| {
        LocalProvider::start(
            Arc::new(env.store.clone()),
            &env.data,
            lbs,
            LocalSettings {
                host: HostPolicy::new(&env.host_settings()).unwrap(),
                health_interval: Duration::from_secs(60),
                ..fast_settings()
            },
            CancellationToken::new(),
        )
    };
    let first_lbs = LoadBalancers::default();
    let first = start(first_lbs.clone()).await.unwrap();
    let spec = LoadBalancerSpec {
        name: "web-lb".to_owned(),
        account: "local".to_owned(),
        application: "web".to_owned(),
        listen: "127.0.0.1:0".to_owned(),
        allowed_cidrs: Vec::new(),
        ejection_failures: 5,
    };
    let address = first.upsert_load_balancer(spec).await.unwrap().address;
    first
        .create_server_group(request(
            "web",
            "s1",
            Capacity::fixed(2),
            demo_spec(&["--version", "v1"]),
        ))
        .await
        .unwrap();
    wait_for(&first, "web-prod-v000", "up", |g| g.up_instances() == 2).await;
    // The server goes away: supervision and the listener end, the instances live on.
    first.shutdown().await;
    first_lbs.shutdown().await;

    let second = start(LoadBalancers::default()).await.unwrap();
    let table = second.routes("local", "web-lb").unwrap();
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!(
        table[0].backends.len(),
        2,
        "both adopted instances are routed at once: {table:?}"
    );
    let answer = reqwest::get(format!("http://{address}/")).await.unwrap();
    assert_eq!(answer.status(), 200, "the first request is served");
    second.destroy_all().await.unwrap();
}
