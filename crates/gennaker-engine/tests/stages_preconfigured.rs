//! Preconfigured webhook stages: configured types that run the `webhook` stage's tasks
//! against a real HTTP server on 127.0.0.1 (SQLite and PostgreSQL), their save-time
//! rules, and the configuration errors that keep a server from starting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod remote;

use gennaker_core::{Origin, Severity, ValidationReport, validate_pipeline_value};
use gennaker_engine::ExecutionStatus::*;
use gennaker_engine::testing::{Harness, TestBackend, loopback, stage, summary};
use gennaker_engine::{
    PreconfiguredWebhook, StageRegistry, WebhookParameter, engine_test, register_preconfigured,
};
use remote::{Remote, answer, key_of};
use serde_json::{Map, Value, json};

fn parameter(name: &str, default: Option<Value>) -> WebhookParameter {
    WebhookParameter {
        name: name.into(),
        label: Some(format!("The {name}")),
        description: Some(format!("which {name} to deploy")),
        default_value: default,
        kind: None,
    }
}

/// `deployHook`: PUT /deploy/<env>, then poll the job its answer names until DONE.
fn deploy_hook(base: &str) -> PreconfiguredWebhook {
    let headers: Map<String, Value> = serde_json::from_value(
        json!({"X-Team": "shop", "X-Env": ["${parameterValues.env}", "eu"]}),
    )
    .unwrap();
    PreconfiguredWebhook {
        stage_type: "deployHook".into(),
        label: Some("Deploy hook".into()),
        description: Some("asks the deployer to roll out a service".into()),
        parameters: vec![
            parameter("service", None),
            parameter("env", Some(json!("staging"))),
            parameter("replicas", Some(json!(2))),
        ],
        url: Some(format!("{base}/deploy/${{parameterValues.env}}")),
        method: Some("put".into()),
        custom_headers: Some(headers),
        // Orca writes payloads as JSON text.
        payload: Some(json!(
            r#"{"service": "${parameterValues.service}", "replicas": "${parameterValues.replicas}", "by": "${trigger.user}"}"#
        )),
        wait_for_completion: Some(true),
        status_url_resolution: Some("webhookResponse".into()),
        status_url_json_path: Some("$.links.status".into()),
        status_json_path: Some("$.state".into()),
        success_statuses: Some("DONE".into()),
        terminal_statuses: Some("FAILED".into()),
        ..PreconfiguredWebhook::default()
    }
}

/// A harness whose server knows `deployHook`, calling a scripted remote.
struct Kit {
    h: Harness,
    remote: Remote,
}

impl Kit {
    async fn new(backend: TestBackend) -> Kit {
        let remote = Remote::start().await;
        let hooks = vec![deploy_hook(&remote.base)];
        let h = Harness::with_outbound(backend, loopback(), move |registry| {
            register_preconfigured(registry, &hooks).unwrap();
        })
        .await;
        Kit { h, remote }
    }
}

fn deploy_stage(fields: Value) -> Value {
    let mut stage = json!({"refId": "1", "name": "roll out", "type": "deployHook"});
    for (k, v) in fields.as_object().unwrap() {
        stage[k] = v.clone();
    }
    stage
}

engine_test!(
    a_preconfigured_stage_calls_its_configured_endpoint_and_monitors_it,
    |kit: Kit| {
        let Kit { h, remote } = kit;
        remote.on(
            "PUT",
            "/deploy/staging",
            vec![answer(202, json!({"links": {"status": "/jobs/7"}}))],
        );
        remote.on(
            "GET",
            "/jobs/7",
            vec![
                answer(200, json!({"state": "RUNNING"})),
                answer(200, json!({"state": "DONE"})),
            ],
        );
        let pipeline = json!({"stages": [deploy_stage(json!({
            "parameterValues": {"service": "shop-api", "replicas": 3},
            // A preconfigured stage cannot be pointed elsewhere.
            "url": remote.url("/own"),
            "method": "DELETE",
            "payload": {"mine": true},
        }))]});
        let execution = h.run("hook", pipeline).await;
        let done = h.finish(&execution.id).await;
        assert_eq!(done.status, Succeeded, "{}", summary(&done));

        let calls = remote.seen("PUT", "/deploy/staging");
        assert_eq!(calls.len(), 1);
        let call = &calls[0];
        assert_eq!(
            call.body,
            json!({"service": "shop-api", "replicas": 3, "by": "alice"}),
            "the stage's value, the default and an expression"
        );
        assert_eq!(call.headers["x-team"], "shop");
        assert_eq!(call.headers["x-env"], "staging, eu");
        assert_eq!(call.headers["content-type"], "application/json");
        assert_eq!(call.key(), key_of(&done, "roll out", 0));
        assert!(remote.seen("GET", "/jobs/7").len() >= 2);
        assert!(remote.seen("DELETE", "/own").is_empty());
        assert!(remote.seen("PUT", "/own").is_empty());

        let rolled = stage(&done, "roll out");
        assert_eq!(rolled.tasks.len(), 2, "createWebhook and monitorWebhook");
        assert_eq!(rolled.context["url"], remote.url("/deploy/staging"));
        assert_eq!(rolled.context["method"], "put");
        assert_eq!(
            rolled.context["parameterValues"],
            json!({"service": "shop-api", "replicas": 3, "env": "staging"})
        );
        assert_eq!(rolled.context["webhook"]["monitor"]["status"], "DONE");
        assert_eq!(rolled.outputs["webhook"]["statusCode"], 202);
        h.stop().await;
    }
);

/// The registry a server with `deployHook` has.
fn registry() -> StageRegistry {
    let mut registry = StageRegistry::standard();
    register_preconfigured(&mut registry, &[deploy_hook("http://127.0.0.1:9")]).unwrap();
    registry
}

fn validate(stage: Value) -> ValidationReport {
    let pipeline = json!({"application": "shop", "name": "p", "stages": [stage]});
    validate_pipeline_value(&pipeline, registry().catalog())
}

fn problem_at(report: &ValidationReport, path: &str) -> (Severity, String) {
    let problem = report
        .problems
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("no problem at {path}:\n{report}"));
    (problem.severity, problem.message.clone())
}

#[test]
fn the_type_is_in_the_catalog_as_preconfigured() {
    let registry = registry();
    let descriptor = &registry.catalog().get("deployHook").unwrap().descriptor;
    assert_eq!(descriptor.origin, Origin::Preconfigured);
    assert!(descriptor.runnable);
    assert_eq!(descriptor.label, "Deploy hook");
    assert!(registry.definition("deployHook").is_some());
}

#[test]
fn required_parameters_are_save_time_errors_and_unknown_ones_warnings() {
    let report = validate(deploy_stage(json!({
        "parameterValues": {"env": "prod", "colour": "blue"},
        "url": "http://elsewhere.example.com",
    })));
    let (severity, message) = problem_at(&report, "$.stages[0].parameterValues.service");
    assert_eq!(severity, Severity::Error);
    assert!(message.contains("needs parameter 'service'"), "{message}");
    let (severity, message) = problem_at(&report, "$.stages[0].parameterValues.colour");
    assert_eq!(severity, Severity::Warning);
    assert!(message.contains("env, replicas"), "{message}");
    let (severity, message) = problem_at(&report, "$.stages[0].url");
    assert_eq!(severity, Severity::Warning);
    assert!(message.contains("is ignored"), "{message}");
    assert_eq!(report.errors().count(), 1, "{report}");

    let complete = validate(deploy_stage(json!({"parameterValues": {"service": "api"}})));
    assert!(complete.problems.is_empty(), "{complete}");
    let without_values = validate(deploy_stage(json!({})));
    let (severity, _) = problem_at(&without_values, "$.stages[0].parameterValues.service");
    assert_eq!(severity, Severity::Error);
}

/// The error registering `hooks` gives, as the server prints it.
fn config_error(hooks: &[PreconfiguredWebhook]) -> String {
    let mut registry = StageRegistry::standard();
    let error = register_preconfigured(&mut registry, hooks)
        .expect_err("a bad entry is refused")
        .to_string();
    for hook in hooks {
        assert!(
            registry
                .catalog()
                .get(&hook.stage_type)
                .is_none_or(|e| e.descriptor.origin != Origin::Preconfigured),
            "nothing is registered when an entry is bad"
        );
    }
    error
}

#[test]
fn bad_entries_are_refused_naming_the_entry_and_the_field() {
    let good = deploy_hook("https://deployer.example.com");
    let with = |change: &dyn Fn(&mut PreconfiguredWebhook)| {
        let mut hook = good.clone();
        change(&mut hook);
        vec![good.clone(), hook]
    };
    let cases: Vec<(Vec<PreconfiguredWebhook>, &str)> = vec![
        (
            with(&|h| h.stage_type.clear()),
            "webhooks.preconfigured[1].type: is missing",
        ),
        (
            with(&|h| h.stage_type = "webhook".into()),
            "webhooks.preconfigured[1].type: 'webhook' is a built-in stage type",
        ),
        (
            with(&|h| h.stage_type = "jenkins".into()),
            "webhooks.preconfigured[1].type: 'jenkins' is a built-in stage type",
        ),
        (
            with(&|_| {}),
            "webhooks.preconfigured[1].type: 'deployHook' is already defined by webhooks.preconfigured[0]",
        ),
        (
            with(&|h| {
                h.stage_type = "ftpHook".into();
                h.url = Some("ftp://files.example.com/${parameterValues.env}".into());
            }),
            "webhooks.preconfigured[1].url: 'ftp://files.example.com/${parameterValues.env}' is not an http:// or https:// URL",
        ),
        (
            with(&|h| {
                h.stage_type = "noUrl".into();
                h.url = None;
            }),
            "webhooks.preconfigured[1].url: is missing",
        ),
        (
            with(&|h| {
                h.stage_type = "badPayload".into();
                h.payload = Some(json!("{not json"));
            }),
            "webhooks.preconfigured[1].payload: is a string but not JSON",
        ),
        (
            with(&|h| {
                h.stage_type = "badCodes".into();
                h.retry_status_codes = Some(vec![42]);
            }),
            "webhooks.preconfigured[1].retryStatusCodes[0]: 42 is not an HTTP status code",
        ),
        (
            with(&|h| {
                h.stage_type = "badParameter".into();
                h.parameters.push(parameter("env", None));
            }),
            "webhooks.preconfigured[1].parameters[3].name: 'env' is already the name of parameters[1]",
        ),
    ];
    for (hooks, expected) in cases {
        let error = config_error(&hooks);
        assert!(
            error.starts_with(expected),
            "expected {expected:?}, got {error:?}"
        );
    }
}

#[test]
fn a_text_payload_with_a_text_content_type_is_sent_as_written() {
    let mut hook = deploy_hook("https://deployer.example.com");
    hook.custom_headers =
        Some(serde_json::from_value(json!({"Content-Type": "text/plain"})).unwrap());
    hook.payload = Some(json!("deploy ${parameterValues.service} please"));
    let mut registry = StageRegistry::standard();
    register_preconfigured(&mut registry, &[hook]).unwrap();
    let definition = registry.definition("deployHook").unwrap();
    let mut context: Map<String, Value> =
        serde_json::from_value(json!({"parameterValues": {"service": "api"}, "payload": "mine"}))
            .unwrap();
    definition.prepare(&mut context);
    assert_eq!(context["payload"], "deploy api please");
    assert_eq!(
        context["customHeaders"],
        json!({"Content-Type": "text/plain"})
    );
    assert_eq!(
        context["url"],
        "https://deployer.example.com/deploy/staging"
    );
}
