//! The trigger passes driven by a test: registry polls against a real Docker registry
//! (Debian's `docker-registry`, images pushed through its HTTP API) and cron passes on
//! a hand-driven clock, on real databases (two `Triggers` on one PostgreSQL as two
//! servers are).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gennaker_engine::{Clock, Engine, EngineConfig, Execution, ManualClock, StageRegistry};
use gennaker_store::testing::{FaultyStore, StoreFaults, TestBackend, TestDatabase};
use gennaker_store::{ExecutionQuery, PipelineRecord, PipelineSave, SqlStore, Store, StoreError};
use gennaker_triggers::{DockerAccount, Event, TriggerSettings, Triggers};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const APP: &str = "shop";

fn at(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// A database with the application and the trigger user in it; the clock starts far
/// after the pipelines' save time (the wall clock), so no tick is "before the save".
async fn database(backend: TestBackend) -> (TestDatabase, SqlStore) {
    let (db, store) = TestDatabase::store(backend).await.unwrap();
    store
        .create_application(APP, &json!({"name": APP, "email": "t@example.com"}), "test")
        .await
        .unwrap();
    store.create_user("triggers", false, &[]).await.unwrap();
    (db, store)
}

/// Triggers (and the engine they start executions on, its workers not running: the
/// executions written are what is counted) on `store` at `clock`'s time.
fn triggers_on(store: &SqlStore, clock: &ManualClock, settings: TriggerSettings) -> Triggers {
    let engine = Engine::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        StageRegistry::standard(),
        Arc::new(clock.clone()),
        EngineConfig::default(),
    )
    .unwrap();
    Triggers::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        engine,
        Arc::new(clock.clone()),
        settings,
    )
    .unwrap()
}

/// Like [`triggers_on`], reading applications, pipelines and users through `store`.
fn triggers_through(store: Arc<dyn Store>, sql: &SqlStore, clock: &ManualClock) -> Triggers {
    Triggers::new(
        store,
        Arc::new(sql.clone()),
        engine_on(sql, clock),
        Arc::new(clock.clone()),
        TriggerSettings::default(),
    )
    .unwrap()
}

fn engine_on(store: &SqlStore, clock: &ManualClock) -> Engine {
    Engine::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        StageRegistry::standard(),
        Arc::new(clock.clone()),
        EngineConfig::default(),
    )
    .unwrap()
}

async fn save(store: &SqlStore, name: &str, triggers: Value) -> PipelineRecord {
    let config = json!({"name": name, "application": APP, "triggers": triggers,
        "stages": [{"refId": "1", "type": "wait", "name": "w", "waitTime": 0}]});
    store
        .save_pipeline(
            APP,
            &PipelineSave {
                id: None,
                name: name.to_owned(),
                config,
            },
            "test",
        )
        .await
        .unwrap()
        .0
}

/// The executions of a pipeline, oldest first.
async fn executions(engine: &Engine, pipeline: &PipelineRecord) -> Vec<Execution> {
    engine
        .executions(&ExecutionQuery {
            pipeline_config_id: Some(pipeline.id.clone()),
            limit: 1000,
            oldest_first: true,
            ..ExecutionQuery::default()
        })
        .await
        .unwrap()
}

fn scheduled_times(executions: &[Execution]) -> Vec<i64> {
    executions
        .iter()
        .map(|e| e.trigger["scheduledTime"].as_i64().unwrap())
        .collect()
}

// ---------------------------------------------------------------- crash and recovery

/// Fails the `nth` call (from 0) of `method`, as a server that died there would stop.
#[derive(Debug)]
struct CrashAt {
    method: &'static str,
    nth: usize,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl StoreFaults for CrashAt {
    async fn before(&self, method: &'static str) -> Result<(), StoreError> {
        if method == self.method && self.calls.fetch_add(1, Ordering::SeqCst) == self.nth {
            return Err(StoreError::Conflict("injected crash".into()));
        }
        Ok(())
    }
}

fn webhook(n: i64) -> Event {
    Event::Webhook {
        source: "ci".into(),
        body: json!({"n": n}).to_string(),
        signatures: Default::default(),
        delivery: Some(format!("delivery-{n}")),
    }
}

#[tokio::test]
async fn an_event_whose_handler_died_half_way_is_finished_once_by_recovery() {
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let (_db, store) = database(backend).await;
        let clock = ManualClock::new(at("2030-01-09T00:00:00Z"));
        let engine = engine_on(&store, &clock);
        let mut pipelines = Vec::new();
        for name in ["a", "b", "c"] {
            pipelines.push(
                save(
                    &store,
                    name,
                    json!([{"type": "webhook", "enabled": true, "source": "ci"}]),
                )
                .await,
            );
        }
        let counts = || async {
            let mut counts = Vec::new();
            for pipeline in &pipelines {
                counts.push(executions(&engine, pipeline).await.len());
            }
            counts
        };
        // The server dies after the first pipeline fired, before the second (its
        // store call for the trigger user fails): the event stays pending.
        let dying = triggers_through(
            Arc::new(FaultyStore::new(
                store.clone(),
                Arc::new(CrashAt {
                    method: "get_user",
                    nth: 1,
                    calls: AtomicUsize::new(0),
                }),
            )),
            &store,
            &clock,
        );
        dying.receive(webhook(1)).await.unwrap_err();
        assert_eq!(counts().await.iter().sum::<usize>(), 1);

        // Restarted: while the dead handler's claim lasts, recovery leaves the event.
        let restarted = triggers_on(&store, &clock, TriggerSettings::default());
        restarted.recover().await.unwrap();
        assert_eq!(counts().await.iter().sum::<usize>(), 1);
        // After it, recovery finishes it: every pipeline once.
        clock.advance(TriggerSettings::default().event_claim + Duration::from_secs(1));
        restarted.recover().await.unwrap();
        assert_eq!(counts().await, [1, 1, 1]);
        // Nothing fires again: another recovery, a redelivery, another server.
        restarted.recover().await.unwrap();
        let receipt = restarted.receive(webhook(1)).await.unwrap();
        assert!(receipt.duplicate);
        let other = triggers_on(&store, &clock, TriggerSettings::default());
        other.receive(webhook(1)).await.unwrap();
        clock.advance(Duration::from_secs(120));
        other.recover().await.unwrap();
        assert_eq!(counts().await, [1, 1, 1]);
        // The application's log has the event once, with all three fired.
        let log = restarted.events(APP, 100).await.unwrap();
        assert_eq!(log.len(), 1, "{log:?}");
        let fired = log[0]["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["fired"] == true)
            .count();
        assert_eq!(fired, 3, "{log:?}");
    }
}

// ---------------------------------------------------------------- Docker registry

/// Debian's Docker registry (distribution v2) on a random 127.0.0.1 port, storing in a
/// temporary directory; killed when dropped.
struct Registry {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

impl Registry {
    async fn start() -> Option<Registry> {
        if !std::path::Path::new(REGISTRY_BIN).exists() {
            eprintln!(
                "skipped: {REGISTRY_BIN} is absent (scripts/test.sh installs docker-registry)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = http.get(format!("{}/v2/", registry.url)).send().await
                && response.status().is_success()
            {
                return Some(registry);
            }
            assert!(Instant::now() < deadline, "the registry did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Uploads a blob (monolithic upload: POST for a session, PUT with the digest).
    async fn blob(&self, http: &reqwest::Client, repository: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let started = http
            .post(format!("{}/v2/{repository}/blobs/uploads/", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 202, "{:?}", started.text().await);
        let location = started.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.url)
        };
        let mut url = reqwest::Url::parse(&location).unwrap();
        url.query_pairs_mut().append_pair("digest", &digest);
        let put = http
            .put(url)
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{:?}", put.text().await);
        digest
    }

    /// Pushes an image whose only layer is `content` as `repository:tag`; returns the
    /// manifest's digest (the same content gives the same digest).
    async fn push(&self, repository: &str, tag: &str, content: &str) -> String {
        let http = reqwest::Client::new();
        let layer = content.as_bytes();
        let layer_digest = self.blob(&http, repository, layer).await;
        let image_config = json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]}})
        .to_string();
        let config_digest = self.blob(&http, repository, image_config.as_bytes()).await;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "size": image_config.len(), "digest": config_digest},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": layer.len(), "digest": layer_digest}]
        })
        .to_string();
        let response = http
            .put(format!("{}/v2/{repository}/manifests/{tag}", self.url))
            .header(
                "content-type",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{:?}", response.text().await);
        let digest = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(manifest.as_bytes()))
        );
        assert_eq!(
            response.headers()["docker-content-digest"]
                .to_str()
                .unwrap(),
            digest
        );
        digest
    }
}

#[tokio::test]
async fn a_real_registry_fires_new_tags_once_and_old_or_unmatched_tags_never() {
    let Some(registry) = Registry::start().await else {
        return;
    };
    let (_db, store) = database(TestBackend::Sqlite).await;
    let clock = ManualClock::new(at("2030-01-09T00:00:00Z"));
    let settings = TriggerSettings {
        docker_accounts: vec![DockerAccount {
            name: "local".into(),
            url: registry.url.clone(),
            username: None,
            password: None,
        }],
        ..TriggerSettings::default()
    };
    let triggers = triggers_on(&store, &clock, settings);
    let engine = engine_on(&store, &clock);
    let web = save(
        &store,
        "web",
        json!([{"type": "docker", "enabled": true, "account": "local",
                "repository": "app/web", "tag": "\\d+\\.\\d+\\.\\d+"}]),
    )
    .await;

    let old = registry.push("app/web", "1.0.0", "one").await;
    registry.push("app/web", "2.0.0", "two").await;
    // The first poll records what exists and fires nothing.
    triggers.docker_pass().await.unwrap();
    assert!(executions(&engine, &web).await.is_empty());

    // A new tag fires once; the next polls do not fire it again.
    let new = registry.push("app/web", "1.1.0", "one-one").await;
    triggers.docker_pass().await.unwrap();
    triggers.docker_pass().await.unwrap();
    let fired = executions(&engine, &web).await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    let host = registry.url.trim_start_matches("http://").to_owned();
    let trigger = &fired[0].trigger;
    assert_eq!(trigger["type"], "docker");
    assert_eq!(trigger["account"], "local");
    assert_eq!(trigger["registry"], host.as_str());
    assert_eq!(trigger["repository"], "app/web");
    assert_eq!(trigger["tag"], "1.1.0");
    assert_eq!(trigger["digest"], new.as_str());
    assert_eq!(trigger["user"], "triggers");
    let artifact = &trigger["artifacts"][0];
    assert_eq!(artifact["type"], "docker/image", "{trigger:?}");
    assert_eq!(artifact["name"], format!("{host}/app/web"));
    assert_eq!(artifact["version"], "1.1.0");
    assert_eq!(artifact["reference"], format!("{host}/app/web:1.1.0"));

    // A tag the regex does not match never fires; the log says why.
    registry.push("app/web", "nightly", "night").await;
    // An old tag pushed again with the same content (the same digest) never fires.
    assert_eq!(registry.push("app/web", "1.0.0", "one").await, old);
    triggers.docker_pass().await.unwrap();
    triggers.docker_pass().await.unwrap();
    assert_eq!(executions(&engine, &web).await.len(), 1);
    let log = triggers.events(APP, 100).await.unwrap().to_vec();
    let text = Value::Array(log).to_string();
    assert!(
        text.contains("tag 'nightly' did not match"),
        "the log says why: {text}"
    );

    // A known tag moved to new content (a new digest) fires, once.
    let moved = registry.push("app/web", "2.0.0", "two, rebuilt").await;
    triggers.docker_pass().await.unwrap();
    triggers.docker_pass().await.unwrap();
    let fired = executions(&engine, &web).await;
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(fired[1].trigger["tag"], "2.0.0");
    assert_eq!(fired[1].trigger["digest"], moved.as_str());
}

// ---------------------------------------------------------------- cron

/// Every minute, on the minute.
const EVERY_MINUTE: &str = "0 * * * * ?";

#[tokio::test]
async fn cron_ticks_fire_once_each_and_downtime_fires_only_the_latest_tick() {
    for backend in [TestBackend::Sqlite, TestBackend::Postgres] {
        let (_db, store) = database(backend).await;
        let clock = ManualClock::new(at("2030-01-09T00:00:30Z"));
        let triggers = triggers_on(&store, &clock, TriggerSettings::default());
        let engine = engine_on(&store, &clock);
        let minutely = save(
            &store,
            "minutely",
            json!([{"type": "cron", "enabled": true, "cronExpression": EVERY_MINUTE}]),
        )
        .await;
        let off = save(
            &store,
            "off",
            json!([{"type": "cron", "enabled": false, "cronExpression": EVERY_MINUTE}]),
        )
        .await;

        // The latest tick since the save fires; the pass says when the next one is.
        let next = triggers.cron_pass().await.unwrap();
        assert_eq!(next, Some(at("2030-01-09T00:01:00Z")));
        // Each tick fires once, however many passes see it.
        for minute in 1..=3 {
            clock.advance(Duration::from_secs(60));
            triggers.cron_pass().await.unwrap();
            triggers.cron_pass().await.unwrap();
            assert_eq!(executions(&engine, &minutely).await.len(), minute + 1);
        }
        // A second instance (a restart: nothing cached) does not fire them again.
        let restarted = triggers_on(&store, &clock, TriggerSettings::default());
        restarted.cron_pass().await.unwrap();
        let fired = executions(&engine, &minutely).await;
        assert_eq!(
            scheduled_times(&fired),
            [
                at("2030-01-09T00:00:00Z"),
                at("2030-01-09T00:01:00Z"),
                at("2030-01-09T00:02:00Z"),
                at("2030-01-09T00:03:00Z")
            ]
        );
        assert_eq!(fired[0].trigger["type"], "cron");
        assert_eq!(fired[0].trigger["cronExpression"], EVERY_MINUTE);
        assert_eq!(fired[0].trigger["user"], "triggers");

        // Downtime of two hours (120 ticks): one execution, for the latest tick.
        clock.advance(Duration::from_secs(2 * 3600));
        let after = triggers_on(&store, &clock, TriggerSettings::default());
        after.cron_pass().await.unwrap();
        after.cron_pass().await.unwrap();
        triggers.cron_pass().await.unwrap();
        let fired = executions(&engine, &minutely).await;
        assert_eq!(fired.len(), 5, "no burst: {:?}", scheduled_times(&fired));
        assert_eq!(
            scheduled_times(&fired)[4],
            at("2030-01-09T02:03:00Z"),
            "the latest tick"
        );
        // A disabled trigger never fires.
        assert!(executions(&engine, &off).await.is_empty());
    }
}

#[tokio::test]
async fn a_cron_triggers_time_zone_moves_its_ticks() {
    let (_db, store) = database(TestBackend::Sqlite).await;
    // 06:00 UTC on 9 January: 07:00 in Berlin (winter).
    let clock = ManualClock::new(at("2030-01-09T06:00:00Z"));
    let triggers = triggers_on(&store, &clock, TriggerSettings::default());
    let engine = engine_on(&store, &clock);
    let berlin = save(
        &store,
        "berlin",
        json!([{"type": "cron", "enabled": true, "cronExpression": "0 0 9 * * ?",
                "timeZone": "Europe/Berlin"}]),
    )
    .await;
    let utc = save(
        &store,
        "utc",
        json!([{"type": "cron", "enabled": true, "cronExpression": "0 0 9 * * ?"}]),
    )
    .await;
    // Yesterday's ticks: 09:00 Berlin is 08:00 UTC; the default zone is UTC.
    let next = triggers.cron_pass().await.unwrap();
    assert_eq!(
        scheduled_times(&executions(&engine, &berlin).await),
        [at("2030-01-08T08:00:00Z")]
    );
    assert_eq!(
        scheduled_times(&executions(&engine, &utc).await),
        [at("2030-01-08T09:00:00Z")]
    );
    assert_eq!(next, Some(at("2030-01-09T08:00:00Z")));
    // A second before the Berlin tick nothing fires; at it, Berlin fires and UTC not.
    clock.advance(Duration::from_secs(2 * 3600 - 1));
    triggers.cron_pass().await.unwrap();
    assert_eq!(executions(&engine, &berlin).await.len(), 1);
    clock.advance(Duration::from_secs(1));
    let next = triggers.cron_pass().await.unwrap();
    assert_eq!(
        scheduled_times(&executions(&engine, &berlin).await),
        [at("2030-01-08T08:00:00Z"), at("2030-01-09T08:00:00Z")]
    );
    assert_eq!(executions(&engine, &utc).await.len(), 1);
    assert_eq!(next, Some(at("2030-01-09T09:00:00Z")));
    assert_eq!(clock.now(), at("2030-01-09T08:00:00Z"));
}

#[tokio::test]
async fn two_instances_on_one_postgres_fire_each_cron_tick_once() {
    let (db, store) = database(TestBackend::Postgres).await;
    // The second "server" has its own connection pool to the same database.
    let other_store = SqlStore::connect(&db.url).await.unwrap();
    let clock = ManualClock::new(at("2030-01-09T00:00:30Z"));
    let one = triggers_on(&store, &clock, TriggerSettings::default());
    let two = triggers_on(&other_store, &clock, TriggerSettings::default());
    let engine = engine_on(&store, &clock);
    let mut pipelines = Vec::new();
    for name in ["a", "b", "c"] {
        pipelines.push(
            save(
                &store,
                name,
                json!([{"type": "cron", "enabled": true, "cronExpression": EVERY_MINUTE}]),
            )
            .await,
        );
    }
    for _ in 0..5 {
        let (first, second) = tokio::join!(one.cron_pass(), two.cron_pass());
        first.unwrap();
        second.unwrap();
        clock.advance(Duration::from_secs(60));
    }
    for pipeline in &pipelines {
        let fired = executions(&engine, pipeline).await;
        assert_eq!(
            scheduled_times(&fired),
            (0..5)
                .map(|m| at("2030-01-09T00:00:00Z") + m * 60_000)
                .collect::<Vec<_>>(),
            "pipeline {}: one execution per tick",
            pipeline.name
        );
    }
}
